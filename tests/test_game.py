"""The game (issue 12) on SQLite and PostgreSQL: held-out sets, honest scores on planted and real
latents, anti-farming, near-duplicates as votes, points, boards, moderation, sign-up, accounts,
rate limits, bad input, and the `latentpedia campaign` commands.

The atlas is the seeded tiny atlas (community_fixtures: root admin, alice, bob) plus the planted
source of tests/interp_planted.py (latent i fires only on one frequent word), with offline
machine explanations for the planted source and 1-mlp and two campaigns over them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from latentpedia.interp.data import AtlasText, load_latent
from latentpedia.interp.embedding import shared_embedder
from latentpedia.interp.game import rules
from latentpedia.interp.game.play import Game
from latentpedia.store.api import Store
from latentpedia.store.game import GameStore
from tests.community_fixtures import PASSWORD, CommunityAtlas, community_atlas
from tests.conftest import BACKENDS
from tests.interp_planted import Planted, plant_source

SPAM = "buy cheap watches at example dot com"
UNRELATED = ["chemistry of volcanic soil", "medieval french poetry", "the price of cattle in spring", "ocean tides and the moon",
             "knitting patterns for winter", "football transfer rumours", "baroque organ music", "tax law in switzerland"]


@dataclass
class GameAtlas:
    catlas: CommunityAtlas
    planted: Planted

    @property
    def url(self) -> str:
        return self.catlas.url

    @property
    def model(self) -> str:
        return self.catlas.model


@contextmanager
def game_atlas(backend: str, request, tmp_path_factory) -> Iterator[GameAtlas]:
    """The community atlas + a planted source + offline explanations + campaigns `planted`
    (the planted source) and `neurons` (1-mlp, unexplained first)."""
    from latentpedia.interp.pipeline import explain_atlas

    with community_atlas(backend, request, tmp_path_factory) as catlas:
        store = Store.open(catlas.url)
        try:
            planted = plant_source(store, catlas.model)
            explain_atlas(store, catlas.model, "offline", (), progress=False, sources=[planted.source, "1-mlp"])
            games = GameStore(store)
            games.add_campaign("planted", "Planted latents", planted.source_id, order="index")
            games.add_campaign("neurons", "Layer 1 neurons", store.get_source(catlas.model, "1-mlp").id)
        finally:
            store.close()
        yield GameAtlas(catlas, planted)


@pytest.fixture(scope="module", params=BACKENDS)
def gatlas(request, tmp_path_factory) -> Iterator[GameAtlas]:
    with game_atlas(request.param, request, tmp_path_factory) as found:
        yield found


@pytest.fixture
def game(gatlas) -> Iterator[Game]:
    store = Store.open(gatlas.url)
    try:
        yield Game(store, shared_embedder())
    finally:
        store.close()


def _user(game: Game, name: str):
    return game.store.get_user(name) or game.store.add_user(name, PASSWORD)


def _planted(game: Game, gatlas: GameAtlas, i: int) -> tuple[int, str]:
    return gatlas.planted.source_id, gatlas.planted.texts[i].strip()


# ---------------------------------------------------------------- rules (no database)


def test_points_rules() -> None:
    assert rules.explanation_points(0.5, 0.6, None) == 0
    assert rules.explanation_points(None, 0.5, None) == 0
    beat = rules.explanation_points(0.7, 0.5, 0.9)  # above baseline, below the best
    assert beat == 10 + 20
    best = rules.explanation_points(0.95, 0.5, 0.9)
    assert best > beat and best == 10 + 45 + 20 + 10


def test_normalise_and_duplicates() -> None:
    assert rules.normalise("Closing brackets!") == rules.normalise("  closing   bracket ")
    assert rules.normalise("Café") == rules.normalise("cafe")
    vectors = np.eye(3, dtype=np.float32)
    assert rules.duplicate_of("CLOSING brackets.", vectors[2], [(7, "closing brackets")], vectors[:1]) == (7, 1.0)
    near = np.array([0.95, np.sqrt(1 - 0.95**2), 0], dtype=np.float32)
    assert rules.duplicate_of("x", near, [(3, "y")], vectors[:1])[0] == 3
    assert rules.duplicate_of("x", vectors[1], [(3, "y")], vectors[:1]) is None


def test_streaks_week_and_daily() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)  # a Monday
    d = now.date()
    assert rules.streak([d, d - timedelta(1), d - timedelta(2)], now) == 3
    assert rules.streak([d - timedelta(1), d - timedelta(2)], now) == 2  # today not played yet
    assert rules.streak([d - timedelta(2)], now) == 0
    assert rules.week_start(now) == datetime(2026, 11, 30, tzinfo=UTC)
    assert rules.week_start(now + timedelta(days=6)) == datetime(2026, 11, 30, tzinfo=UTC)
    picks = {rules.daily_pick(date(2026, 12, k), "c", list(range(50))) for k in range(1, 15)}
    assert len(picks) > 5 and rules.daily_pick(d, "c", [4, 9]) == rules.daily_pick(d, "c", [4, 9])
    line = rules.share_line(d, "best", 42, 3)
    assert "2026-11-30" in line and "+42" in line and "streak 3 days" in line


def test_embedding_threshold_separates_trivial_edits_from_other_explanations() -> None:
    """The justification of DUPLICATE_COSINE on the embedder the game uses."""
    embed = shared_embedder()
    pairs_same = [("closing brackets", "Closing brackets."), ("the word import", "the word 'import'"),
                  ("numbers in python code", "numbers in Python code!"), ("function definitions", "function definition")]
    pairs_other = [("closing brackets", "opening brackets"), ("the word import", "the word return"),
                   ("numbers in python code", "names of variables"), ("function definitions", "class definitions")]
    sims = lambda pairs: [float(embed([a])[0] @ embed([b])[0]) for a, b in pairs]  # noqa: E731
    assert min(sims(pairs_same)) >= rules.DUPLICATE_COSINE
    assert max(sims(pairs_other)) < rules.DUPLICATE_COSINE


# ---------------------------------------------------------------- held-out sets and honest scores


def test_held_out_set_is_fixed_stored_and_never_a_clue(game, gatlas) -> None:
    source_id, _ = _planted(game, gatlas, 0)
    first = game.reference(source_id, 0)
    again = Game(game.store, shared_embedder()).reference(source_id, 0)
    assert first["holdout"] == again["holdout"] and first["baseline_score"] == again["baseline_score"]
    holdout = first["holdout"]
    assert holdout["positives"] and holdout["negatives"]
    latent = load_latent(AtlasText(game.store, source_id), 0)
    clue_windows = {e.window for e in latent.explain}
    assert clue_windows.isdisjoint({p[0] for p in holdout["positives"]})
    assert clue_windows.isdisjoint({n[0] for n in holdout["negatives"]})
    puzzle = game.puzzle(None, "planted", index=0)
    atlas = AtlasText(game.store, source_id)
    shown = {"".join(c["tokens"]) for c in puzzle["clues"] + puzzle["quantiles"]}
    held = {atlas.decode(atlas.windows[p[0]][1:]) for p in holdout["positives"]}
    assert shown and shown.isdisjoint(held)
    assert "holdout" not in json.dumps(puzzle) and "score" not in {k for e in puzzle["explanations"] for k in e}


def test_true_concept_beats_baseline_random_and_copied_do_not(game, gatlas) -> None:
    """On planted latents the generating concept scores above the baseline; on planted and on
    real neurons, random and copied explanations do not on average."""
    n = len(gatlas.planted.tokens)
    source_id = gatlas.planted.source_id
    true_margin, random_margin, copied_margin = [], [], []
    for i in range(n):
        ref = game.reference(source_id, i)
        _, scorer = game._atlas(source_id)
        other = [gatlas.planted.texts[j].strip() for j in range(n) if j != i]
        scores = scorer.score([gatlas.planted.texts[i].strip(), *UNRELATED, *other], ref["holdout"])
        true_margin.append(scores[0] - ref["baseline_score"])
        random_margin += [s - ref["baseline_score"] for s in scores[1 : 1 + len(UNRELATED)]]
        copied_margin += [s - ref["baseline_score"] for s in scores[1 + len(UNRELATED) :]]
    assert min(true_margin) > 0.15, true_margin
    assert np.mean(random_margin) < 0 and np.mean(copied_margin) < 0, (random_margin, copied_margin)
    neurons = game.store.get_source(gatlas.model, "1-mlp").id
    live = [r["idx"] for r in game.store.list_latents(neurons, limit=None) if r["max_act"] > 0][:12]
    margins = []
    for i in live:
        ref = game.reference(neurons, i)
        _, scorer = game._atlas(neurons)
        margins += [s - ref["baseline_score"] for s in scorer.score(UNRELATED[:4], ref["holdout"]) if s is not None]
    assert np.mean(margins) < 0, np.mean(margins)
    copied = []
    for i, j in zip(live, live[1:] + live[:1]):  # each latent's machine explanation pasted on the next
        ref, text = game.reference(neurons, j), game._machine_explanations(neurons)[0][i][1]
        copied += [s - ref["baseline_score"] for s in game._atlas(neurons)[1].score([text], ref["holdout"]) if s is not None]
    assert np.mean(copied) < 0, copied


# ---------------------------------------------------------------- playing: points and anti-farming


def test_submit_scores_and_anti_farming(game, gatlas) -> None:
    carol = _user(game, "carol")
    source_id, concept = _planted(game, gatlas, 1)
    first = game.submit(carol, "planted", source_id, 1, concept)
    assert first["action"] == "explain" and first["score"] > first["baseline"] and first["points"] > 0
    assert first["outcome"] in ("best", "beat") and first["machine"]["text"]
    stored = game.store.get_explanation(first["explanation_id"])
    assert stored.method == "game" and stored.author == "carol"  # an ordinary explanation of the atlas
    assert any(s.prompt_version == "game-v1" and s.baseline_score is not None for s in stored.scores)
    total = game.player(carol)["points"]
    for farmed in (concept, f"  {concept.upper()}!! ", f"{concept}."):  # resubmit, trivial edits
        again = game.submit(carol, "planted", source_id, 1, farmed)
        assert again["action"] == "duplicate" and again["points"] == 0
    machine = game.reference(source_id, 1)["machine_text"]
    pasted = game.submit(carol, "planted", source_id, 1, machine)
    assert pasted["action"] == "duplicate" and pasted["points"] == 0
    assert game.player(carol)["points"] == total
    for text in ("baroque organ music", "tax law in switzerland", "medieval french poetry"):
        game.submit(carol, "planted", source_id, 2, text)
    with pytest.raises(Exception, match="3 explanations"):
        game.submit(carol, "planted", source_id, 2, "football transfer rumours")


def test_second_players_near_duplicate_is_a_vote_and_votes_earn_when_best(game, gatlas) -> None:
    dave, erin = _user(game, "dave"), _user(game, "erin")
    source_id, concept = _planted(game, gatlas, 0)
    mine = game.submit(dave, "planted", source_id, 0, f"the word {concept}")
    theirs = game.submit(erin, "planted", source_id, 0, f"The word {concept}.")
    assert theirs["action"] == "duplicate" and theirs["explanation_id"] == mine["explanation_id"]
    assert game.store.get_explanation(mine["explanation_id"]).vote_score == 1
    board = {r["username"]: r for r in game.leaderboard()}
    assert board["erin"]["votes"] == 1 and board["erin"]["points"] == 0  # a near-duplicate earns nothing
    game.submit(erin, "planted", source_id, 0, "medieval french poetry")  # something else, so she may vote
    game.vote(erin, mine["explanation_id"], "planted")
    backs_best = game.best(source_id, 0)["id"] == mine["explanation_id"]
    board = {r["username"]: r for r in game.leaderboard()}
    explained = board["erin"]["points"] - (rules.VOTE_BONUS if backs_best else 0)
    assert explained == sum(p.points for p in game.games.plays(user_id=erin.id))
    with pytest.raises(Exception, match="your own"):
        game.vote(dave, mine["explanation_id"])


def test_vote_skip_next_puzzle_daily_and_progress(game, gatlas) -> None:
    frank = _user(game, "frank")
    first = game.puzzle(frank, "neurons")
    assert not first["done"] and first["clues"]
    index = first["index"]
    neurons = game.campaign("neurons").source_id
    game.skip(frank, "neurons", neurons, index)
    assert game.puzzle(frank, "neurons")["index"] != index  # moves on
    machine = next(e for e in game.puzzle(frank, "neurons")["explanations"] if e["machine"])
    assert game.vote(frank, machine["id"], "neurons")["vote_score"] >= 1
    a, b = game.puzzle(frank, daily=True), game.puzzle(_user(game, "gina"), daily=True)
    assert a["index"] == b["index"] and a["daily"] == rules.today().isoformat()
    progress = game.progress(game.campaign("planted"))
    assert progress["latents"] == len(gatlas.planted.tokens) and 0 < progress["fraction"] <= 1
    assert "of 0-planted has an explanation beating its baseline" in progress["label"]


def test_daily_share_line_has_no_spoilers(game, gatlas) -> None:
    hank = _user(game, "hank")
    daily = game.puzzle(hank, daily=True)
    source_id = game.campaign(daily["campaign"]).source_id
    result = game.submit(hank, daily["campaign"], source_id, daily["index"], "numbers and punctuation", daily=rules.today().isoformat())
    share = game.player(hank)["share"]
    today = rules.today().isoformat()
    assert re.fullmatch(rf"latentpedia daily {today} \S+ \+{result['points']} points · streak 1 day", share), share


def test_boards_contests_bans_and_hiding(game, gatlas) -> None:
    ivan, judy = _user(game, "ivan"), _user(game, "judy")
    games = game.games
    source_id, concept = _planted(game, gatlas, 2)
    quest = games.add_campaign("quest", "A side quest", source_id, order="index",
                               starts_at=datetime.now(UTC) - timedelta(hours=1), ends_at=datetime.now(UTC) + timedelta(days=1))
    assert quest.contest and quest.active(datetime.now(UTC))
    scored = game.submit(ivan, "quest", source_id, 2, f"{concept} (the word)")
    assert scored["points"] > 0
    board = game.leaderboard(campaign="quest")
    assert [r["username"] for r in board] == ["ivan"]
    assert any(r["username"] == "ivan" for r in game.leaderboard(period="week"))
    games.hide_explanation(scored["explanation_id"], None)
    assert game.store.get_explanation(scored["explanation_id"]) is None  # gone from the atlas
    assert game.leaderboard(campaign="quest") == []
    assert games.restore_explanation(scored["explanation_id"])
    assert game.store.get_explanation(scored["explanation_id"]).text == f"{concept} (the word)"
    assert game.leaderboard(campaign="quest")[0]["points"] == scored["points"]
    game.store.set_user("ivan", disabled=True)  # banned: off every board
    assert all(r["username"] != "ivan" for r in game.leaderboard()) and game.leaderboard(campaign="quest") == []
    closed = games.add_campaign("closed", "Over", source_id, ends_at=datetime.now(UTC) - timedelta(hours=1),
                                starts_at=datetime.now(UTC) - timedelta(days=1))
    with pytest.raises(Exception, match="not open"):
        game.submit(judy, closed.slug, source_id, 0, "anything at all")


def test_account_deletion_anonymises_or_removes(game, gatlas) -> None:
    source_id, _ = _planted(game, gatlas, 0)
    kim, leo = _user(game, "kim"), _user(game, "leo")
    made = [game.submit(kim, "planted", source_id, 0, "alpine glaciers melting"),
            game.submit(leo, "planted", source_id, 0, "submarine telegraph cables")]
    assert [m["action"] for m in made] == ["explain", "explain"]
    a, b = (m["explanation_id"] for m in made)
    game.games.delete_account(kim.id, remove_content=False)
    kept = game.store.get_explanation(a)
    assert kept is not None and kept.author_id is None and game.store.get_user("kim") is None
    game.games.delete_account(leo.id, remove_content=True)
    assert game.store.get_explanation(b) is None
    assert all(r["username"] not in ("kim", "leo") for r in game.leaderboard())


def test_a_submit_writes_explanation_score_and_play_in_one_transaction(game) -> None:
    """The submit's three rows go in together or not at all; the best it answers is the one read back."""
    neurons = game.campaign("neurons")
    source_id, index = neurons.source_id, game.candidates(neurons)[-1]  # a latent no other test plays
    mia = _user(game, "mia")
    made = game.submit(mia, "neurons", source_id, index, "indentation before a keyword")
    assert made["action"] == "explain"
    assert made["best"] == game.best(source_id, index)  # worked out from the best before it, as a fresh read gives
    stored = game.store.get_explanation(made["explanation_id"])
    plays = [p for p in game.games.plays(user_id=mia.id) if p.explanation_id == made["explanation_id"]]
    assert [(p.action, p.points, p.score) for p in plays] == [("explain", made["points"], made["score"])]
    assert [s.score for s in stored.scores if s.prompt_version == "game-v1"] == [made["score"]]
    before = len(game.store.list_explanations(source_id, index))
    with pytest.raises(Exception, match="status"):  # the score row fails after the explanation row was added
        game.games.add_scored_explanation(mia.id, source_id, index, "half written", score={"scorer": "embedding", "status": "maybe"},
                                          points=0, campaign_id=None, details={}, daily=None)  # fmt: skip
    assert len(game.store.list_explanations(source_id, index)) == before
    with pytest.raises(Exception, match="(?i)foreign key"):  # the play row fails after the explanation and score rows
        game.games.add_scored_explanation(mia.id, source_id, index, "half written", score={"scorer": "embedding", "status": "ok", "score": 0.5},
                                          points=0, campaign_id=10**9, details={}, daily=None)  # fmt: skip
    assert len(game.store.list_explanations(source_id, index)) == before
    assert len(game.games.plays(user_id=mia.id)) == 1
    with pytest.raises(Exception, match="no latent"):
        game.games.add_scored_explanation(mia.id, source_id, 10**6, "no such latent", score={"scorer": "embedding", "status": "ok"},
                                          points=0, campaign_id=None, details={}, daily=None)  # fmt: skip


