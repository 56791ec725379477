"""P7: datasets in and out (latentpedia.exchange): export and import speed and bytes per example.

    python bench/p7_exchange.py [--latents 2000] [--top 10] [--quantile 10] [--db-a URL --db-b URL]

Fills a store (default: a SQLite file in a temporary folder) with one synthetic source of
`--latents` latents, each with `--top` top examples and `--quantile` quantile samples over
128-token windows (24 non-zero values each, like a sparse SAE latent), then times:

- `export --format neuronpedia | parquet | jsonl` (rows/s = examples written per second),
- `import-neuronpedia` of that export into an empty store (rows/s = examples per second),

and checks the round trip (the JSON Lines dumps of both stores are identical). Bytes per example:
on disk for each format; Neuronpedia's own row shape (one JSON Activation row per example,
tokens as strings, dense values) uncompressed; and latentpedia's store (the example row's
sparse blobs and keys, plus its share of the window it points to). Prints Markdown rows.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from latentpedia.exchange.dumps import write_dump
from latentpedia.exchange.np_export import NeuronpediaExporter
from latentpedia.exchange.np_import import import_neuronpedia
from latentpedia.store.api import Store
from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults
from latentpedia.store.schema import Example, Window

MODEL, SOURCE, WINDOW, VOCAB, NNZ, N_WINDOWS = "synthetic", "0-res-synthetic", 128, 49152, 24, 4096
QUIET = lambda *_: None  # noqa: E731


def _stats(n: int, rng: np.random.Generator) -> LatentStats:
    edges = np.linspace(0, 1, 51).round(5).tolist()
    hist = lambda: {"edges": edges, "counts": rng.integers(0, 1000, 50).tolist()}  # noqa: E731
    pairs = lambda k: [[int(t), round(float(v), 5)] for t, v in zip(rng.integers(0, VOCAB, k), rng.normal(0, 1, k))]  # noqa: E731
    return LatentStats(
        max_act=rng.random(n, dtype=np.float32) * 10, frac_nonzero=rng.random(n, dtype=np.float32) / 10,
        mean_act=rng.random(n, dtype=np.float32), hist=[hist() for _ in range(n)],
        logits=[{"pos": pairs(10), "neg": pairs(10), "hist": hist(), "basis": "W_U"} for _ in range(n)],
        aligned=[pairs(10) for _ in range(n)], correlated=[pairs(10) for _ in range(n)],
    )  # fmt: skip


def _examples(n: int, top: int, quantile: int, rng: np.random.Generator) -> ExampleBatch:
    k = top + quantile
    m = n * k
    kind = np.tile(np.r_[np.zeros(top), np.ones(quantile)].astype(np.int8), n)
    group = np.tile(np.r_[np.full(top, -1), np.arange(quantile) // 5].astype(np.int8), n)
    rank = np.tile(np.r_[np.arange(top), np.arange(quantile) % 5].astype(np.int16), n)
    positions = np.tile(np.arange(1, WINDOW, (WINDOW - 1) // NNZ)[:NNZ], m).astype(np.uint16)
    values = rng.random(m * NNZ).astype(np.float16) + np.float16(0.01)
    return ExampleBatch(
        latent=np.repeat(np.arange(n, dtype=np.int32), k), kind=kind, group=group, rank=rank,
        window=rng.integers(0, N_WINDOWS, m).astype(np.int32),
        max_value=values.reshape(m, NNZ).max(axis=1).astype(np.float32), max_pos=np.full(m, 1, np.int16),
        offsets=np.arange(0, (m + 1) * NNZ, NNZ, dtype=np.int64), positions=positions, values=values,
    )  # fmt: skip


def fill(url: str, n_latents: int, top: int, quantile: int) -> int:
    """One model, vocab, corpus and synthetic source; returns the number of examples."""
    rng = np.random.default_rng(0)
    store = Store.open(url)
    store.upsert_model(MODEL, "llama", 1, 576, 1536, VOCAB, 0)
    store.set_vocab(MODEL, [f"Ġw{i}" for i in range(VOCAB)])
    windows = rng.integers(0, VOCAB, (N_WINDOWS, WINDOW)).astype(np.int32)
    corpus = store.add_corpus(MODEL, "synthetic", {}, WINDOW, windows, {}, "p7-synthetic")
    source = store.add_source(MODEL, SOURCE, "res", "blocks.0.hook_resid_post", 0, 576, n_latents, corpus)
    examples = _examples(n_latents, top, quantile, rng)
    store.write_source_results(source, SourceResults(_stats(n_latents, rng), examples, n_tokens=N_WINDOWS * 127))
    store.close()
    return len(examples.latent)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): the CPU time is what the machine's other
    load does not inflate (all the work here is in this process, the database included for SQLite)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _row(step: str, n: int, times: tuple[float, float], size: str) -> str:
    wall, cpu = times
    return f"| {step} | {n} | {wall:.1f} s | {cpu:.1f} s | {n / wall:,.0f} | {n / cpu:,.0f} | {size} |"


def neuronpedia_row_bytes(folder: Path) -> int:
    """Uncompressed bytes of the Activation rows without latentpedia's extra key."""
    import json

    total = 0
    for path in (folder / MODEL / SOURCE / "activations").glob("*.jsonl.gz"):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            row = json.loads(line)
            row.pop("latentpedia")
            total += len(json.dumps(row, separators=(",", ":"))) + 1
    return total


