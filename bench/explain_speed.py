"""The offline explanations + embedding scores step (what `latentpedia demo` runs), before and after, side by side.

    .venv/bin/python bench/explain_speed.py --atlas /path/atlas.db --before GIT_REF [--sources 2-mlp,8-res-topk-4.5k] [--limit 512]

Copies the SQLite atlas twice with its explanations, scores and search vectors removed, then runs
`explain_atlas(..., "offline", ["embedding"])` over the same sources and latents with the code of
GIT_REF (`git archive` into a temp dir) and with this tree, each in a fresh process (the MiniLM
load is counted in both). Prints each wall time, the ratio, and how the results compare: the
explanation texts (same or not) and the embedding scores (mean of each, mean and max absolute
difference per latent, share of latents above their baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, sys, time
from latentpedia.store.api import Store
from latentpedia.interp.pipeline import explain_atlas
store = Store.open(sys.argv[1])
sources, limit = json.loads(sys.argv[2]), json.loads(sys.argv[3])
start = time.perf_counter()
kwargs = {"sources": sources} if sources else {}
if limit:
    kwargs["limit"] = limit
explain_atlas(store, store.list_models()[0].id, "offline", ("embedding",), progress=False, **kwargs)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def stripped_copy(atlas: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{atlas}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.execute("PRAGMA foreign_keys=ON")
    for table in ("explanation_scores", "explanation_embeddings", "explanations"):
        dst.execute(f"DELETE FROM {table}")
    dst.commit()
    dst.close()


def checkout(ref: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix="bench-explain-tree-"))
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def timed(tree: Path, db: Path, sources: list[str], limit: int | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", RUN, f"sqlite:///{db}", json.dumps(sources), json.dumps(limit)],
                         cwd=tree, env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def results(db: Path) -> dict[tuple[int, int], tuple[str, float | None, float | None]]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT e.source_id, e.latent_index, e.text, s.score, s.baseline_score FROM explanations e "
        "LEFT JOIN explanation_scores s ON s.explanation_id = e.id AND s.status = 'ok'"
    ).fetchall()
    con.close()
    return {(s, i): (t, score, base) for s, i, t, score, base in rows}


def compare(before: dict, after: dict) -> str:
    keys = sorted(before.keys() & after.keys())
    same_text = sum(before[k][0] == after[k][0] for k in keys)
    both = [k for k in keys if before[k][1] is not None and after[k][1] is not None]
    diffs = [abs(before[k][1] - after[k][1]) for k in both]
    mean = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    above = lambda r: mean([float(r[k][1] > r[k][2]) for k in both if r[k][2] is not None])  # noqa: E731
    return (f"latents {len(keys)} (before {len(before)}, after {len(after)}); same text {same_text}; scored by both {len(both)}\n"
            f"mean score before {mean([before[k][1] for k in both]):.4f} after {mean([after[k][1] for k in both]):.4f}; "
            f"|diff| mean {mean(diffs):.5f} max {max(diffs, default=0):.5f}; "
            f"above baseline before {above(before):.3f} after {above(after):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atlas", type=Path, required=True, help="a built SQLite atlas (its explanations are not touched)")
    parser.add_argument("--before", required=True, metavar="GIT_REF", help="the code to compare with")
    parser.add_argument("--sources", default="", help="comma-separated (default: every source)")
    parser.add_argument("--limit", type=int, default=None, help="the first N latents of each source")
    args = parser.parse_args()
    sources = [s for s in args.sources.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    timings, stores = {}, {}
    for label, tree in (("before", checkout(args.before)), ("after", ROOT)):
        db = work / f"{label}.db"
        stripped_copy(args.atlas, db)
        timings[label] = timed(tree, db, sources, args.limit)
        stores[label] = results(db)
        print(f"{label:6s} {timings[label]:8.1f} s", flush=True)
    print(f"speed-up (before / after): {timings['before'] / timings['after']:.2f}x")
    print(compare(stores["before"], stores["after"]))


if __name__ == "__main__":
    main()
