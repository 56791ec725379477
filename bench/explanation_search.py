"""Explanation search at scale: semantic query latency over N synthetic explanations on SQLite and
PostgreSQL, recall@10 of the HNSW index against exact search, and the index's build time.

    flock /tmp/latentpedia-heavy.lock .venv/bin/python bench/explanation_search.py [--n 1000000] [--queries 200]

The embeddings are synthetic (no text model runs): unit vectors drawn around random "topic"
centres, 50 explanations a topic, noise 0.045 per dimension, so that an explanation's nearest
neighbour has cosine ~0.6 as paraphrases do under MiniLM; queries are drawn the same way.
`--uniform` draws uniform random unit vectors instead: in 384 dimensions every pair is nearly
orthogonal, no neighbour is much nearer than any other, and HNSW recall collapses (the
worst case, not what text embeddings look like). Each explanation
row is real (`explanations` + its float32 blob in `explanation_embeddings`), written with bulk
inserts. Measured side by side in one run:
  build      reading every blob from the store + building the HNSW index (usearch, f16, M=16)
  load       reopening the persisted index file (what a server start does) + the catch-up query
  semantic   `search_explanations(mode="semantic", limit=20)` end to end: the catch-up query, the
             ANN search, the rows fetched and filtered in the database (p50 / p99 over the queries)
  exact      the same query answered by a brute-force numpy product over all N vectors
  recall@10  |ANN top 10 ∩ exact top 10| / 10, averaged over the queries
The PostgreSQL store holds the same ids and vectors, so it loads the index file the SQLite run
built (the fingerprint check passes) instead of building it twice; its blob read is timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from latentpedia.engine.explanation_index import ExactIndex, ExplanationIndex, HnswIndex, search_explanations
from latentpedia.store.api import Store
from latentpedia.store.community_schema import Explanation
from latentpedia.store.explanation_search import DIM, ExplanationEmbedding, ExplanationFilter, embeddings_after, encode_vector

PG = os.environ.get("LATENTPEDIA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CHUNK = 20_000
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
    """N explanations (ids 1..N) with their embeddings; seconds taken."""
    store.upsert_model("bench", "llama", 1, 8, 8, 10, 0, {})
    n = len(vectors)
    source_id = store.add_source("bench", "0-mlp", "mlp", "blocks.0.mlp.hook_post", 0, 8, n)
    start = time.perf_counter()
    with store.engine.begin() as conn:
        for lo in range(0, n, CHUNK):
            ids = range(lo + 1, min(lo + CHUNK, n) + 1)
            conn.execute(sa.insert(Explanation), [
                {"id": i, "source_id": source_id, "latent_index": i - 1, "method": "offline", "details": {},
                 "text": f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]} explanation {i}"} for i in ids])  # fmt: skip
            conn.execute(sa.insert(ExplanationEmbedding), [
                {"explanation_id": i, "embedder": "random", "vector": encode_vector(vectors[i - 1])} for i in ids])  # fmt: skip
        if store.dialect == "postgresql":
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('explanations', 'id'), :n)"), {"n": n})
    return time.perf_counter() - start


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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lp-xsearch-"))
    persist = work / "index"
    centres = None if args.uniform else topic_centres(max(1, args.n // PER_TOPIC))
    vectors = unit_vectors(args.n, 0, centres)
    queries = unit_vectors(args.queries, 1, centres)
    exact = ExactIndex()
    exact.add(np.arange(1, args.n + 1, dtype=np.int64), vectors)
    kind = "uniform random" if args.uniform else f"topic-clustered ({args.n // PER_TOPIC:,} topics, sigma {SIGMA})"
    print(f"{args.n:,} explanations, {DIM}-d {kind} unit vectors, {args.queries} queries; {os.cpu_count()} cores", flush=True)
    rows = []
    try:
        sqlite = Store.open(f"sqlite:///{work / 'atlas.db'}")
        print(f"sqlite: filled in {fill(sqlite, vectors):.0f} s", flush=True)
        read = read_all(sqlite)
        start = time.perf_counter()
        index = ExplanationIndex(sqlite, persist_dir=persist, backend="local")
        index.sync()
        build = time.perf_counter() - start
        print(f"sqlite: read all blobs {read:.1f} s; read + HNSW build (+ save) {build:.1f} s; kind {index.kind}", flush=True)
        start = time.perf_counter()
        reopened = ExplanationIndex(sqlite, persist_dir=persist, backend="local")
        reopened.sync()
        print(f"sqlite: persisted index reloaded in {time.perf_counter() - start:.1f} s (kind {reopened.kind})", flush=True)
        rows.append(run("sqlite", sqlite, reopened, queries, exact))
        if not args.no_postgres:
            rows.append(_postgres(vectors, queries, exact, index, persist))
        sqlite.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| db | N | semantic p50 | p99 | exact numpy p50 | recall@10 |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['db']} | {args.n:,} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['exact_p50']:.1f} ms | {r['recall']:.3f} |")


def _postgres(vectors: np.ndarray, queries: np.ndarray, exact: ExactIndex, built: ExplanationIndex, persist: Path) -> dict:
    schema = f"lp_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(PG).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        store = Store.open(url)
        print(f"postgres: filled in {fill(store, vectors):.0f} s", flush=True)
        print(f"postgres: read all blobs {read_all(store):.1f} s", flush=True)
        index = ExplanationIndex(store, persist_dir=None, backend="local")
        start = time.perf_counter()
        if built.kind == "hnsw":  # the same ids and vectors: reuse the file instead of building again
            path = persist / "pg.usearch"
            built.index.save(path)
            hnsw = HnswIndex()
            hnsw.load(path)
            index.index, index.watermark = hnsw, len(vectors)
        index.sync()
        print(f"postgres: index file loaded + caught up in {time.perf_counter() - start:.1f} s", flush=True)
        row = run("postgres", store, index, queries, exact)
        store.close()
        return row
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