def store_bytes(url: str, n_examples: int) -> float:
    """Stored bytes per example: blobs + ~26 bytes of keys/columns + its share of the windows."""
    store = Store.open(url)
    with store._read() as session:
        blobs = session.scalar(select(func.sum(func.length(Example.positions) + func.length(Example.values))))
        windows = session.scalar(select(func.sum(func.length(Window.tokens))))
    store.close()
    return (blobs + 26 * n_examples + windows) / n_examples


def run(url_a: str, url_b: str, work: Path, n_latents: int, top: int, quantile: int) -> list[str]:
    n = fill(url_a, n_latents, top, quantile)
    store = Store.open(url_a)
    rows = []
    for fmt in ("neuronpedia", "parquet", "jsonl"):
        out = work / fmt
        if fmt == "neuronpedia":
            times = _timed(lambda: NeuronpediaExporter(store, out, log=QUIET).run())
            size = _size(out / MODEL / SOURCE / "activations")
        else:
            times = _timed(lambda: write_dump(store, out, fmt, log=QUIET))
            size = _size(out / f"examples.{fmt}")
        rows.append(_row(f"export {fmt}", n, times, f"{size / n:,.0f}"))
    store.close()
    target = Store.open(url_b)
    times = _timed(lambda: import_neuronpedia(target, work / "neuronpedia", log=QUIET))
    target.close()
    rows.append(_row("import neuronpedia", n, times, f"{store_bytes(url_b, n):,.0f} (stored)"))
    rows.append(f"| Neuronpedia's row (JSON, tokens as strings, dense values) | {n} | | | | | {neuronpedia_row_bytes(work / 'neuronpedia') / n:,.0f} |")
    target = Store.open(url_b)
    write_dump(target, work / "jsonl-b", "jsonl", log=QUIET)
    target.close()
    same = all((work / "jsonl" / f).read_bytes() == (work / "jsonl-b" / f).read_bytes()
               for f in ("latents.jsonl", "examples.jsonl", "sources.jsonl"))  # fmt: skip
    rows.append(f"| round trip: identical canonical dump | | | | | | {same} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=2000)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--quantile", type=int, default=10)
    parser.add_argument("--db-a", default=None, help="store to fill and export (default: SQLite in a temp folder)")
    parser.add_argument("--db-b", default=None, help="empty store to import into (default: SQLite in a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url_a = args.db_a or f"sqlite:///{work / 'a.db'}"
        url_b = args.db_b or f"sqlite:///{work / 'b.db'}"
        print("| step | examples | wall | CPU | rows/s (wall) | rows/s (CPU) | bytes per example |\n|---|---|---|---|---|---|---|")
        for row in run(url_a, url_b, work, args.latents, args.top, args.quantile):
            print(row)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
