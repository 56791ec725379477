"""`latentpedia worker`: run the jobs queued from the web and the API (see docs/jobs.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer

from latentpedia.cli.common import NON_NEGATIVE, POSITIVE_FLOAT, DbOpt, clear_errors, console, log, open_store
from latentpedia.config import default_db_url

app = typer.Typer()


@app.command()
def worker(
    db: DbOpt = "",
    poll_seconds: Annotated[float, typer.Option(help="seconds between looks at the queue when it is empty", **POSITIVE_FLOAT)] = 2.0,
    report_seconds: Annotated[float, typer.Option(help="seconds between progress writes to the store", **POSITIVE_FLOAT)] = 1.0,
    max_jobs: Annotated[int, typer.Option(help="stop after this many jobs (0: never)", **NON_NEGATIVE)] = 0,
    exit_when_idle: Annotated[bool, typer.Option("--exit-when-idle", help="stop when no job is queued")] = False,
) -> None:
    """Claim and run queued jobs (builds, SAE imports, training, explain and score runs), one at
    a time; a job whose worker was killed (Ctrl-C, SIGTERM, kill -9) is queued again by the next
    worker and resumes from its checkpoint."""
    from latentpedia.jobs.worker import Worker

    with clear_errors():
        store = open_store(db)
        console.print(f"worker {os.getpid()}: waiting for jobs (Ctrl-C to stop)")
        ran = Worker(store, poll_seconds=poll_seconds, report_seconds=report_seconds, echo=log).run(
            max_jobs=max_jobs or None, exit_when_idle=exit_when_idle)  # fmt: skip
        store.close()
    console.print(f"worker {os.getpid()}: ran {ran} job(s)")


def start_worker_process(db_url: str) -> subprocess.Popen:
    """`latentpedia worker` as a child process (the web process never imports torch). On Linux
    it gets SIGTERM when `serve` dies however it dies (uvicorn re-raises SIGTERM after its
    shutdown, which skips `serve`'s own clean-up; kill -9 skips everything)."""
    command = [sys.executable, "-m", "latentpedia.cli", "worker", "--db", db_url or default_db_url()]
    parent = os.getpid()
    return subprocess.Popen(command, preexec_fn=(lambda: _die_with_parent(parent)) if sys.platform == "linux" else None)


def _die_with_parent(parent: int) -> None:
    """In the forked child, before exec: ask the kernel for SIGTERM when the parent exits (and
    exit now if it already has)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(0)
