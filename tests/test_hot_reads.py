"""store/hot_reads.py: the game's and the accounts' reads on the driver's connection return what
the ORM reads they replaced returned, on SQLite and PostgreSQL (datetimes aware UTC, booleans
bools), and their edge cases (revoked keys, expired sessions, disabled users, no votes) hold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from latentpedia.store.api import Store
from latentpedia.store.base import utc
from latentpedia.store.community_schema import ApiKey, UserSession, Vote
from latentpedia.store.feature_rows import dbapi_connection
from latentpedia.store.game import GAME_SCORE_VERSION, GameStore, Play, PlayRecord
from latentpedia.store.migrate import upgrade
from latentpedia.store.schema import utcnow
from tests.test_store import seed_source


@pytest.fixture
def store(db_url: str):
    upgrade(db_url)
    found = Store.open(db_url)
    try:
        yield found
    finally:
        found.close()


def test_who_is_calling_by_key_and_session(store: Store) -> None:
    alice = store.add_user("alice", "a long password")
    key, record = store.create_api_key(alice.id, "k")
    token, csrf = store.create_session(alice.id)

    found = store.api_key_user(key)
    assert found == alice and found.created_at.tzinfo is not None and found.disabled is False
    with store._read() as session:  # the use was noted (the note is a write only when stale)
        used = utc(session.get(ApiKey, record.id).last_used_at)
    assert used is not None and utcnow() - used < timedelta(minutes=1)
    assert store.api_key_user(key) == alice  # fresh note: no write, same answer
    assert store.session_user(token) == (alice, csrf)

    assert store.api_key_user("lp_not-a-key") is None and store.api_key_user("") is None
    assert store.session_user("not-a-token") is None
    with store._begin() as session:  # an expired session
        session.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert store.session_user(token) is None
    store.set_user("alice", disabled=True)
    assert store.api_key_user(key) is None
    store.set_user("alice", disabled=False)
    store.revoke_api_key(alice.id, record.id)
    assert store.api_key_user(key) is None


def test_game_reads_match_the_orm(store: Store) -> None:
    source_id = seed_source(store, d=8)
    games = GameStore(store)
    alice, bob = store.add_user("alice", "a long password"), store.add_user("bob", "a long password")
    machine = store.add_explanation(source_id, 3, "machine's words", "offline")
    mine = games.add_scored_explanation(alice.id, source_id, 3, "alice's words", score={
        "scorer": "embedding", "status": "ok", "score": 0.7, "baseline_score": 0.5, "prompt_version": GAME_SCORE_VERSION, "details": {}},
        points=3, campaign_id=None, details={}, daily="2026-12-01")  # fmt: skip
    store.add_score(machine, "embedding", status="ok", score=0.6, baseline_score=0.5, prompt_version=GAME_SCORE_VERSION)
    written = store.get_explanation(mine)  # the move's rows, written on the driver's connection, read back by the ORM
    assert (written.method, written.author, written.details) == ("game", "alice", {})
    assert written.created_at.tzinfo is not None and abs(utcnow() - written.created_at) < timedelta(minutes=1)
    assert [(x.scorer, x.status, x.score, x.baseline_score, x.details) for x in written.scores] == [("embedding", "ok", 0.7, 0.5, {})]
    assert written.scores[0].created_at == written.created_at
    store.vote(bob.id, mine, 1)
    store.vote(alice.id, machine, -1)
    store.vote(bob.id, machine, -1)
    games.add_play(bob.id, source_id, 3, "vote", explanation_id=mine)
    games.add_play(bob.id, source_id, 4, "skip")
    games.set_prefs(bob.id, mode="advanced", tutorial_done=True)

    with store._read() as session:  # the ORM's view of bob's plays
        orm = [PlayRecord(r.id, r.user_id, r.campaign_id, r.source_id, r.latent_index, r.action, r.explanation_id, r.score,
                          r.points, r.daily, utc(r.created_at)) for r in session.scalars(select(Play).where(Play.user_id == bob.id).order_by(Play.id))]  # fmt: skip
    assert games.plays(user_id=bob.id) == orm and all(p.created_at.tzinfo is not None for p in orm)
    assert games.plays(user_id=bob.id, source_id=source_id, index=4) == orm[1:]
    assert [p.daily for p in games.plays(user_id=alice.id)] == ["2026-12-01"]
    assert games.prefs(bob.id) == ("advanced", True) and games.prefs(alice.id) == ("simple", False)

    rows = games.latent_explanations(source_id, 3, bob.id)
    assert [(r["id"], r["vote_score"], r["my_vote"], r["author"]) for r in rows] == [(mine, 1, 1, "alice"), (machine, -2, -1, None)]
    assert [r["my_vote"] for r in games.latent_explanations(source_id, 3)] == [0, 0]
    with store._read() as session:
        sums = {e: sum(v.value for v in session.scalars(select(Vote).where(Vote.explanation_id == e))) for e in (mine, machine)}
    assert {r["id"]: r["vote_score"] for r in rows} == sums
    assert games.latent_explanations(source_id, 5) == []

    assert games.game_scores(source_id, 3) == {mine: (3, 0.7, alice.id, "alice's words"), machine: (3, 0.6, None, "machine's words")}
    assert games.game_scores(source_id) == games.game_scores(source_id, 3) and games.game_scores(source_id, 4) == {}
    assert games.usernames({alice.id, bob.id}) == {alice.id: "alice", bob.id: "bob"} and games.usernames(set()) == {}
    games.add_duplicate(bob.id, source_id, 3, machine, vote=True, campaign_id=None, daily=None)  # bob's -1 becomes +1
    games.add_duplicate(bob.id, source_id, 3, machine, vote=True, campaign_id=None, daily=None)  # still one vote
    games.add_duplicate(alice.id, source_id, 3, None, vote=False, campaign_id=None, daily=None)  # the machine's unstored label
    assert {r["id"]: r["vote_score"] for r in games.latent_explanations(source_id, 3)} == {mine: 1, machine: 0}
    assert [(p.action, p.explanation_id, p.points) for p in games.plays(user_id=bob.id)][-2:] == [("duplicate", machine, 0)] * 2
    assert games.plays(user_id=alice.id)[-1].explanation_id is None
    assert games.hidden_ids() == set()
    games.hide_explanation(mine, None)
    assert games.hidden_ids() == {mine} and [r["id"] for r in games.latent_explanations(source_id, 3)] == [machine]


def test_reads_hand_back_their_connection(store: Store) -> None:
    """Every read returns its connection to the pool, also when the statement fails."""
    pool = store.engine.pool
    before = pool.checkedout()
    GameStore(store).prefs(1)
    store.api_key_user("lp_x")
    assert pool.checkedout() == before
    with pytest.raises(Exception), dbapi_connection(store.engine) as conn:
        conn.cursor().execute("SELECT no_such_column FROM users")
    assert pool.checkedout() == before