def test_campaigns_are_reread_after_a_change_here(game, gatlas) -> None:
    source_id, _ = _planted(game, gatlas, 0)
    assert game.campaign("planted").source_id == source_id  # read and kept for a moment
    game.games.add_campaign("short-lived", "Short", source_id, order="index")
    game.forget_campaigns()
    assert game.campaign("short-lived").slug == "short-lived"
    game.games.delete_campaign("short-lived")
    game.forget_campaigns()
    with pytest.raises(Exception, match="no campaign"):
        game.campaign("short-lived")


# ---------------------------------------------------------------- the web routes


@pytest.fixture
def client(gatlas) -> Iterator[TestClient]:
    from latentpedia.web import create_app

    app = create_app(gatlas.url)
    with TestClient(app) as c:
        yield c


def _key(gatlas, name: str) -> dict[str, str]:
    return gatlas.catlas.key(name)


def test_play_pages_and_json_twins(client, gatlas) -> None:
    for path, twin in (("/play", "/api/play"), ("/play/c/planted", "/api/play/puzzle?campaign=planted"),
                       ("/play/daily", "/api/play/daily"), ("/play/leaderboard", "/api/play/leaderboard?period=all")):
        page = client.get(path, headers={"accept": "text/html"})
        assert page.status_code == 200, (path, page.text[:300])
        assert twin in page.headers["link"]
        assert client.get(twin).status_code == 200
    home = client.get("/api/play").json()
    assert {c["slug"] for c in home["campaigns"]} >= {"planted", "neurons"}
    assert all(0 <= c["progress"]["fraction"] <= 1 for c in home["campaigns"])
    assert client.get("/api/play/puzzle", params={"campaign": "nope"}).status_code == 404
    assert client.get("/api/play/leaderboard", params={"period": "year"}).status_code == 400


