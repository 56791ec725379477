"""Explanation search at scale: semantic query latency over N synthetic explanations on SQLite and
PostgreSQL, recall@10 of the HNSW index against exact search, and the index's build time.

    nice -n 19 .venv/bin/python bench/explanation_search.py --n 1000000 --work /tmp/xs1m --step fill
    flock /tmp/latentpedia-measure.lock .venv/bin/python bench/explanation_search.py --n 1000000 --queries 100 --work /tmp/xs1m --step build
    flock /tmp/latentpedia-measure.lock .venv/bin/python bench/explanation_search.py --n 1000000 --queries 100 --work /tmp/xs1m --step query

(`--step all`, the default, runs the three in one process in a temporary directory.)
The embeddings are synthetic (no text model runs): unit vectors drawn around random "topic"
centres, 50 explanations a topic, noise 0.045 per dimension, so that an explanation's nearest
neighbour has cosine ~0.6 as paraphrases do under MiniLM; queries are drawn the same way.
`--uniform` draws uniform random unit vectors instead: in 384 dimensions every pair is nearly
orthogonal, no neighbour is much nearer than any other, and HNSW recall collapses (the
worst case, not what text embeddings look like). Each explanation
row is real (`explanations`, its full-text entry and its float32 blob in `explanation_embeddings`),
written in bulk: SQLite `executemany` on the raw connection, PostgreSQL `COPY`. Steps:
  fill       both stores (niced: not timed for the report beyond its own wall time); `--work`
             keeps them (the SQLite file, a PostgreSQL schema named after N) for the next steps
  build      reading every blob from the store + building the HNSW index (usearch, f16, M=16,
             multi-threaded batch adds) + saving it; then reopening the persisted index file
             (what a server start does) + the catch-up query
  query      side by side in one run, on each database:
             semantic   `search_explanations(mode="semantic", limit=20)` end to end: the catch-up query, the
                        ANN search, the rows fetched and filtered in the database (p50 / p99 over the queries)
             exact      the same query answered by a brute-force numpy product over all N vectors
             recall@10  |ANN top 10 ∩ exact top 10| / 10, averaged over the queries
The PostgreSQL store holds the same ids and vectors, so it loads the index file the SQLite run
built (the fingerprint check passes) instead of building it twice; its blob read is timed.
`--cleanup` drops the PostgreSQL schema and the work directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from latentpedia.engine.explanation_index import ExactIndex, ExplanationIndex, HnswIndex, search_explanations
from latentpedia.store.api import Store
from latentpedia.store.explanation_search import DIM, ExplanationFilter, embeddings_after, encode_vector

PG = os.environ.get("LATENTPEDIA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CHUNK = 50_000
PER_TOPIC = 50  # explanations per topic centre
SIGMA = 0.045  # per-dimension noise: nearest-neighbour cosine ~0.6, like paraphrases under MiniLM
WORDS = "bracket import string number date colour name plural quote indent error loop call list dict".split()


def topic_centres(n_topics: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((n_topics, DIM)).astype(np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def unit_vectors(n: int, seed: int, centres: np.ndarray | None) -> np.ndarray:
    """Unit vectors: around random topic centres (noise SIGMA per dimension), or uniform."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        block = rng.standard_normal((size, DIM)).astype(np.float32)
        if centres is not None:
            block = centres[rng.integers(len(centres), size=size)] + SIGMA * block
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def fill(store: Store, vectors: np.ndarray) -> float:
    """N explanations (ids 1..N) with their embeddings, in bulk; seconds taken."""
    store.upsert_model("bench", "llama", 1, 8, 8, 10, 0, {})
    n = len(vectors)
    source_id = store.add_source("bench", "0-mlp", "mlp", "blocks.0.mlp.hook_post", 0, 8, n)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    start = time.perf_counter()
    raw = store.engine.raw_connection()
    try:
        if store.dialect == "postgresql":
            _copy_postgres(raw.driver_connection, source_id, vectors, now)
        else:
            _insert_sqlite(raw.driver_connection, source_id, vectors, now)
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - start


def _text(i: int) -> str:
    return f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]} explanation {i}"


