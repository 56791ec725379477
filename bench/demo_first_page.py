"""How soon `latentpedia demo` shows a real page, how long the whole default atlas takes, and how
fast a built atlas is served again (issue 14, part 2: goals 3 minutes, 12 minutes, 5 s).

    python bench/demo_first_page.py --home /tmp/demo-bench [--models DIR] [--port 8765]

Starts `latentpedia demo` on a fresh LATENTPEDIA_HOME (`--models` reuses a converted-model cache,
LATENTPEDIA_MODELS, so the one-time GGUF conversion is left out: say so), then polls
  - a feature page (HTML and its JSON twin) until both answer 200: time to the first page;
  - /api/home until no stage of the default atlas is arriving: time to the whole atlas;
stops demo (SIGTERM), starts it again and polls the feature page: the restart (of a built atlas
if it was complete by then; else of a served slice with its stages still queued: also no build).
Each stage's own time is read from its job (GET /api/jobs). Run it at normal priority inside the
measurement lock (flock /tmp/latentpedia-measure.lock), once, on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

FEATURE = "/smollm2-135m/8-mlp/0"


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


def start_demo(home: Path, models: Path | None, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "LATENTPEDIA_HOME": str(home), "LATENTPEDIA_PROGRESS_SECONDS": "30"}
    if models:
        env["LATENTPEDIA_MODELS"] = str(models)
    command = [sys.executable, "-m", "latentpedia.cli", "demo", "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_page(base: str, proc: subprocess.Popen, start: float, limit: float) -> float:
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            raise SystemExit(f"demo exited with {proc.returncode} before serving")
        if get(base + FEATURE)[0] == 200 and get(base + "/api/feature" + FEATURE)[0] == 200:
            return time.monotonic() - start
        time.sleep(0.25)
    raise SystemExit(f"no page within {limit:.0f} s")


def wait_for_atlas(base: str, start: float, limit: float) -> float | None:
    """Seconds until no stage is arriving; None if some still are after `limit` seconds."""
    while time.monotonic() - start < limit:
        status, body = get(base + "/api/home")
        if status == 200 and not json.loads(body)["arriving"]:
            return time.monotonic() - start
        time.sleep(2)
    return None


def stage_times(base: str) -> list[tuple[str, str, float]]:
    """(target, status, seconds) of the demo jobs: each from the previous one's end (the first
    from its creation, i.e. from serving) to its own end."""
    _, body = get(base + "/api/jobs")
    rows, previous = [], None
    for job in reversed(json.loads(body)["jobs"]):
        if job["kind"] == "demo":
            if job["status"] == "queued":  # not started: no time of its own yet
                rows.append((job["target"], job["status"], 0.0))
                continue
            end = datetime.fromisoformat(job["updated_at"])
            begin = previous or datetime.fromisoformat(job["created_at"])
            rows.append((job["target"], job["status"], (end - begin).total_seconds()))
            previous = end
    return rows


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="a fresh LATENTPEDIA_HOME (must not exist)")
    parser.add_argument("--models", type=Path, help="a converted-model cache to reuse (LATENTPEDIA_MODELS)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--limit", type=float, default=780, help="seconds to wait for the whole atlas (the lock allows runs under 15 min)")
    args = parser.parse_args()
    args.home.mkdir(parents=True, exist_ok=False)
    log, base = args.home / "demo.log", f"http://127.0.0.1:{args.port}"
    print(f"uptime at start: {os.popen('uptime').read().strip()}", flush=True)
    start = time.monotonic()
    proc = start_demo(args.home, args.models, args.port, log)
    try:
        first = wait_for_page(base, proc, start, 600)
        print(f"first page (HTML + JSON of {FEATURE}): {first:.1f} s", flush=True)
        total = wait_for_atlas(base, start, args.limit)
        if total is None:
            print(f"whole default atlas: NOT complete after {args.limit:.0f} s (stages so far below)", flush=True)
        else:
            print(f"whole default atlas (no stage arriving): {total:.1f} s ({total / 60:.1f} min)", flush=True)
        for target, status, seconds in stage_times(base):
            print(f"  {status:9s} {seconds:7.1f} s  {target}")
    finally:
        stop(proc)
    print(f"uptime at the end: {os.popen('uptime').read().strip()}", flush=True)
    start = time.monotonic()
    proc = start_demo(args.home, args.models, args.port, log)
    try:
        print(f"restart of the built atlas, first page: {wait_for_page(base, proc, start, 120):.1f} s")
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
