"""Bytes per stored example against Neuronpedia's JSON row for the same example (issue 14 part 5).

    .venv/bin/python bench/example_bytes.py --tokens 4096 --sources 8-mlp

Builds the given sources of SmolLM2-135M over `--tokens` tokens of the default corpus into a fresh
SQLite store, then per source: the examples table's bytes from SQLite's dbstat (pages of the
table and its primary-key index) per example, today's positions encoding (a bitmap where smaller,
store/codec.py) against the uint16 list every store wrote before (the same rows' blob bytes
re-counted as 2 bytes per position), and Neuronpedia's row for the same examples (the exporter's
`activations/*.jsonl.gz`, uncompressed, without latentpedia's own key: tokens as strings, dense
values). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy import func, select


def dbstat(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    finally:
        con.close()


def neuronpedia_rows(folder: Path) -> tuple[int, int]:
    """(rows, uncompressed bytes) of the exported Activation rows without latentpedia's key."""
    rows = total = 0
    for path in folder.rglob("activations/*.jsonl.gz"):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            row = json.loads(line)
            row.pop("latentpedia", None)
            rows, total = rows + 1, total + len(json.dumps(row, separators=(",", ":"))) + 1
    return rows, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--sources", default="8-mlp", help="comma-separated sources to build")
    args = parser.parse_args()

    from latentpedia.dashboards.pipeline import BuildRequest, build
    from latentpedia.exchange.np_export import NeuronpediaExporter
    from latentpedia.store.api import Store
    from latentpedia.store.schema import Example

    sources = args.sources.split(",")
    print("| source | examples | positions per example | store B/example (bitmap where smaller) | with uint16 positions (before) | Neuronpedia row B | ratio now | ratio before |")
    print("|---|---|---|---|---|---|---|---|")
    for name in sources:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "atlas.db"
            store = Store.open(f"sqlite:///{db}")
            build(store, BuildRequest(sources=[name], n_tokens=args.tokens, progress=False, maps=False), log=lambda *_: None)
            with store.engine.connect() as conn:
                n, blob, nnz = conn.execute(select(func.count(), func.sum(func.length(Example.positions)), func.sum(func.length(Example.values)) / 2)).one()
            NeuronpediaExporter(store, Path(tmp) / "np", log=lambda *_: None).run()
            store.close()
            sizes = dbstat(db)
            rows, np_bytes = neuronpedia_rows(Path(tmp) / "np")
        table = sum(v for k, v in sizes.items() if k == "examples" or k.startswith("sqlite_autoindex_examples"))
        now = table / n
        before = (table + 2 * nnz - blob) / n
        row = np_bytes / rows
        print(f"| {name} | {n:,} | {nnz / n:.1f} | {now:,.0f} | {before:,.0f} | {row:,.0f} | 1/{row / now:.1f} | 1/{row / before:.1f} |")


if __name__ == "__main__":
    main()