def _insert_sqlite(conn, source_id: int, vectors: np.ndarray, now: datetime) -> None:
    """executemany on the raw sqlite3 connection, CHUNK rows a statement (the FTS triggers run)."""
    stamp = now.isoformat(sep=" ")
    for lo in range(0, len(vectors), CHUNK):
        ids = range(lo + 1, min(lo + CHUNK, len(vectors)) + 1)
        conn.executemany("INSERT INTO explanations (id, source_id, latent_index, text, method, details, created_at) "
                         "VALUES (?, ?, ?, ?, 'offline', '{}', ?)", [(i, source_id, i - 1, _text(i), stamp) for i in ids])  # fmt: skip
        conn.executemany("INSERT INTO explanation_embeddings (explanation_id, embedder, vector) VALUES (?, 'random', ?)",
                         [(i, encode_vector(vectors[i - 1])) for i in ids])  # fmt: skip


def _copy_postgres(conn, source_id: int, vectors: np.ndarray, now: datetime) -> None:
    """COPY both tables (psycopg), then move the id sequence past them."""
    n = len(vectors)
    with conn.cursor() as cur:
        with cur.copy("COPY explanations (id, source_id, latent_index, text, method, details, created_at) FROM STDIN") as copy:
            for i in range(1, n + 1):
                copy.write_row((i, source_id, i - 1, _text(i), "offline", "{}", now))
        with cur.copy("COPY explanation_embeddings (explanation_id, embedder, vector) FROM STDIN") as copy:
            for i in range(1, n + 1):
                copy.write_row((i, "random", encode_vector(vectors[i - 1])))
        cur.execute("SELECT setval(pg_get_serial_sequence('explanations', 'id'), %s)", (n,))


def read_all(store: Store) -> float:
    start, after = time.perf_counter(), 0
    while True:
        ids, _ = embeddings_after(store, after, 50_000)
        if not len(ids):
            return time.perf_counter() - start
        after = int(ids[-1])


def latencies(store: Store, queries: np.ndarray) -> tuple[list[float], list[list[int]]]:
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        hits = search_explanations(store, "", q, ExplanationFilter(), mode="semantic", limit=20)
        times.append(time.perf_counter() - start)
        found.append([h.hit.id for h in hits])
    return times, found


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values) * 1000, p))


