"""The game under load: puzzle page and submit (with offline scoring) latency, 32 concurrent players.

    flock /tmp/latentpedia-measure.lock .venv/bin/python bench/game.py [--players 32] [--rounds 3] [--db URL] [--before GIT_REF] [--workers N]
        [--settle 5] [--think MS] [--repeat K]

Builds the seeded tiny atlas of the tests (tests/web_atlas.py: a real build of a 4-layer LLaMA
over CPython's docs, two neuron sources) with offline machine explanations and a campaign over
its 128 layer-1 neurons, then serves it with uvicorn in a subprocess (one worker: the real
server, the embedder on its one torch worker thread). Each of N players (own account and API
key, the same client address) loops: GET its next puzzle page (HTML, /play/c/bench), then POST
/api/play/submit with an explanation (held-out scoring on the torch worker; the first submit on
a latent also fixes its held-out set, baseline and machine score). Players start together and
play the campaign in the same order, so all N hit each new latent together: the worst case for
making held-out sets and for the torch worker's queue.

`--before GIT_REF` first runs the same load against the server of that commit (`git archive`
into a temp dir, a fresh copy of the same atlas), then against this tree, and prints both side
by side with their ratios (same machine, same minutes).

`--settle S` waits S seconds after the warm-up (untimed) before the players start: a server that
has just started makes the held-out sets of its campaigns' first latents in the background, as
it would long before 32 players arrive. `--think MS` makes the players human-paced: each pauses a
random 0..2*MS ms before each page and each submit (0, the default: all at once, the worst case).
`--repeat K` runs each tree K times, alternating, and pools the latencies (runs on this machine
differ by up to 1.5x from minute to minute). Each run also prints the server's CPU seconds (its
process and children, read from /proc) and the players' for the timed part.

Printed: p50 / p99 / max of the page and of the submit, the submits of round 1 (the first on
each latent for most players) and the later ones, and the near-duplicate threshold's cosine on
trivial edits vs different explanations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXTS = ["numbers in code", "the word return", "closing brackets", "names of functions", "punctuation after words",
         "the start of a sentence", "keywords of python", "spaces and indentation", "quotes around strings", "module names"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the atlas, its campaign and the players' API keys, made by the latentpedia of the tree measured
# (its store format may differ from this tree's); argv: url folder players; prints the keys as JSON
BUILD = """
import json, sys
from pathlib import Path
from latentpedia.interp.pipeline import explain_atlas
from latentpedia.store.api import Store
from latentpedia.store.game import GameStore
from tests.web_atlas import seed_atlas

url, folder, players = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
atlas = seed_atlas(url, folder)
store = Store.open(url)
explain_atlas(store, atlas.model, "offline", (), progress=False, sources=["1-mlp"])
GameStore(store).add_campaign("bench", "Bench", store.get_source(atlas.model, "1-mlp").id, order="index")
keys = {"model": atlas.model}
for n in range(players):
    user = store.add_user(f"player{n}", "bench password")
    keys[user.username] = store.create_api_key(user.id, "bench")[0]
