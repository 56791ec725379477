"""The HTML feature page under 50 concurrent readers with live requests beside them, against the JSON.

    python bench/feature_page_readers.py [--latents 100000] [--readers 50] [--live 2] [--seconds 15]
    python bench/feature_page_readers.py --before /tmp/lp-before   # A/B: that source tree's server too
    python bench/feature_page_readers.py --in-process 300 [--before DIR]   # CPU per page in-process

Serves the synthetic P4 store (bench/p4_feature_route.py's `fill`, one 100,000-latent source,
32 top examples of 128 tokens each) plus a small SmolLM2 build (one MLP source over a few
thousand tokens: what the live requests run on) with `latentpedia serve --workers N`. wrk drives
`--readers` connections of random latents' pages, `/{model}/{source}/{index}` (HTML) and then
`/api/feature/{model}/{source}/{index}` (JSON), over all latents (mostly cache misses) and over
1,000 latents (cache hits once warm); meanwhile `--live` client threads POST
`/api/activation/new` (SmolLM2 runs on their text) in a loop. Prints p50 / p99 / req/s of each and
HTML ÷ JSON. With `--before DIR` the same runs are made first against a server importing
latentpedia from DIR (e.g. a `git worktree` of an older commit), same store, same load.
Needs `wrk` (apt-get install wrk). `--in-process N` instead times this process's CPU per page
through the app without HTTP (N random latents: misses, then the same N: hits), for each tree in
a child process, alternated twice: a ratio that survives a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import p4_feature_route as p4  # noqa: E402  (the synthetic store's fill and helpers)

LIVE_MODEL, LIVE_SOURCE = "smollm2-135m", "2-mlp"
LIVE_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs back home to sleep. " * 3
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def add_live_source(url: str, tokens: int) -> None:
    """A small SmolLM2 build into the same store (once): the model the live requests run."""
    from latentpedia.store.api import Store

    store = Store.open(url)
    try:
        if store.get_source(LIVE_MODEL, LIVE_SOURCE) is not None:
            return
    finally:
        store.close()
    cmd = [sys.executable, "-m", "latentpedia.cli", "build", "--db", url, "--model", LIVE_MODEL, "--source", LIVE_SOURCE, "--tokens", str(tokens)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def wrk(url: str, seconds: int, connections: int, lua: Path) -> dict[str, float]:
    """p50 and p99 ms and requests/s of wrk with `connections` connections."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        result[f"p{pct}_ms"] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    return result


class LiveLoad:
    """`n` threads POSTing /api/activation/new in a loop until stopped; counts and times them."""

    def __init__(self, base: str, n: int):
        self.base, self.n, self.times, self.errors = base, n, [], 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self, index: int) -> None:
        body = {"modelId": LIVE_MODEL, "layer": LIVE_SOURCE, "index": index, "text": LIVE_TEXT}
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                response = client.post(f"{self.base}/api/activation/new", json=body)
                if response.status_code == 200:
                    self.times.append(time.perf_counter() - started)
                else:
                    self.errors += 1

    def __enter__(self) -> LiveLoad:
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.n)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)


def serve(url: str, port: int, workers: int, tree: Path | None) -> subprocess.Popen:
    env = {**os.environ, "LATENTPEDIA_LIVE_RATE": "100000", "LATENTPEDIA_LIVE_BURST": "1000"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, "-m", "latentpedia.cli", "serve", "--db", url, "--port", str(port), "--workers", str(workers), "--no-worker"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(tree or Path.cwd()))


def measure(base: str, args: argparse.Namespace, luas: dict[str, Path]) -> dict[str, dict]:
    """Each (page kind, latent set) under wrk with the live load beside it."""
    out = {}
    for name, lua in luas.items():
        with LiveLoad(base, args.live) as live:
            result = wrk(base + "/", args.seconds, args.readers, lua)
        result["live_done"], result["live_errors"] = len(live.times), live.errors
        result["live_mean_s"] = round(sum(live.times) / len(live.times), 2) if live.times else None
        out[name] = result
        print(name, json.dumps(result), file=sys.stderr)
    return out


def run_tree(url: str, args: argparse.Namespace, tree: Path | None, luas: dict[str, Path]) -> dict[str, dict]:
    server = serve(url, args.port, args.workers, tree)
    base = f"http://127.0.0.1:{args.port}"
    try:
        p4._wait(f"{base}/api/feature/{p4.MODEL}/{p4.SOURCE}/0", 180)
        for i in range(20):  # the templates compiled, the live model loaded in each worker
            httpx.get(f"{base}/{p4.MODEL}/{p4.SOURCE}/{i}", timeout=60)
            httpx.post(f"{base}/api/activation/new", json={"modelId": LIVE_MODEL, "layer": LIVE_SOURCE, "index": 0, "text": "hi"}, timeout=120)
        return measure(base, args, luas)
    finally:
        server.terminate()
        server.wait()