def test_api_submit_vote_skip_and_points(client, gatlas) -> None:
    model = gatlas.model
    alice, bob = _key(gatlas, "alice"), _key(gatlas, "bob")
    index = client.get("/api/play/puzzle", params={"campaign": "neurons"}, headers=alice).json()["index"]
    body = {"modelId": model, "layer": "1-mlp", "index": index, "campaign": "neurons"}
    text = "zebra crossings in winter fog"
    made = client.post("/api/play/submit", json={**body, "text": text}, headers=alice)
    assert made.status_code == 200, made.text
    result = made.json()
    assert result["action"] == "explain" and result["score"] is not None and result["baseline"] is not None
    assert result["machine"]["text"] and result["best"] is not None and result["total_points"] >= result["points"]
    voted = client.post("/api/play/vote", json={"explanation_id": result["explanation_id"], "campaign": "neurons"}, headers=bob)
    assert voted.status_code == 200 and voted.json()["vote_score"] == 1
    skipped = client.post("/api/play/skip", json={**body, "index": index + 1}, headers=bob)
    assert skipped.json()["action"] == "skip" and skipped.json()["next_url"] == "/play/c/neurons"
    player = client.get("/api/play/player/alice").json()
    assert any(e["text"] == text and e["score"] == result["score"] for e in player["explanations"])
    board = {r["username"]: r["points"] for r in client.get("/api/play/leaderboard").json()["rows"]}
    assert board["alice"] == player["points"]
    feature = client.get(f"/api/feature/{model}/1-mlp/{index}").json()
    assert any(e["text"] == text for e in feature["explanations"])  # an ordinary explanation of the atlas