def run(label: str, store: Store, index: ExplanationIndex, queries: np.ndarray, exact: ExactIndex) -> dict:
    from latentpedia.engine import explanation_index as module

    module._INDEXES[store] = index
    latencies(store, queries[:5])  # warm-up
    times, found = latencies(store, queries)
    exact_times, recall = [], []
    for q, got in zip(queries, found, strict=True):
        start = time.perf_counter()
        truth, _ = exact.search(q, 10)
        exact_times.append(time.perf_counter() - start)
        recall.append(len(set(truth.tolist()) & set(got[:10])) / 10)
    row = {"db": label, "p50": pct(times, 50), "p99": pct(times, 99), "exact_p50": pct(exact_times, 50),
           "recall": statistics.mean(recall)}  # fmt: skip
    print(f"{label}: semantic p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms; exact numpy p50 {row['exact_p50']:.1f} ms "
          f"({row['exact_p50'] / row['p50']:.1f}x slower); recall@10 {row['recall']:.3f}", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--uniform", action="store_true", help="uniform random unit vectors (no topics): the worst case for HNSW")
    parser.add_argument("--work", type=Path, help="keep the stores and the index here between steps (default: a temporary directory)")
    parser.add_argument("--step", choices=("all", "fill", "build", "query"), default="all")
    parser.add_argument("--cleanup", action="store_true", help="drop --work's PostgreSQL schema and directory, then exit")
    args = parser.parse_args()
    if args.cleanup:
        return _cleanup(args.work)
    temporary = args.work is None
    work = args.work or Path(tempfile.mkdtemp(prefix="lp-xsearch-"))
    work.mkdir(parents=True, exist_ok=True)
    centres = None if args.uniform else topic_centres(max(1, args.n // PER_TOPIC))
    kind = "uniform random" if args.uniform else f"topic-clustered ({args.n // PER_TOPIC:,} topics, sigma {SIGMA})"
    print(f"{args.n:,} explanations, {DIM}-d {kind} unit vectors, {args.queries} queries; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    try:
        if args.step in ("all", "fill"):
            _fill_step(work, unit_vectors(args.n, 0, centres), not args.no_postgres)
        if args.step in ("all", "build"):
            _build_step(work)
        if args.step in ("all", "query"):
            _query_step(work, args.n, unit_vectors(args.n, 0, centres), unit_vectors(args.queries, 1, centres))
    finally:
        if temporary:
            _cleanup(work)


def _state(work: Path) -> dict:
    path = work / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(work: Path, **changes) -> None:
    (work / "state.json").write_text(json.dumps({**_state(work), **changes}, indent=1))


def _pg_url(schema: str) -> str:
    return sa.make_url(PG).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def _fill_step(work: Path, vectors: np.ndarray, postgres: bool) -> None:
    sqlite = Store.open(f"sqlite:///{work / 'atlas.db'}")
    seconds = fill(sqlite, vectors)
    sqlite.close()
    print(f"sqlite: filled in {seconds:.0f} s", flush=True)
    _save_state(work, n=len(vectors), sqlite_fill=seconds)
    if postgres:
        schema = f"lp_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(PG, poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        _save_state(work, schema=schema)
        store = Store.open(_pg_url(schema))
        seconds = fill(store, vectors)
        store.close()
        print(f"postgres: filled in {seconds:.0f} s", flush=True)
        _save_state(work, postgres_fill=seconds)


def _build_step(work: Path) -> None:
    persist = work / "index"
    shutil.rmtree(persist, ignore_errors=True)
    sqlite = Store.open(f"sqlite:///{work / 'atlas.db'}")
    read = read_all(sqlite)
    start = time.perf_counter()
    index = ExplanationIndex(sqlite, persist_dir=persist, backend="local")
    index.sync()
    build = time.perf_counter() - start
    print(f"sqlite: read all blobs {read:.1f} s; read + HNSW build (+ save) {build:.1f} s; kind {index.kind}", flush=True)
    start = time.perf_counter()
    reopened = ExplanationIndex(sqlite, persist_dir=persist, backend="local")
    reopened.sync()
    reload = time.perf_counter() - start
    print(f"sqlite: persisted index reloaded in {reload:.1f} s (kind {reopened.kind})", flush=True)
    if index.kind == "hnsw":
        index.index.save(work / "shared.usearch")  # the PostgreSQL store holds the same ids and vectors
    sqlite.close()
    _save_state(work, sqlite_read=read, build=build, reload=reload, kind=index.kind)


def _query_step(work: Path, n: int, vectors: np.ndarray, queries: np.ndarray) -> None:
    state = _state(work)
    exact = ExactIndex()
    exact.add(np.arange(1, n + 1, dtype=np.int64), vectors)
    del vectors
    rows = []
    sqlite = Store.open(f"sqlite:///{work / 'atlas.db'}")
    rows.append(run("sqlite", sqlite, _loaded(sqlite, work), queries, exact))
    sqlite.close()
    if state.get("schema"):
        store = Store.open(_pg_url(state["schema"]))
        read = read_all(store)
        start = time.perf_counter()
        index = _loaded(store, work)
        print(f"postgres: read all blobs {read:.1f} s; index file loaded + caught up in {time.perf_counter() - start:.1f} s", flush=True)
        rows.append(run("postgres", store, index, queries, exact) | {"read": read})
        store.close()
    fill_of = {"sqlite": state.get("sqlite_fill"), "postgres": state.get("postgres_fill")}
    print("\n| db | N | semantic p50 | p99 | exact numpy p50 | recall@10 | fill | read all blobs | read + HNSW build + save | reload persisted index |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sqlite_row = r["db"] == "sqlite"
        build = _secs(state["build"]) if sqlite_row and "build" in state else "(file reused)"
        reload = f"{state['reload']:.1f} s" if sqlite_row and "reload" in state else "-"
        read = state.get("sqlite_read") if sqlite_row else r.get("read")
        print(f"| {r['db']} | {n:,} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['exact_p50']:.1f} ms | {r['recall']:.3f} | "
              f"{_secs(fill_of[r['db']])} | {_secs(read)} | {build} | {reload} |")  # fmt: skip


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _loaded(store: Store, work: Path) -> ExplanationIndex:
    """An index of `store` from the file the build step saved (or built here if there is none)."""
    index = ExplanationIndex(store, persist_dir=None, backend="local")
    path = work / "shared.usearch"
    if path.exists():
        hnsw = HnswIndex()
        hnsw.load(path)
        index.index, index.watermark = hnsw, len(hnsw)
    index.sync()
    return index


def _cleanup(work: Path | None) -> None:
    if work is None:
        return
    schema = _state(work).get("schema")
    if schema:
        admin = sa.create_engine(PG, poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
