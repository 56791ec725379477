"""A build on a local Ray cluster (N workers) against the same build in one process, side by side.

Both build the same sources over the same windows into fresh SQLite stores, in one run: first the
local build, then the Ray one (Ray started in this process with --cpus CPUs, not counted; each
worker loads the model itself, counted). Prints wall time of each build, the pass alone
(`forward_seconds`: for Ray, shards + transfer + merge), the ratios, and whether the two stores'
canonical dumps are identical.

    .venv/bin/python bench/ray_build.py --tokens 16000 --layers 2,8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def timed_build(url: str, request, runner=None) -> tuple[float, dict]:
    from latentpedia.dashboards.pipeline import build
    from latentpedia.store.api import Store

    store = Store.open(url)
    start = time.perf_counter()
    summary = build(store, request, log=lambda *_: None, runner=runner)
    wall = time.perf_counter() - start
    store.close()
    return wall, summary


def canonical(url: str, folder: Path) -> dict[str, bytes]:
    from latentpedia.exchange.canonical import TABLES
    from latentpedia.exchange.dumps import write_dump
    from latentpedia.store.api import Store

    store = Store.open(url)
    write_dump(store, folder, "jsonl", log=lambda *_: None)
    store.close()
    tables = {t: (folder / f"{t}.jsonl").read_bytes() for t in TABLES}
    rows = [untimed(json.loads(line)) for line in tables["sources"].splitlines()]
    tables["sources"] = "\n".join(json.dumps(row, sort_keys=True) for row in rows).encode()
    return tables


def untimed(value):
    """Without the timings of the finishing steps (maps, neighbours) kept in source meta."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in ("seconds", "computed_at", "matches_at")}
    return [untimed(v) for v in value] if isinstance(value, list) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", default="2,8", help="neuron sources")
    parser.add_argument("--source", action="append", default=[], help="more sources (SAE folders)")
    parser.add_argument("--tokens", type=int, default=16_000)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: --workers)")
    args = parser.parse_args()

    import ray
    import torch

    from latentpedia.dashboards import ray_build
    from latentpedia.dashboards.pipeline import BuildRequest

    sources = [f"{int(x)}-mlp" for x in args.layers.split(",") if x] + args.source
    request = lambda: BuildRequest(  # noqa: E731
        model=args.model, sources=sources, n_tokens=args.tokens, window_len=args.window, batch_size=args.batch_size,
        progress=False, checkpoint_seconds=3600, maps=False,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        local_url, ray_url = f"sqlite:///{tmp}/local.db", f"sqlite:///{tmp}/ray.db"
        print(f"sources {', '.join(sources)}; {args.tokens:,} tokens; torch threads in this process {torch.get_num_threads()}; load {os.getloadavg()[0]:.1f}")
        local_wall, local = timed_build(local_url, request())
        ray.init(num_cpus=args.cpus or args.workers, include_dashboard=False, log_to_driver=False)
        config = ray_build.RayConfig(address="auto", workers=args.workers)
        ray_wall, sharded = timed_build(ray_url, request(), ray_build.runner(config, log=lambda *_: None))
        ray.shutdown()
        same = canonical(local_url, Path(tmp) / "a") == canonical(ray_url, Path(tmp) / "b")
    print(f"{'':14}{'local':>10}{'ray x' + str(args.workers):>10}{'ray / local':>13}")
    print(f"{'build wall s':14}{local_wall:10.1f}{ray_wall:10.1f}{ray_wall / local_wall:13.2f}")
    print(f"{'pass s':14}{local['forward_seconds']:10.1f}{sharded['forward_seconds']:10.1f}{sharded['forward_seconds'] / local['forward_seconds']:13.2f}")
    print(f"canonical dumps identical: {'yes' if same else 'NO'}; load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
