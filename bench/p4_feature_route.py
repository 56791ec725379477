"""P4: the feature JSON route under load, beside a static file server serving the same bytes.

    python bench/p4_feature_route.py [--latents 100000] [--examples 32] [--seconds 15] [--workers 2]
    python bench/p4_feature_route.py --in-process 2000   # FeatureJson.body timed in this process

Fills a SQLite atlas with one synthetic source of `--latents` latents (dashboard statistics of
the real shapes; `--examples` top examples per latent over 128-token windows), serves it with
`latentpedia serve --workers N`, and drives `GET /api/feature/...` for random latents with wrk (32
connections), over all latents (mostly cache misses) and over the 1,000 latents whose JSON the
baseline serves (cache hits). The baseline is busybox httpd serving those 1,000 JSON bodies as
files. Needs `wrk` and `busybox` (apt-get install wrk busybox). Prints a Markdown table row.

`--in-process N` times `FeatureJson.body` without HTTP instead: N random latents (misses; the
corpus-window cache warms up as it would in a server), then the same N again (hits).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from latentpedia.store.api import Store
from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults

MODEL, SOURCE, WINDOW, VOCAB = "synthetic", "0-synthetic", 128, 49152
NNZ = 24  # non-zero values stored per example


def _stats(n: int, rng: np.random.Generator) -> LatentStats:
    edges = np.linspace(0, 1, 51).round(5).tolist()

    def hist():
        return {"edges": edges, "counts": rng.integers(0, 1000, 50).tolist()}

    def pairs(k, scale):
        return [[int(t), round(float(v), 5)] for t, v in zip(rng.integers(0, VOCAB, k), rng.normal(0, scale, k))]

    logits = [{"pos": pairs(10, 1), "neg": pairs(10, 1), "hist": hist(), "basis": "final_norm_scale*W_U"} for _ in range(n)]
    return LatentStats(
        max_act=rng.random(n, dtype=np.float32) * 10, frac_nonzero=rng.random(n, dtype=np.float32) / 10,
        mean_act=rng.random(n, dtype=np.float32), hist=[hist() for _ in range(n)], logits=logits,
        aligned=[pairs(10, 0.1) for _ in range(n)], correlated=[pairs(10, 0.3) for _ in range(n)],
    )  # fmt: skip


def _examples(n: int, k: int, n_windows: int, rng: np.random.Generator) -> ExampleBatch:
    m = n * k
    positions = np.tile(np.arange(1, WINDOW, (WINDOW - 1) // NNZ)[:NNZ], m).astype(np.uint16)
    return ExampleBatch(
        latent=np.repeat(np.arange(n, dtype=np.int32), k), kind=np.zeros(m, np.int8), group=np.full(m, -1, np.int8),
        rank=np.tile(np.arange(k, dtype=np.int16), n), window=rng.integers(0, n_windows, m).astype(np.int32),
        max_value=rng.random(m, dtype=np.float32), max_pos=np.full(m, 1, np.int16),
        offsets=np.arange(0, (m + 1) * NNZ, NNZ, dtype=np.int64), positions=positions,
        values=rng.random(m * NNZ).astype(np.float16),
    )  # fmt: skip


def fill(url: str, n_latents: int, k: int) -> None:
    """One model, vocab, corpus and synthetic source of `n_latents` latents."""
    rng = np.random.default_rng(0)
    store = Store.open(url)
    store.upsert_model(MODEL, "llama", 1, 576, 1536, VOCAB, 0)
    store.set_vocab(MODEL, [f"Ġw{i}" for i in range(VOCAB)])
    windows = rng.integers(0, VOCAB, (4096, WINDOW)).astype(np.int32)
    corpus = store.add_corpus(MODEL, "synthetic", {}, WINDOW, windows, {}, "p4-synthetic")
    source = store.add_source(MODEL, SOURCE, "sae", "blocks.0.hook_resid_post", 0, 576, n_latents, corpus)
    results = SourceResults(_stats(n_latents, rng), _examples(n_latents, k, len(windows), rng), n_tokens=4096 * 127)
    store.write_source_results(source, results)
    store.close()


def _filled(url: str, db: Path) -> bool:
    if url.startswith("sqlite"):
        return db.exists()
    store = Store.open(url)
    try:
        return store.get_source(MODEL, SOURCE) is not None
    finally:
        store.close()


def in_process(url: str, n_latents: int, n_requests: int) -> dict[str, float]:
    """Median and 90th-percentile wall ms and median CPU ms (this process's, less disturbed by
    other load) of one `FeatureJson.body` call: misses, then hits."""
    from latentpedia.engine.tokens import TokenText
    from latentpedia.web.featurejson import FeatureJson

    store = Store.open(url)
    text, fast = TokenText(store.get_vocab(MODEL)), FeatureJson()
    indices = random.Random(1).sample(range(n_latents), n_requests)
    out = {}
    for name in ("miss", "hit"):
        wall, cpu = [], []
        for index in indices:
            started, started_cpu = time.perf_counter(), time.process_time()
            fast.body(store, text, MODEL, SOURCE, index)
            wall.append((time.perf_counter() - started) * 1e3)
            cpu.append((time.process_time() - started_cpu) * 1e3)
        out[f"{name}_median_ms"], out[f"{name}_p90_ms"] = round(float(np.median(wall)), 3), round(float(np.percentile(wall, 90)), 3)
        out[f"{name}_cpu_median_ms"] = round(float(np.median(cpu)), 3)
    store.close()
    return out


def wrk(url: str, seconds: int, lua: Path) -> tuple[float, float]:
    """(requests/s, p99 ms) of wrk with 32 connections."""
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rps, float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _lua(folder: Path, prefix: str, n: int, pace_ms: float = 0) -> Path:
    """wrk's script: random latents below `n`; with `pace_ms`, each connection waits that long
    between its requests (a steady offered load instead of as fast as the server answers)."""
    path = folder / f"random-{n}{f'-paced-{pace_ms:g}' if pace_ms else ''}.lua"
    pace = f"delay = function()\n  return {pace_ms:g}\nend\n" if pace_ms else ""
    path.write_text(f'math.randomseed(1)\nrequest = function()\n  return wrk.format("GET", "{prefix}" .. math.random(0, {n - 1}))\nend\n{pace}')
    return path


def _wait(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=100_000)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--pace-ms", type=float, default=0, help="also time misses at a steady load: each of the 32 connections waits this long "
                        "between requests (26 ms offers ~1,100 req/s); wrk as fast as it can is the first figure")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes of the feature route")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "latentpedia-p4")
    parser.add_argument("--in-process", type=int, default=0, metavar="N", help="time N calls in this process instead of serving")
    parser.add_argument("--port", type=int, default=8731, help="the server's port (the static baseline takes the next one)")
    parser.add_argument("--db", help="a store URL (e.g. postgresql://...) instead of the SQLite file in --workdir; filled if it has no synthetic source")
    args = parser.parse_args()
    for tool in () if args.in_process else ("wrk", "busybox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install wrk busybox")
    args.workdir.mkdir(parents=True, exist_ok=True)
    db = args.workdir / f"atlas-{args.latents}-{args.examples}.db"
    url = args.db or f"sqlite:///{db.resolve()}"
    if not _filled(url, db):
        started = time.perf_counter()
        fill(url, args.latents, args.examples)
        print(f"filled {args.latents:,} latents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.in_process:
        print(json.dumps({"latents": args.latents, "examples": args.examples, "requests": args.in_process,
                          **in_process(url, args.latents, args.in_process)}))  # fmt: skip
        return
    api = f"http://127.0.0.1:{args.port}/api/feature/{MODEL}/{SOURCE}/"
    server = subprocess.Popen([sys.executable, "-m", "latentpedia.cli", "serve", "--db", url, "--port", str(args.port), "--workers", str(args.workers)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    static_dir = args.workdir / "static"
    try:
        _wait(api + "0")
        files = static_dir / "f"
        files.mkdir(parents=True, exist_ok=True)
        sizes = []
        for i in range(1000):
            body = httpx.get(api + str(i)).content
            (files / str(i)).write_bytes(body)
            sizes.append(len(body))
        route = wrk(api, args.seconds, _lua(args.workdir, f"/api/feature/{MODEL}/{SOURCE}/", args.latents))
        hot = wrk(api, args.seconds, _lua(args.workdir, f"/api/feature/{MODEL}/{SOURCE}/", 1000))  # the static server's 1,000
        paced = wrk(api, args.seconds, _lua(args.workdir, f"/api/feature/{MODEL}/{SOURCE}/", args.latents, args.pace_ms)) if args.pace_ms else None
    finally:
        server.terminate()
        server.wait()
    static = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{args.port + 1}", "-h", str(static_dir)])
    try:
        _wait(f"http://127.0.0.1:{args.port + 1}/f/0")
        baseline = wrk(f"http://127.0.0.1:{args.port + 1}/", args.seconds, _lua(args.workdir, "/f/", 1000))
    finally:
        static.terminate()
        static.wait()
    print(json.dumps({"latents": args.latents, "examples": args.examples, "workers": args.workers, "mean_bytes": int(np.mean(sizes)),
                      "route_rps": route[0], "route_p99_ms": route[1], "hot_rps": hot[0], "hot_p99_ms": hot[1], "static_rps": baseline[0], "static_p99_ms": baseline[1]}))  # fmt: skip
    if paced is not None:
        print(f"misses at a steady load (32 connections, each waiting {args.pace_ms:g} ms between requests): "
              f"{paced[0]:,.0f} req/s, p99 {paced[1]:.1f} ms")  # fmt: skip
    print(f"| {args.latents:,} latents, {args.examples} examples, {args.workers} worker(s) | {np.mean(sizes) / 1024:.0f} KiB | "
          f"{route[0]:,.0f} req/s, p99 {route[1]:.0f} ms | {hot[0]:,.0f} req/s, p99 {hot[1]:.0f} ms | "
          f"{baseline[0]:,.0f} req/s, p99 {baseline[1]:.0f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