def _count_rows(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in
                    ("explanations", "explanation_scores", "votes", "game_plays", "game_campaigns", "game_reports", "users")}
    finally:
        store.close()


@pytest.mark.parametrize("route,body,status", [
    ("/api/play/submit", {"modelId": "m", "layer": "0-planted", "index": 0, "text": "x"}, 404),
    ("/api/play/submit", {"layer": "0-planted", "index": 0, "text": "x"}, 422),
    ("/api/play/submit", {"modelId": "{model}", "layer": "0-planted", "index": 0, "text": ""}, 422),
    ("/api/play/submit", {"modelId": "{model}", "layer": "0-planted", "index": 0, "text": "x" * 2001}, 422),
    ("/api/play/submit", {"modelId": "{model}", "layer": "0-planted", "index": -1, "text": "x"}, 422),
    ("/api/play/submit", {"modelId": "{model}", "layer": "0-planted", "index": 0, "text": "   "}, 400),
    ("/api/play/submit", {"modelId": "{model}", "layer": "0-planted", "index": 3, "text": "dead", "campaign": "planted"}, 400),
    ("/api/play/submit", {"modelId": "{model}", "layer": "1-mlp", "index": 0, "text": "x", "campaign": "planted"}, 400),
    ("/api/play/submit", {"modelId": "{model}", "layer": "0-planted", "index": 0, "text": "a\u0000b"}, 422),
    ("/api/play/vote", {"explanation_id": 999999}, 404),
    ("/api/play/skip", {"modelId": "{model}", "layer": "0-planted", "index": 0, "campaign": "nope"}, 404),
    ("/api/play/report", {"explanation_id": 999999}, 404),
    ("/api/play/prefs", {"mode": "expert"}, 422),
    ("/api/play/campaign", {"slug": "x", "modelId": "{model}", "layer": "1-mlp"}, 403),
])
def test_bad_input_is_a_clear_4xx_and_writes_nothing(client, gatlas, route, body, status) -> None:
    before = _count_rows(gatlas.url)
    body = {k: (v.replace("{model}", gatlas.model) if isinstance(v, str) else v) for k, v in body.items()}
    answer = client.post(route, json=body, headers=_key(gatlas, "bob"))
    assert answer.status_code == status, answer.text
    assert "detail" in answer.json()
    assert _count_rows(gatlas.url) == before


