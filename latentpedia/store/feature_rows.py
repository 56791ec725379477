"""What a feature page reads about one latent, in the fewest statements, on the DBAPI connection.

    with dbapi_connection(store.engine) as conn:
        rows = read_feature_rows(conn, store.dialect, model, source, index, full=True)

`full=True` (a cache miss) reads the source row, the latent's statistics and map position,
its examples, its matches and whether it has explanations or comments, in three statements
(head row, examples, matches); `full=False` (the latent's static part is cached) only the source
row and those community flags, in one. (One PostgreSQL statement aggregating the examples and
matches by LATERAL joins was tried: fewer round trips, but the server spent more than it saved,
bench/RESULTS.md.) Statements are plain SQL
strings run on the driver's connection: sqlite3 keeps them prepared in its statement cache,
psycopg prepares them after a few runs, and neither pays SQLAlchemy's per-statement cost (about
as much as SQLite's own work for these reads).

The source row comes back as a tuple of plain values (`source_key`) that says whether a cached
view of the source is still the row's: any change of the row (a rebuild, new metadata, a map or
matches recomputed, which stamp `meta`) changes the tuple.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import Engine

from latentpedia.store.families import BestExplanation
from latentpedia.store.textcheck import check_parameters

MAX_INDEX = 2**31 - 1  # the column type's range: a larger index is no latent (and no bind error)

_SOURCE_COLUMNS = (
    "s.id, s.model_id, s.name, s.kind, s.hook_name, s.layer, s.d_in, s.d_sae, s.corpus_id, s.status, s.n_tokens, "
    "s.format, s.path, {meta}, s.created_at, s.built_at, c.content_hash"
)
_N_SOURCE = 17
_LATENT_COLUMNS = "l.idx IS NOT NULL, l.max_act, l.frac_nonzero, l.mean_act, l.hist, l.logits, l.aligned, l.correlated, p.x, p.y, p.cluster"
_N_LATENT = 11  # "is built", 7 statistics, the map position (x, y, cluster)
_FLAGS = (
    "EXISTS (SELECT 1 FROM explanations x WHERE x.source_id = s.id AND x.latent_index = {idx}), "
    "EXISTS (SELECT 1 FROM comments m WHERE m.source_id = s.id AND m.latent_index = {idx})"
)
_FROM = "FROM sources s LEFT JOIN corpora c ON c.id = s.corpus_id"
_LATENT_JOIN = (" LEFT JOIN latents l ON l.source_id = s.id AND l.idx = {idx}"
                " LEFT JOIN latent_maps p ON p.source_id = s.id AND p.idx = {idx}")
_WHERE = " WHERE s.model_id = {model} AND s.name = {name}"
_EXAMPLE_ORDER = 'e.kind, e."group", e.rank'
_MATCH_ORDER = "o.layer, o.d_sae, o.name, m.method"


def _sqlite_sql() -> tuple[str, str, str, str]:
    p = {"idx": ":idx", "model": ":model", "name": ":name"}
    source = _SOURCE_COLUMNS.format(meta="s.meta")
    head = f"SELECT {source}, {_FLAGS.format(**p)} {_FROM}{_WHERE.format(**p)}"
    full = f"SELECT {source}, {_FLAGS.format(**p)}, {_LATENT_COLUMNS} {_FROM}{_LATENT_JOIN.format(**p)}{_WHERE.format(**p)}"
    examples = ('SELECT e.kind, e."group", e."window", e.max_value, e.max_pos, e.positions, e."values" FROM examples e '
                f"WHERE e.source_id = ? AND e.latent = ? ORDER BY {_EXAMPLE_ORDER}")  # fmt: skip
    matches = ("SELECT m.other_id, o.name, o.layer, o.hook_name, m.method, m.indices, m.\"values\" FROM latent_matches m "
               f"JOIN sources o ON o.id = m.other_id WHERE m.source_id = ? AND m.idx = ? ORDER BY {_MATCH_ORDER}")  # fmt: skip
    return head, full, examples, matches


_SQLITE_HEAD, _SQLITE_FULL, _SQLITE_EXAMPLES, _SQLITE_MATCHES = _sqlite_sql()
_PG_HEAD, _PG_FULL = ((q.replace("s.meta,", "s.meta::text,").replace(":idx", "%(idx)s").replace(":model", "%(model)s").replace(":name", "%(name)s"))
                      for q in (_SQLITE_HEAD, _SQLITE_FULL))  # fmt: skip
_PG_EXAMPLES, _PG_MATCHES = _SQLITE_EXAMPLES.replace("?", "%s"), _SQLITE_MATCHES.replace("?", "%s")


class LatentRow(NamedTuple):
    """A latents row's dashboard statistics (JSON columns parsed)."""

    max_act: float | None
    frac_nonzero: float | None
    mean_act: float | None
    hist: Any
    logits: Any
    aligned: Any
    correlated: Any


