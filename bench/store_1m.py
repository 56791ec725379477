"""A 1M-latent synthetic store: fill it, measure its bytes on disk, its write rate, page latency
and the hot query's plan.

    python bench/store_1m.py --db postgresql://postgres@127.0.0.1:5432/latentpedia_1m [--sources 10] [--latents 100000] [--examples 8]
    python bench/store_1m.py --db sqlite:////tmp/store-1m.db --sources 10

Fills `--sources` synthetic sources of `--latents` latents each (bench/p4_feature_route.py's
latent statistics and examples, imported: dashboard rows of the real shapes; `--examples` top
examples per latent over 128-token windows, 24 stored values each; 8 rather than the P4 store's 32
so a million latents fit a session on 2 shared cores), one `write_source_results` per source (COPY
on PostgreSQL). A source already in the store is kept, so a stopped fill resumes. Then prints, as
JSON: rows written per second per source, bytes on disk (latents and examples: table and indexes;
PostgreSQL: summed over the partitions), the feature JSON and HTML page latency for random latents
of random sources in-process (through the app, no network: median and p90 wall, median CPU),
and on PostgreSQL the EXPLAIN of the feature page's examples query, which should name one
partition.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import p4_feature_route as p4  # noqa: E402  (the synthetic statistics and examples)

from latentpedia.store.api import Store  # noqa: E402
from latentpedia.store.records import SourceResults  # noqa: E402

N_WINDOWS = 4096


def source_name(i: int) -> str:
    return f"{i}-synthetic"


def fill(url: str, n_sources: int, n_latents: int, k: int) -> list[dict]:
    """The model, vocab and corpus once, then each missing source; the write rate of each."""
    store = Store.open(url)
    rates = []
    try:
        if store.get_model(p4.MODEL) is None:
            store.upsert_model(p4.MODEL, "llama", n_sources, 576, 1536, p4.VOCAB, 0)
            store.set_vocab(p4.MODEL, [f"Ġw{i}" for i in range(p4.VOCAB)])
        corpus = _corpus(store)
        for i in range(n_sources):
            if (found := store.get_source(p4.MODEL, source_name(i))) is not None and found.status == "ready":
                continue
            rng = np.random.default_rng(i)
            results = SourceResults(p4._stats(n_latents, rng), p4._examples(n_latents, k, N_WINDOWS, rng), n_tokens=N_WINDOWS * 127)
            sid = found.id if found else store.add_source(p4.MODEL, source_name(i), "sae", f"blocks.{i}.hook_resid_post", i, 576, n_latents, corpus)
            started, cpu = time.perf_counter(), time.process_time()
            store.write_source_results(sid, results)
            seconds = time.perf_counter() - started
            rows = n_latents * (1 + k)
            rates.append({"source": source_name(i), "rows": rows, "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds),
                          "cpu_s_here": round(time.process_time() - cpu, 1)})  # fmt: skip
            print(json.dumps(rates[-1]), file=sys.stderr, flush=True)
    finally:
        store.close()
    return rates


def _corpus(store: Store) -> int:
    for corpus in store.list_corpora(p4.MODEL):
        return corpus.id
    windows = np.random.default_rng(0).integers(0, p4.VOCAB, (N_WINDOWS, p4.WINDOW)).astype(np.int32)
    return store.add_corpus(p4.MODEL, "synthetic", {}, p4.WINDOW, windows, {}, "store-1m-synthetic")


def bytes_on_disk(store: Store) -> dict[str, int]:
    """Table and index bytes of latents and examples (PostgreSQL: over the partitions), and the whole store."""
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            out = {}
            for table in ("latents", "examples"):
                parts = f"(SELECT inhrelid FROM pg_inherits WHERE inhparent = '{table}'::regclass UNION SELECT '{table}'::regclass)"
                row = conn.exec_driver_sql(f"SELECT sum(pg_table_size(r)), sum(pg_indexes_size(r)) FROM {parts} AS p(r)").one()
                out[f"{table}_table"], out[f"{table}_indexes"] = int(row[0]), int(row[1])
            out["database"] = int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())
            return out
        rows = conn.exec_driver_sql("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").all()
        sizes = dict(rows)
        out = {"latents_table": int(sizes.get("latents", 0)), "examples_table": int(sizes.get("examples", 0))}
        out["latents_indexes"] = sum(int(v) for k, v in sizes.items() if k.startswith("sqlite_autoindex_latents") or k.startswith("ix_latents"))
        out["examples_indexes"] = sum(int(v) for k, v in sizes.items() if k.startswith("sqlite_autoindex_examples") or k.startswith("ix_examples"))
        out["database"] = int(sum(int(v) for v in sizes.values()))
        return out


def latency(url: str, n_sources: int, n_latents: int, n: int) -> dict[str, float]:
    """Wall (median, p90) and CPU (median) ms of GET page and JSON for `n` random latents each, through the app in-process."""
    from fastapi.testclient import TestClient

    from latentpedia.web import create_app

    pick = random.Random(7)
    out = {}
    with TestClient(create_app(url, private=False)) as client:
        client.get(f"/{p4.MODEL}/{source_name(0)}/0")  # templates compiled, vocab loaded
        for name, prefix in (("json", "/api/feature/"), ("html", "/")):
            wall, cpu = [], []
            for _ in range(n):
                path = f"{prefix}{p4.MODEL}/{source_name(pick.randrange(n_sources))}/{pick.randrange(n_latents)}"
                started, started_cpu = time.perf_counter(), time.process_time()
                response = client.get(path)
                wall.append((time.perf_counter() - started) * 1e3)
                cpu.append((time.process_time() - started_cpu) * 1e3)
                assert response.status_code == 200, (path, response.status_code)
            out[f"{name}_wall_median_ms"], out[f"{name}_wall_p90_ms"] = round(float(np.median(wall)), 2), round(float(np.percentile(wall, 90)), 2)
            out[f"{name}_cpu_median_ms"] = round(float(np.median(cpu)), 2)
    return out


def explain(store: Store) -> list[str]:
    """PostgreSQL's plan of the feature page's examples read for one latent (its WHERE clause, as
    store/feature_rows.py reads it), with the values inlined as a request's are bound."""
    source = store.get_source(p4.MODEL, source_name(0))
    sql = ('EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT e.kind, e."group", e."window", e.max_value, '
           f'e.max_pos, e.positions, e."values" FROM examples e WHERE e.source_id = {int(source.id)} AND e.latent = 12345 '
           'ORDER BY e.kind, e."group", e.rank')  # fmt: skip
    with store.engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql(sql)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="store URL (a PostgreSQL database of its own, or a SQLite file)")
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--latents", type=int, default=100_000, help="latents per source")
    parser.add_argument("--examples", type=int, default=8, help="top examples per latent")
    parser.add_argument("--requests", type=int, default=300, help="random latents timed per page kind")
    parser.add_argument("--fill-only", action="store_true")
    parser.add_argument("--measure-only", action="store_true", help="measure the store as it is (no fill)")
    args = parser.parse_args()
    rates = [] if args.measure_only else fill(args.db, args.sources, args.latents, args.examples)
    out: dict = {"sources": args.sources, "latents": args.sources * args.latents, "examples_per_latent": args.examples, "writes": rates}
    if not args.fill_only:
        store = Store.open(args.db)
        try:
            out["bytes"] = bytes_on_disk(store)
            if store.dialect == "postgresql":
                out["explain"] = explain(store)
        finally:
            store.close()
        out["latency"] = latency(args.db, args.sources, args.latents, args.requests)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