def test_writes_need_a_user_and_admin_routes_an_admin(client, gatlas) -> None:
    for route in ("/api/play/submit", "/api/play/vote", "/api/play/skip", "/api/play/prefs", "/api/play/report",
                  "/api/play/campaign", "/api/play/invite", "/api/play/moderate", "/api/play/account/delete"):
        assert client.post(route, json={}).status_code == 401, route
    bob = _key(gatlas, "bob")
    for route, body in (("/api/play/invite", {}), ("/api/play/moderate", {"explanation_id": 1, "action": "hide"}),
                        ("/api/play/campaign", {"slug": "zz", "modelId": gatlas.model, "layer": "1-mlp"})):
        assert client.post(route, json=body, headers=bob).status_code == 403, route
    assert client.get("/api/play/admin", headers=bob).status_code == 403
    assert client.get("/api/play/admin", headers=_key(gatlas, "root")).status_code == 200


def test_rate_limits_per_account_and_per_address(client, gatlas) -> None:
    from latentpedia.web.ratelimit import RateLimiter

    client.app.state.game_limiter = RateLimiter(per_minute=1, burst=2)
    body = {"modelId": gatlas.model, "layer": gatlas.planted.source, "index": 0, "campaign": "planted", "text": "tax law in switzerland"}
    answers = [client.post("/api/play/submit", json=body, headers=_key(gatlas, "root")).status_code for _ in range(3)]
    assert answers[:2] != [429, 429] and answers[2] == 429
    other = client.post("/api/play/vote", json={"explanation_id": 1}, headers=_key(gatlas, "alice"))
    assert other.status_code == 429  # same address, another account: the address bucket is empty
    assert "Retry-After" in other.headers
    client.app.state.game_limiter = None