class ExampleRow(NamedTuple):
    """An examples row as stored (`positions` and `values` still blobs)."""

    kind: int
    group: int
    window: int
    max_value: float | None
    max_pos: int
    positions: bytes
    values: bytes


class MatchTuple(NamedTuple):
    """A latent_matches row with its other source's name, layer and hook (JSON lists parsed)."""

    other_id: int
    other: str
    layer: int | None
    hook_name: str
    method: str
    indices: list[Any]
    values: list[Any]


class MapRow(NamedTuple):
    """The latent's latent_maps row: where it sits on its source's map."""

    x: float
    y: float
    cluster: int


class FeatureRows(NamedTuple):
    """One latent's rows (see the module doc). `source_key` is None if the source is unknown;
    `latent` None if the latent is not built (or `full` was False); `examples`, `matches` and
    `map_row` (None: not on a map) are read only if `full`."""

    source_key: tuple | None
    has_explanations: bool
    has_comments: bool
    latent: LatentRow | None
    examples: list[ExampleRow]
    matches: list[MatchTuple]
    map_row: MapRow | None = None


@contextmanager
def dbapi_connection(engine: Engine) -> Iterator[Any]:
    """The driver's connection from the engine's pool, for reads. On PostgreSQL it is in
    autocommit mode while lent (each statement its own snapshot, nothing to roll back, so
    returning it to the pool costs no round trip); a connection the driver reports broken is
    discarded, not pooled."""
    fairy = engine.raw_connection()
    conn = fairy.dbapi_connection
    postgres = engine.dialect.name == "postgresql"
    try:
        if postgres:
            conn.autocommit = True
        yield conn
    except Exception:
        if postgres and (conn.closed or conn.broken):
            fairy.invalidate()
        raise
    finally:
        if postgres and not conn.closed:
            conn.autocommit = False
        fairy.close()


def read_feature_rows(conn: Any, dialect: str, model: str, source: str, index: int, *, full: bool,
                      source_id: int | None = None) -> FeatureRows:  # fmt: skip
    """The rows of latent `index` of `model`/`source` on the DBAPI connection `conn` (see the module doc).

    `source_id`: the id the source had when last read. On PostgreSQL a full read then sends its
    three statements in one round trip (psycopg's pipeline mode) instead of three; if the source
    turns out to have another id now, the examples and matches are read again for the right one."""
    check_parameters({"model": model, "name": source})  # as the engine's statements are checked: 422, not a driver error
    params = {"model": model, "name": source, "idx": index if 0 <= index <= MAX_INDEX else -1}
    if dialect == "postgresql":
        sql = (_PG_FULL if full else _PG_HEAD, _PG_EXAMPLES, _PG_MATCHES)
        if full and source_id is not None:
            return _pipelined(conn, params, sql, source_id)
        return _split(conn, params, full, sql, _same)
    return _split(conn, params, full, (_SQLITE_FULL if full else _SQLITE_HEAD, _SQLITE_EXAMPLES, _SQLITE_MATCHES), _json)


def _pipelined(conn: Any, params: dict[str, Any], sql: tuple[str, str, str], source_id: int) -> FeatureRows:
    """`_split` in full with the examples and matches read by the expected source id, all three
    statements sent together (one round trip to the server instead of three)."""
    head_sql, examples_sql, matches_sql = sql
    key = (source_id, params["idx"])
    with conn.pipeline():
        head, examples, matches = (conn.execute(q, a) for q, a in ((head_sql, params), (examples_sql, key), (matches_sql, key)))
    row = head.fetchone()
    if row is None or row[0] != source_id:  # gone, or built again under another id: read in steps
        return _split(conn, params, True, sql, _same)
    return _rows(row, examples.fetchall(), matches.fetchall(), _same)