def in_process(url: str, n_latents: int, n: int) -> dict[str, float]:
    """CPU ms (median) of this process per GET through the app in-process (TestClient, no
    network): HTML and JSON pages of `n` random latents (misses), then the same again (hits)."""
    import random

    import numpy as np
    from fastapi.testclient import TestClient

    from latentpedia.web import create_app

    indices = random.Random(3).sample(range(n_latents), n)
    out = {}
    with TestClient(create_app(url, private=False)) as client:
        client.get(f"/{p4.MODEL}/{p4.SOURCE}/{n_latents - 1}")  # templates compiled, vocab loaded
        for index in random.Random(4).sample(range(n_latents), 300):  # the corpus windows' cache warm, as in a server
            client.get(f"/api/feature/{p4.MODEL}/{p4.SOURCE}/{index}")
        for kind, prefix in (("html", f"/{p4.MODEL}/{p4.SOURCE}/"), ("json", f"/api/feature/{p4.MODEL}/{p4.SOURCE}/")):
            for name in ("miss", "hit"):
                cpu = []
                for index in indices:
                    started = time.process_time()
                    assert client.get(prefix + str(index)).status_code == 200
                    cpu.append((time.process_time() - started) * 1e3)
                out[f"{kind}_{name}_cpu_ms"] = round(float(np.median(cpu)), 3)
    return out


def in_process_trees(url: str, n_latents: int, n: int, before: Path | None) -> dict[str, dict]:
    """`in_process` in a child process per tree (the older tree first), alternated twice."""
    out: dict[str, dict] = {}
    trees = ([("before", before.resolve())] if before else []) + [("after" if before else "this tree", None)]
    for round_ in range(2):
        for name, tree in trees:
            env = {**os.environ, **({"PYTHONPATH": str(tree)} if tree else {})}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--db", url, "--latents", str(n_latents), "--in-process-child", str(n)]
            result = json.loads(subprocess.run(cmd, env=env, cwd=str(tree or Path.cwd()), capture_output=True, text=True, check=True).stdout)
            out[f"{name} #{round_ + 1}"] = result
            print(name, json.dumps(result), file=sys.stderr)
    return out


def _lua(folder: Path, name: str, prefix: str, n: int) -> Path:
    path = folder / f"{name}.lua"
    path.write_text(f'math.randomseed(1)\nrequest = function()\n  return wrk.format("GET", "{prefix}" .. math.random(0, {n - 1}))\nend\n')
    return path


def table(results: dict[str, dict[str, dict]]) -> str:
    rows = ["| server | latents | HTML p50 / p99 | HTML req/s | JSON p50 / p99 | JSON req/s | HTML ÷ JSON p50 / p99 / req/s | live requests done (HTML, JSON runs) |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for tree, runs in results.items():
        for subset in ("all", "hot"):
            h, j = runs[f"html-{subset}"], runs[f"json-{subset}"]
            rows.append(f"| {tree} | {subset} | {h['p50_ms']:.0f} / {h['p99_ms']:.0f} ms | {h['rps']:.0f} | {j['p50_ms']:.0f} / {j['p99_ms']:.0f} ms | {j['rps']:.0f} | "
                        f"{h['p50_ms'] / j['p50_ms']:.2f} / {h['p99_ms'] / j['p99_ms']:.2f} / {h['rps'] / j['rps']:.2f} | {h['live_done']}, {j['live_done']} |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=100_000)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--readers", type=int, default=50, help="concurrent wrk connections reading pages")
    parser.add_argument("--live", type=int, default=2, help="client threads posting /api/activation/new meanwhile")
    parser.add_argument("--hot", type=int, default=1000, help="the latents of the 'hot' runs")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--live-tokens", type=int, default=4096, help="tokens of the small SmolLM2 build")
    parser.add_argument("--port", type=int, default=8741)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "latentpedia-readers")
    parser.add_argument("--db", help="a store URL (e.g. postgresql://...) instead of the SQLite file in --workdir")
    parser.add_argument("--before", type=Path, help="also serve from this source tree first (A/B in one run)")
    parser.add_argument("--in-process", type=int, default=0, metavar="N", help="CPU per request in-process for N latents instead of serving")
    parser.add_argument("--in-process-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_child:
        print(json.dumps(in_process(args.db, args.latents, args.in_process_child)))
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    args.workdir.mkdir(parents=True, exist_ok=True)
    db = args.workdir / f"atlas-{args.latents}-{args.examples}.db"
    url = args.db or f"sqlite:///{db.resolve()}"
    if not p4._filled(url, db):
        started = time.perf_counter()
        p4.fill(url, args.latents, args.examples)
        print(f"filled {args.latents:,} latents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.in_process:
        results = in_process_trees(url, args.latents, args.in_process, args.before)
        print(json.dumps(results))
        for name, r in results.items():
            print(f"| {name} | {r['html_miss_cpu_ms']:.2f} | {r['json_miss_cpu_ms']:.2f} | {r['html_miss_cpu_ms'] / r['json_miss_cpu_ms']:.2f} | "
                  f"{r['html_hit_cpu_ms']:.2f} | {r['json_hit_cpu_ms']:.2f} | {r['html_hit_cpu_ms'] / r['json_hit_cpu_ms']:.2f} |")  # fmt: skip
        return
    add_live_source(url, args.live_tokens)
    prefix = {"html": f"/{p4.MODEL}/{p4.SOURCE}/", "json": f"/api/feature/{p4.MODEL}/{p4.SOURCE}/"}
    luas = {f"{kind}-{subset}": _lua(args.workdir, f"{kind}-{subset}", prefix[kind], n)
            for subset, n in (("all", args.latents), ("hot", args.hot)) for kind in ("html", "json")}  # fmt: skip
    trees = ([("before", args.before.resolve())] if args.before else []) + [("after" if args.before else "this tree", None)]
    results = {name: run_tree(url, args, tree, luas) for name, tree in trees}
    print(json.dumps({"latents": args.latents, "readers": args.readers, "live": args.live, "workers": args.workers, "results": results}))
    print(table(results))


if __name__ == "__main__":
    main()
