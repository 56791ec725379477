"""Server CPU per request of the game's puzzle page, its JSON twin and a 404, side by side with
another commit; and one small read through the ORM against the same read on the driver's connection.

    flock /tmp/latentpedia-measure.lock .venv/bin/python bench/game_page_cpu.py --before GIT_REF [--seconds 4] [--pg URL]

For each tree (GIT_REF from `git archive`, then this one) builds bench/game.py's atlas with that
tree's code (the seeded tiny atlas, offline explanations, a campaign over its layer-1 neurons,
8 players), serves it with uvicorn (one process), asks each path a few times, waits for the
background held-out sets to be made, and runs `wrk -t1 -c1` on each path for `--seconds`: the
server's CPU seconds (its process, from /proc) over the requests wrk made. One connection, one
request at a time: the cost of a request, not a queue. Needs wrk (`apt-get install wrk`).

Then, in this process, one primary-key read of `users` (the kind of read a page makes six of)
through a SQLAlchemy ORM session and on the pool's driver connection (store/hot_reads.py's way),
median of 300, on SQLite and, with --pg, on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import game as bench_game  # noqa: E402 - bench/game.py: the atlas, the server

PATHS = ("/no-such-page", "/api/play/puzzle?campaign=bench", "/play/c/bench")


def page_cpu(tree: Path, seconds: float) -> dict[str, tuple[int, float]]:
    """{path: (requests, server CPU ms per request)} for a server of `tree` on an atlas it built."""
    work = Path(tempfile.mkdtemp(prefix="bench-page-cpu-"))
    os.environ["LATENTPEDIA_HOME"] = str(work / "home")
    keys = bench_game.build(tree, f"sqlite:///{work / 'atlas.db'}", work, 8)  # its own store format
    port = bench_game._free_port()
    server = bench_game.serve(f"sqlite:///{work / 'atlas.db'}", port, tree)
    key = keys["player0"]
    try:
        for _ in range(3):
            for path in PATHS[1:]:
                request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"x-api-key": key, "accept": "text/html"})
                urllib.request.urlopen(request, timeout=300).read()
        time.sleep(10)  # the puzzles' held-out sets, made in the background, are done
        found = {}
        for path in PATHS:
            before = bench_game.process_cpu(server.pid)
            out = subprocess.run(["wrk", "-t1", "-c1", f"-d{seconds:g}s", "-H", f"x-api-key: {key}", "-H", "accept: text/html",
                                  f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout  # fmt: skip
            cpu = bench_game.process_cpu(server.pid) - before
            n = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
            found[path] = (n, 1000 * cpu / n)
        return found
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def read_costs(url: str) -> tuple[float, float]:
    """(ORM session, driver connection) µs for one primary-key read of `users`, median of 300."""
    from sqlalchemy import select

    from latentpedia.store.api import Store
    from latentpedia.store.community_schema import User
    from latentpedia.store.feature_rows import dbapi_connection

    store = Store.open(url)
    user = store.get_user("bench-reader") or store.add_user("bench-reader", "bench password")
    mark = "?" if store.dialect == "sqlite" else "%s"

    def orm() -> None:
        with store._read() as session:
            session.execute(select(User.id, User.username).where(User.id == user.id)).all()

    def driver() -> None:
        with dbapi_connection(store.engine) as conn:
            cursor = conn.cursor()
            cursor.execute(f"SELECT id, username FROM users WHERE id = {mark}", (user.id,))
            cursor.fetchall()
            cursor.close()

    def median(fn) -> float:
        times = []
        for _ in range(300):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6

    try:
        return median(orm), median(driver)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="GIT_REF", required=True)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--pg", metavar="URL", default=None, help="also time the read on this PostgreSQL database")
    args = parser.parse_args()
    runs = {name: page_cpu(tree, args.seconds) for name, tree in ((args.before, bench_game.checkout(args.before)), ("this tree", ROOT))}
    reads = Path(tempfile.mkdtemp(prefix="bench-page-cpu-reads-"))
    print(f"server CPU per request, one connection (wrk -t1 -c1 -d{args.seconds:g}s), SQLite, one server process")
    for path in PATHS:
        (n0, before), (n1, after) = runs[args.before][path], runs["this tree"][path]
        print(f"{path:34s} {args.before}: {before:6.2f} ms ({n0} requests)   this tree: {after:6.2f} ms ({n1} requests)   ratio {after / before:.2f}x")
    for url in [f"sqlite:///{reads / 'reads.db'}", *([args.pg] if args.pg else [])]:
        orm, driver = read_costs(url)
        print(f"one read, {url.split(':')[0]:10s} ORM session {orm:7.1f} µs   driver connection {driver:6.1f} µs   ratio {driver / orm:.3f}x")


if __name__ == "__main__":
    main()
