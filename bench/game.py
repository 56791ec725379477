"""The game under load: puzzle page and submit (with offline scoring) latency, 32 concurrent players.

    flock /tmp/latentpedia-heavy.lock .venv/bin/python bench/game.py [--players 32] [--rounds 4] [--db URL]

Builds the seeded tiny atlas of the tests (tests/web_atlas.py: a real build of a 4-layer LLaMA
over CPython's docs, two neuron sources) with offline machine explanations and a campaign over
its 128 layer-1 neurons, then serves it with uvicorn in a subprocess (one worker: the real
server, the embedder on its one torch worker thread). Each of N players (own account and API
key, the same client address) loops: GET its next puzzle page (HTML, /play/c/bench), then POST
/api/play/submit with an explanation (held-out scoring on the torch worker; the first submit on
a latent also fixes its held-out set, baseline and machine score). Players start together, so
all N hit the same latent first: the worst case for the torch worker's queue.

Printed side by side: p50 / p99 / max of the page and of the submit, the submits that made a
latent's held-out set ("cold") and the others ("warm"), and the near-duplicate threshold's
cosine on trivial edits vs different explanations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEXTS = ["numbers in code", "the word return", "closing brackets", "names of functions", "punctuation after words",
         "the start of a sentence", "keywords of python", "spaces and indentation", "quotes around strings", "module names"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(url: str, folder: Path, players: int) -> dict[str, str]:
    from latentpedia.interp.pipeline import explain_atlas
    from latentpedia.store.api import Store
    from latentpedia.store.game import GameStore
    from tests.web_atlas import seed_atlas

    atlas = seed_atlas(url, folder)
    store = Store.open(url)
    try:
        explain_atlas(store, atlas.model, "offline", (), progress=False, sources=["1-mlp"])
        GameStore(store).add_campaign("bench", "Bench", store.get_source(atlas.model, "1-mlp").id, order="index")
        keys = {}
        for n in range(players):
            user = store.add_user(f"player{n}", "bench password")
            keys[user.username] = store.create_api_key(user.id, "bench")[0]
        return {"model": atlas.model, **keys}
    finally:
        store.close()


def serve(url: str, port: int) -> subprocess.Popen:
    code = ("import uvicorn; from latentpedia.web import create_app; "
            f"uvicorn.run(create_app({url!r}), host='127.0.0.1', port={port}, log_level='warning')")  # fmt: skip
    env = {**os.environ, "LATENTPEDIA_GAME_RATE": "0", "LATENTPEDIA_LIVE_RATE": "0", "LATENTPEDIA_LIVE_TIMEOUT": "600"}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


async def player(client, key: str, model: str, rounds: int, n: int, pages: list, submits: list) -> None:
    headers = {"x-api-key": key}
    for r in range(rounds):
        start = time.perf_counter()
        page = await client.get("/play/c/bench", headers={**headers, "accept": "text/html"})
        pages.append(time.perf_counter() - start)
        page.raise_for_status()
        index = int(re.search(r'data-index="(\d+)"', page.text).group(1))
        body = {"modelId": model, "layer": "1-mlp", "index": index, "campaign": "bench", "text": f"{TEXTS[(n + r) % len(TEXTS)]} {n}"}
        start = time.perf_counter()
        answer = await client.post("/api/play/submit", json=body, headers=headers)
        submits.append((time.perf_counter() - start, r == 0))
        answer.raise_for_status()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(base: str, keys: dict[str, str], rounds: int) -> tuple[list, list]:
    import httpx

    model = keys.pop("model")
    pages, submits = [], []
    limits = httpx.Limits(max_connections=len(keys) + 4)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        first = next(iter(keys.values()))
        warm = await client.post("/api/play/submit", json={"modelId": model, "layer": "1-mlp", "index": 127, "text": "warm up"},
                                 headers={"x-api-key": first})  # loads the embedder once (not timed)
        assert warm.status_code in (200, 400), warm.text
        await asyncio.gather(*(player(client, key, model, rounds, n, pages, submits) for n, key in enumerate(keys.values())))
    return pages, submits


def threshold_check() -> None:
    from latentpedia.interp.embedding import shared_embedder
    from latentpedia.interp.game.rules import DUPLICATE_COSINE

    embed = shared_embedder()
    same = [("closing brackets", "Closing brackets."), ("the word import", "the word 'import'"), ("numbers in python code", "numbers in Python code!"),
            ("function definitions", "function definition"), ("names of modules", "module names")]
    other = [("closing brackets", "opening brackets"), ("the word import", "the word return"), ("numbers in python code", "names of variables"),
             ("function definitions", "class definitions"), ("names of modules", "names of people")]
    for label, pairs in (("trivial edits", same), ("different explanations", other)):
        sims = [float(embed([a])[0] @ embed([b])[0]) for a, b in pairs]
        print(f"cosine, {label:24s} min {min(sims):.3f}  max {max(sims):.3f}  (threshold {DUPLICATE_COSINE})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--db", default=None, help="a database URL (default: a SQLite file in a temp dir)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-game-"))
    os.environ.setdefault("LATENTPEDIA_HOME", str(folder / "home"))
    url = args.db or f"sqlite:///{folder / 'atlas.db'}"
    keys = build(url, folder, args.players)
    port = _free_port()
    server = serve(url, port)
    try:
        pages, submits = asyncio.run(run(f"http://127.0.0.1:{port}", keys, args.rounds))
    finally:
        server.terminate()
        server.wait(timeout=30)
    cold = [t for t, first in submits if first]
    warm = [t for t, first in submits if not first]
    print(f"{args.players} players × {args.rounds} rounds on {url.split(':')[0]}, 2 cores shared")
    for label, values in (("puzzle page", pages), ("submit (all)", [t for t, _ in submits]), ("submit, round 1 (cold)", cold),
                          ("submit, later (warm)", warm)):
        print(f"{label:24s} n={len(values):4d}  p50 {pct(values, 0.5):7.1f} ms  p99 {pct(values, 0.99):7.1f} ms  "
              f"max {max(values) * 1000:7.1f} ms  mean {statistics.mean(values) * 1000:7.1f} ms")
    threshold_check()


if __name__ == "__main__":
    main()
