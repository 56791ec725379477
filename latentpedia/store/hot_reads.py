"""The small reads every game page and move makes, as plain SQL on the driver's connection.

    with dbapi_connection(store.engine) as conn:
        user = user_by_key(conn, store.dialect, security.digest(key))
        plays = read_plays(conn, store.dialect, user_id=user.id)

Who is calling (an API key or a session cookie), a player's plays and preferences, a latent's
explanations with their vote sums, its game scores, the hidden explanations. Through SQLAlchemy's
ORM one such read costs ~0.24 ms on SQLite and ~1.2 ms on PostgreSQL (a session's BEGIN and
ROLLBACK are round trips there); the same statement on the driver's connection costs ~15 µs and
~0.2 ms (bench/RESULTS.md, "The game's reads"). A puzzle page made six of them. The functions
return what the Store / GameStore methods they serve returned (tests/test_hot_reads.py compares
them on both databases). Statements are written once with `?` and turned into psycopg's `%s`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from latentpedia.store.base import utc

_USER = "u.id, u.username, u.role, u.created_at, u.disabled"
_PLAY = "id, user_id, campaign_id, source_id, latent_index, action, explanation_id, score, points, daily, created_at"
_PG: dict[str, str] = {}


def _sql(dialect: str, statement: str) -> str:
    if dialect == "sqlite":
        return statement
    found = _PG.get(statement)
    if found is None:
        found = _PG[statement] = statement.replace("?", "%s")
    return found


def _fetch(conn: Any, dialect: str, statement: str, params: tuple = ()) -> list[tuple]:
    cursor = conn.cursor()
    try:
        cursor.execute(_sql(dialect, statement), params)
        return cursor.fetchall()
    finally:
        cursor.close()


def when(value: Any) -> datetime | None:
    """A stored datetime as an aware UTC one (SQLite hands back the text SQLAlchemy wrote)."""
    if value is None or isinstance(value, datetime):
        return utc(value)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _user(row: tuple) -> tuple[int, str, str, datetime | None, bool]:
    """A UserRecord's fields (id, username, role, created_at, disabled)."""
    return row[0], row[1], row[2], when(row[3]), bool(row[4])


# who is calling


def user_by_key(conn: Any, dialect: str, key_hash: str) -> tuple[tuple, int, datetime | None] | None:
    """(owner's UserRecord fields, key id, last used) of an unrevoked API key by its digest; None for an unknown or
    revoked key. The owner may be disabled: the caller decides."""
    rows = _fetch(conn, dialect, f"SELECT {_USER}, k.id, k.revoked_at, k.last_used_at FROM api_keys k "
                                 "JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?", (key_hash,))  # fmt: skip
    if not rows or rows[0][6] is not None:
        return None
    row = rows[0]
    return _user(row), row[5], when(row[7])


def user_by_session(conn: Any, dialect: str, token_hash: str) -> tuple[tuple, str, datetime | None] | None:
    """(user's UserRecord fields, CSRF token, expiry) of a session by its token's digest, or None."""
    rows = _fetch(conn, dialect, f"SELECT {_USER}, s.csrf_token, s.expires_at FROM sessions s "
                                 "JOIN users u ON u.id = s.user_id WHERE s.id = ?", (token_hash,))  # fmt: skip
    if not rows:
        return None
    return _user(rows[0]), rows[0][5], when(rows[0][6])


# the game


def read_plays(conn: Any, dialect: str, user_id: int, source_id: int | None = None, index: int | None = None) -> list[tuple]:
    """A player's plays (of one source, of one latent), oldest first: a PlayRecord's fields each."""
    where, params = ["user_id = ?"], [user_id]
    for column, value in (("source_id", source_id), ("latent_index", index)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(int(value))
    rows = _fetch(conn, dialect, f"SELECT {_PLAY} FROM game_plays WHERE {' AND '.join(where)} ORDER BY id", tuple(params))
    return [(*row[:10], when(row[10])) for row in rows]


def read_prefs(conn: Any, dialect: str, user_id: int) -> tuple[str, bool]:
    """(mode, tutorial seen) of a player; ("simple", False) until they set them."""
    rows = _fetch(conn, dialect, "SELECT mode, tutorial_done FROM game_prefs WHERE user_id = ?", (user_id,))
    return ("simple", False) if not rows else (rows[0][0], bool(rows[0][1]))


def latent_explanations(conn: Any, dialect: str, source_id: int, index: int, user_id: int | None = None) -> list[dict[str, Any]]:
    """A latent's explanations, best voted first (then oldest): id, text, method, author id and
    name, vote sum, and `my_vote` (the caller's vote, 0 if none or anonymous)."""
    rows = _fetch(conn, dialect,
                  "SELECT e.id, e.text, e.method, e.author_id, u.username, "
                  "(SELECT SUM(v.value) FROM votes v WHERE v.explanation_id = e.id), "
                  "(SELECT m.value FROM votes m WHERE m.user_id = ? AND m.explanation_id = e.id) "
                  "FROM explanations e LEFT JOIN users u ON u.id = e.author_id "
                  "WHERE e.source_id = ? AND e.latent_index = ?", (user_id or 0, source_id, int(index)))  # fmt: skip
    found = [{"id": i, "text": t, "method": m, "author_id": a, "author": name, "vote_score": int(v or 0), "my_vote": int(mine or 0)}
             for i, t, m, a, name, v, mine in rows]  # fmt: skip
    return sorted(found, key=lambda r: (-r["vote_score"], r["id"]))


def game_scores(conn: Any, dialect: str, source_id: int, version: str, index: int | None = None) -> dict[int, tuple[int, float, int | None, str]]:
    """{explanation id: (latent, score, author id, text)} of the source's (latent's) explanations
    with an ok score of prompt version `version`."""
    statement = ("SELECT e.id, e.latent_index, s.score, e.author_id, e.text FROM explanations e "
                 "JOIN explanation_scores s ON s.explanation_id = e.id "
                 "WHERE e.source_id = ? AND s.prompt_version = ? AND s.status = 'ok'")  # fmt: skip
    params: tuple = (source_id, version)
    if index is not None:
        statement, params = statement + " AND e.latent_index = ?", (*params, int(index))
    return {eid: (i, float(s), a, t) for eid, i, s, a, t in _fetch(conn, dialect, statement, params)}


def usernames(conn: Any, dialect: str, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    marks = ", ".join("?" * len(wanted))
    return dict(_fetch(conn, dialect, f"SELECT id, username FROM users WHERE id IN ({marks})", tuple(wanted)))


def hidden_ids(conn: Any, dialect: str) -> set[int]:
    return {row[0] for row in _fetch(conn, dialect, "SELECT explanation_id FROM game_hidden")}