def window_rows(conn: Any, dialect: str, corpus_id: int, indices: list[int]) -> list[tuple[int, bytes]]:
    """(index, token blob) of these windows of the corpus, on the DBAPI connection `conn`."""
    if dialect == "postgresql":
        return conn.execute("SELECT idx, tokens FROM windows WHERE corpus_id = %s AND idx = ANY(%s)", (corpus_id, list(indices))).fetchall()
    marks = ",".join("?" * len(indices))
    return conn.execute(f"SELECT idx, tokens FROM windows WHERE corpus_id = ? AND idx IN ({marks})", (corpus_id, *indices)).fetchall()


_FIRST_OK_SCORE = "(SELECT s.{col} FROM explanation_scores s WHERE s.explanation_id = x.id AND s.status = 'ok' ORDER BY s.id LIMIT 1)"
_BEST_EXPLANATIONS = (
    "SELECT x.id, x.source_id, x.latent_index, x.text, (SELECT SUM(v.value) FROM votes v WHERE v.explanation_id = x.id), "
    f"{_FIRST_OK_SCORE.format(col='score')}, {_FIRST_OK_SCORE.format(col='scorer')} FROM explanations x WHERE "
)


def best_explanations(conn: Any, dialect: str, wanted: dict[int, set[int]]) -> dict[tuple[int, int], BestExplanation]:
    """`families.best_explanations` (each latent's best voted, then newest explanation, with its
    first ok score) in one statement on the DBAPI connection `conn`."""
    wanted = {int(s): sorted({int(i) for i in idx}) for s, idx in wanted.items() if idx}
    if not wanted:
        return {}
    mark = "%s" if dialect == "postgresql" else "?"
    where = " OR ".join(f"(x.source_id = {mark} AND x.latent_index IN ({','.join([mark] * len(idx))}))" for idx in wanted.values())
    rows = conn.execute(_BEST_EXPLANATIONS + where, [v for s, idx in wanted.items() for v in (s, *idx)]).fetchall()
    best: dict[tuple[int, int], BestExplanation] = {}
    for _eid, sid, idx, text, _votes, score, scorer in sorted(rows, key=lambda r: (-(r[4] or 0), -r[0])):
        if (sid, idx) not in best:
            best[(int(sid), int(idx))] = BestExplanation(text, None if score is None else float(score), scorer)
    return best


def _split(conn: Any, params: dict[str, Any], full: bool, sql: tuple[str, str, str], parse: Any) -> FeatureRows:
    head_sql, examples_sql, matches_sql = sql
    row = conn.execute(head_sql, params).fetchone()
    if row is None:
        return FeatureRows(None, False, False, None, [], [])
    if not full or not row[_N_SOURCE + 2]:
        return _head(row)
    key = (row[0], params["idx"])
    return _rows(row, conn.execute(examples_sql, key), conn.execute(matches_sql, key), parse)


def _head(row: tuple) -> FeatureRows:
    """FeatureRows of the head row alone: the source and the community flags, no latent rows."""
    return FeatureRows(row[:_N_SOURCE], bool(row[_N_SOURCE]), bool(row[_N_SOURCE + 1]), None, [], [])


def _rows(row: tuple, examples: Any, matches: Any, parse: Any) -> FeatureRows:
    """FeatureRows from the head row and the examples and matches rows read for its source."""
    if not row[_N_SOURCE + 2]:  # the latent is not built: it has no rows to show
        return _head(row)
    latent, map_row = _latent(row[_N_SOURCE + 3 : _N_SOURCE + _N_LATENT + 2], parse)
    return _head(row)._replace(latent=latent, map_row=map_row, examples=[ExampleRow._make(r) for r in examples],
                               matches=[MatchTuple(o, name, layer, hook, method, parse(idx), parse(val))
                                        for o, name, layer, hook, method, idx, val in matches])  # fmt: skip


def _latent(values: tuple, parse: Any) -> tuple[LatentRow, MapRow | None]:
    max_act, frac_nonzero, mean_act, hist, logits, aligned, correlated, x, y, cluster = values
    latent = LatentRow(max_act, frac_nonzero, mean_act, parse(hist), parse(logits), parse(aligned), parse(correlated))
    return latent, None if x is None else MapRow(x, y, cluster)


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _same(value: Any) -> Any:
    return value