store.close()
print(json.dumps(keys))
"""


def build(tree: Path, url: str, folder: Path, players: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", BUILD, url, str(folder), str(players)], env=env, cwd=tree, check=True,
                          stdout=subprocess.PIPE, text=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def serve(url: str, port: int, tree: Path, workers: int = 1) -> subprocess.Popen:
    """uvicorn serving the atlas with the latentpedia of `tree` (a source checkout); `workers` > 1:
    that many processes, as `latentpedia serve --workers N` starts them (web/workers.py)."""
    code = ("import uvicorn; from latentpedia.web import create_app; from latentpedia.engine.worker import LiveConfig; "
            f"uvicorn.run(create_app({url!r}, live_config=LiveConfig.from_env()), host='127.0.0.1', port={port}, log_level='warning')")  # fmt: skip
    if workers > 1:
        code = ("import uvicorn; uvicorn.run('latentpedia.web.workers:app_from_env', factory=True, "
                f"workers={workers}, host='127.0.0.1', port={port}, log_level='warning')")  # fmt: skip
    env = {**os.environ, "LATENTPEDIA_GAME_RATE": "0", "LATENTPEDIA_LIVE_RATE": "0", "LATENTPEDIA_LIVE_TIMEOUT": "600", "LATENTPEDIA_LIVE_QUEUE": "1024",
           "PYTHONPATH": str(tree), "LATENTPEDIA_SERVE_DB": url}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tree)
    deadline = time.monotonic() + 300  # importing torch on a loaded machine
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


async def player(client, key: str, model: str, rounds: int, n: int, pages: list, submits: list, think: float = 0.0) -> None:
    """One player's rounds; `think` > 0: before each page and each submit they pause a random
    0..2*think seconds (reading the clues, typing), seeded per player."""
    headers = {"x-api-key": key}
    pause = random.Random(n)
    for r in range(rounds):
        if think:
            await asyncio.sleep(pause.uniform(0, 2 * think))
        start = time.perf_counter()
        page = await client.get("/play/c/bench", headers={**headers, "accept": "text/html"})
        pages.append(time.perf_counter() - start)
        page.raise_for_status()
        index = int(re.search(r'data-index="(\d+)"', page.text).group(1))
        body = {"modelId": model, "layer": "1-mlp", "index": index, "campaign": "bench", "text": f"{TEXTS[(n + r) % len(TEXTS)]} {n}"}
        if think:
            await asyncio.sleep(pause.uniform(0, 2 * think))
        start = time.perf_counter()
        answer = await client.post("/api/play/submit", json=body, headers=headers)
        submits.append((time.perf_counter() - start, r == 0))
        answer.raise_for_status()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` and its children so far."""
    pids = [pid, *(int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split())]
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def run(base: str, keys: dict[str, str], rounds: int, server_pid: int, settle: float, think: float) -> tuple[list, list, dict]:
    import httpx

    model = keys.pop("model")
    pages, submits = [], []
    limits = httpx.Limits(max_connections=len(keys) + 4)
    async def warm_up(key: str) -> None:  # loads the embedder (not timed); one new connection each, so
        async with httpx.AsyncClient(base_url=base, timeout=300) as alone:  # several server processes get one
            warm = await alone.post("/api/play/submit", json={"modelId": model, "layer": "1-mlp", "index": 127, "text": "warm up"},
                                    headers={"x-api-key": key})  # fmt: skip
            assert warm.status_code in (200, 400), warm.text

    await asyncio.gather(*(warm_up(key) for key in list(keys.values())[:8]))
    await asyncio.sleep(settle)  # a server that has just started makes its campaigns' first held-out sets meanwhile
    server_before, client_before, wall = process_cpu(server_pid), time.process_time(), time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        await asyncio.gather(*(player(client, key, model, rounds, n, pages, submits, think) for n, key in enumerate(keys.values())))
    cpu = {"wall": time.perf_counter() - wall, "server": process_cpu(server_pid) - server_before, "client": time.process_time() - client_before}
    return pages, submits, cpu


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