def test_signup_modes_invites_and_account_deletion(client, gatlas) -> None:
    origin = {"origin": "http://testserver"}
    body = {"username": "newbie", "password": "long enough pw"}
    client.app.state.signup = "closed"
    assert client.post("/api/play/signup", json=body, headers=origin).status_code == 403
    client.app.state.signup = "invite"
    assert client.post("/api/play/signup", json=body, headers=origin).status_code == 403
    assert client.post("/api/play/signup", json={**body, "invite": "inv_bogus"}, headers=origin).status_code == 400
    code = client.post("/api/play/invite", headers=_key(gatlas, "root")).json()["code"]
    made = client.post("/api/play/signup", json={**body, "invite": code}, headers=origin)
    assert made.status_code == 200 and made.json()["user"]["username"] == "newbie"
    again = client.post("/api/play/signup", json={"username": "second", "password": "long enough pw", "invite": code}, headers=origin)
    assert again.status_code == 400  # an invite is used once
    csrf = made.json()["csrf_token"]
    prefs = client.post("/api/play/prefs", json={"mode": "advanced", "tutorial_done": True}, headers={"x-csrf-token": csrf})
    assert prefs.json() == {"mode": "advanced", "tutorial_done": True}
    assert client.get("/api/play").json()["me"]["mode"] == "advanced"
    wrong = client.post("/api/play/account/delete", json={"mode": "remove", "password": "nope nope"}, headers={"x-csrf-token": csrf})
    assert wrong.status_code == 403
    gone = client.post("/api/play/account/delete", json={"mode": "remove", "password": "long enough pw"}, headers={"x-csrf-token": csrf})
    assert gone.status_code == 200 and client.get("/api/play/player/newbie").status_code == 404
    client.app.state.signup = "open"
    assert client.post("/api/play/signup", json={"username": "opener", "password": "long enough pw"}, headers=origin).status_code == 200
    assert client.post("/api/play/signup", json={"username": "x", "password": "pw"}, headers={"origin": "http://evil.example"}).status_code == 403