def fresh_schema(server_url: str, name: str) -> tuple[str, str]:
    """(a URL of `server_url` whose default schema is a new schema `name`, the schema)."""
    import sqlalchemy as sa

    engine = sa.create_engine(sa.engine.make_url(server_url).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    url = engine.url.update_query_dict({"options": f"-csearch_path={name}"})
    return url.render_as_string(hide_password=False), name


def drop_schema(url: str, name: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def measure(tree: Path, players: int, rounds: int, db: str | None, workers: int = 1, settle: float = 5.0,
            think: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """One run: a fresh atlas, a server of `tree`, the players; the latencies in seconds by label
    and, under "cpu", the timed part's wall time and the server's and the players' CPU seconds."""
    folder = Path(tempfile.mkdtemp(prefix="bench-game-"))
    os.environ["LATENTPEDIA_HOME"] = str(folder / "home")
    schema = None
    if db and db.startswith("postgresql"):  # a fresh schema per run, dropped after it
        db, schema = fresh_schema(db, folder.name.replace("-", "_"))
    url = db or f"sqlite:///{folder / 'atlas.db'}"
    keys = build(tree, url, folder, players)
    port = _free_port()
    server = serve(url, port, tree, workers)
    try:
        pages, submits, cpu = asyncio.run(run(f"http://127.0.0.1:{port}", keys, rounds, server.pid, settle, think))
    finally:
        server.terminate()
        server.wait(timeout=30)
        if schema:
            drop_schema(db, schema)
    return {"puzzle page": pages, "submit (all)": [t for t, _ in submits],
            "submit, round 1": [t for t, first in submits if first], "submit, later": [t for t, first in submits if not first],
            "cpu": cpu}  # fmt: skip


def checkout(ref: str) -> Path:
    """The source tree of commit `ref` (git archive into a temp dir)."""
    target = Path(tempfile.mkdtemp(prefix="bench-game-tree-"))
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def row(label: str, values: list[float]) -> str:
    return (f"{label:18s} n={len(values):4d}  p50 {pct(values, 0.5):7.1f} ms  p99 {pct(values, 0.99):7.1f} ms  "
            f"max {max(values) * 1000:7.1f} ms  mean {statistics.mean(values) * 1000:7.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default=None, help="a PostgreSQL server URL: each run builds in a new schema there, dropped after (default: a SQLite file per run)")
    parser.add_argument("--before", metavar="GIT_REF", default=None, help="also measure the server of this commit, side by side")
    parser.add_argument("--workers", type=int, default=1, help="server processes (latentpedia serve --workers N), for both runs")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between the warm-up and the players (a server makes its campaigns' first held-out sets)")
    parser.add_argument("--think", type=float, default=0.0, metavar="MS", help="players pause 0..2*MS ms (random) before each page and submit; 0: all at once")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tree, alternating; the latencies are pooled")
    args = parser.parse_args()
    trees = ([(args.before, checkout(args.before))] if args.before else []) + [("this tree", ROOT)]
    runs: dict[str, dict[str, Any]] = {name: {} for name, _ in trees}
    for k in range(args.repeat):
        for name, tree in trees:
            found = measure(tree, args.players, args.rounds, args.db, args.workers, args.settle, args.think / 1000)
            cpu = found.pop("cpu")
            requests = 2 * args.players * args.rounds
            print(f"run {k + 1} {name:12s} page p50 {pct(found['puzzle page'], 0.5):6.1f} ms  submit p50 {pct(found['submit (all)'], 0.5):6.1f} ms  "
                  f"wall {cpu['wall']:.1f} s  server CPU {cpu['server']:.2f} s ({1000 * cpu['server'] / requests:.1f} ms/request)  "
                  f"players' CPU {cpu['client']:.2f} s", flush=True)  # fmt: skip
            for label, values in found.items():
                runs[name].setdefault(label, []).extend(values)
    think = f", think 0..{2 * args.think:g} ms" if args.think else ", all at once"
    print(f"{args.players} players × {args.rounds} rounds × {args.repeat} run(s) on {(args.db or 'sqlite').split(':')[0]}, "
          f"{args.workers} server process(es){think}, 2 cores shared")  # fmt: skip
    for name, found in runs.items():
        print(f"-- {name}")
        for label, values in found.items():
            if values:
                print(row(label, values))
    if args.before:
        before, after = runs[args.before], runs["this tree"]
        for label in before:
            if before[label] and after[label]:
                print(f"{label:18s} this tree / {args.before}: p50 {pct(after[label], 0.5) / pct(before[label], 0.5):.3f}x  "
                      f"p99 {pct(after[label], 0.99) / pct(before[label], 0.99):.3f}x")
    threshold_check()


if __name__ == "__main__":
    main()