def test_report_moderate_hide_restore_ban(client, gatlas) -> None:
    root, bob = _key(gatlas, "root"), _key(gatlas, "bob")
    source = gatlas.planted.source
    spam = client.post("/api/play/submit", json={"modelId": gatlas.model, "layer": source, "index": 1, "campaign": "planted",
                                                  "text": SPAM}, headers=_key(gatlas, "alice")).json()
    eid = spam["explanation_id"]
    assert client.post("/api/play/report", json={"explanation_id": eid, "reason": "spam"}, headers=bob).status_code == 200
    queue = client.get("/api/play/admin", headers=root).json()["reports"]
    assert any(r["explanation_id"] == eid and r["status"] == "open" for r in queue)
    assert client.post("/api/play/moderate", json={"explanation_id": eid, "action": "hide"}, headers=root).status_code == 200
    texts = [e["text"] for e in client.get(f"/api/play/puzzle?campaign=planted&index=1").json()["explanations"]]
    assert SPAM not in texts
    assert SPAM not in [e["text"] for e in client.get(f"/api/feature/{gatlas.model}/{source}/1").json()["explanations"]]
    assert client.post("/api/play/moderate", json={"explanation_id": eid, "action": "restore"}, headers=root).status_code == 200
    assert SPAM in [e["text"] for e in client.get("/api/play/puzzle?campaign=planted&index=1").json()["explanations"]]
    banned = client.post("/api/play/moderate", json={"explanation_id": eid, "action": "ban"}, headers=root)
    assert banned.status_code == 200 and "alice banned" in banned.json()["detail"]
    assert all(r["username"] != "alice" for r in client.get("/api/play/leaderboard").json()["rows"])
    hidden = [r for r in client.get("/api/play/admin", headers=root).json()["reports"] if r["explanation_id"] == eid]
    assert hidden and hidden[0]["status"] == "hidden" and hidden[0]["author"] == "alice"


# ---------------------------------------------------------------- the CLI


def test_cli_campaign_add_list_export_invite(gatlas, tmp_path) -> None:
    from latentpedia.cli import app

    run = CliRunner()
    db = ["--db", gatlas.url]
    added = run.invoke(app, ["campaign", "add", "cli-quest", "--source", "1-mlp", "--model", gatlas.model,
                             "--indices", "1,2,3", "--order", "dense", "--days", "3", *db])
    assert added.exit_code == 0, added.output
    listed = run.invoke(app, ["campaign", "list", *db], env={"COLUMNS": "250"})  # no wrapped cells
    assert listed.exit_code == 0 and "cli-quest" in listed.output and "has an explanation beating" in listed.output
    out = tmp_path / "quest.jsonl"
    exported = run.invoke(app, ["campaign", "export", "planted", "--out", str(out), *db])
    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[-1]["progress"]["latents"] == len(gatlas.planted.tokens)
    assert {r["index"] for r in rows[:-1]} == set(range(len(gatlas.planted.tokens)))
    invite = run.invoke(app, ["campaign", "invite", *db])
    assert invite.exit_code == 0 and invite.output.strip().startswith("inv_")
    for args, needle in ((["campaign", "add", "Bad Name", "--source", "1-mlp", "--model", gatlas.model], "invalid campaign name"),
                         (["campaign", "add", "cli-quest", "--source", "1-mlp", "--model", gatlas.model], "exists"),
                         (["campaign", "add", "x2", "--source", "9-mlp", "--model", gatlas.model], "9-mlp"),
                         (["campaign", "add", "x3", "--source", "1-mlp", "--model", gatlas.model, "--indices", "1,a"], "--indices"),
                         (["campaign", "add", "x4", "--source", "1-mlp", "--model", gatlas.model, "--ends", "soon"], "--ends"),
                         (["campaign", "export", "nope"], "nope")):
        result = run.invoke(app, [*args, *db])
        assert result.exit_code == 2 and needle in result.output, (args, result.output)
