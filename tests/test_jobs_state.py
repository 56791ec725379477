"""Jobs end in a true state: a process killed with SIGKILL leaves its job "running" in the table,
but readers show it "interrupted" (process gone) or "stalled" (no heartbeat), and the next job of
the same work marks it "resumed". Real subprocesses, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from latentpedia.store.api import Store
from latentpedia.store.jobs import JOB_INTERRUPTED, JOB_RESUMED, JOB_RUNNING, JOB_STALLED, JobState, job_state, this_host
from latentpedia.store.schema import Job, utcnow
from latentpedia.web import create_app

WORKER = """
import sys, time
from latentpedia.store.api import Store
store = Store.open(sys.argv[1])
print(store.start_job("build", sys.argv[2], heartbeat_seconds=0.05), flush=True)
time.sleep(600)
"""


def wait_until(condition, what: str, timeout: float = 60.0):
    """Poll `condition()` until it returns something true (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(proc.stdout)


def home_jobs(db_url: str) -> dict[int, dict]:
    with TestClient(create_app(db_url, private=False)) as client:
        home = client.get("/api/home")
        page = client.get("/", headers={"accept": "text/html"})
    assert home.status_code == 200 and page.status_code == 200
    return {job["id"]: {**job, "html": page.text} for job in home.json()["jobs"]}


@pytest.fixture
def worker(db_url: str, tmp_path: Path):
    """Start a process that opens the store, starts a job and sleeps; yields (process, job id)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = []

    def start(target: str) -> tuple[subprocess.Popen, int]:
        proc = subprocess.Popen([sys.executable, str(script), db_url, target], stdout=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        return proc, int(proc.stdout.readline())

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_job_records_its_process_and_beats_until_finished(store: Store):
    job_id = store.start_job("build", "tiny: 1-mlp", heartbeat_seconds=0.05)
    first = store.get_job(job_id)
    assert (first.pid, first.host, first.status) == (os.getpid(), this_host(), JOB_RUNNING)
    later = wait_until(lambda: (j := store.get_job(job_id)).heartbeat_at > first.heartbeat_at and j, "a heartbeat")
    assert later.updated_at == first.updated_at  # a heartbeat is not a change
    assert job_state(later).status == JOB_RUNNING
    store.finish_job(job_id)
    assert store.get_job(job_id).status == "done" and not store._heartbeats


def test_shown_state_of_dead_silent_and_legacy_jobs(store: Store):
    job = store.get_job(store.start_job("build", "tiny: 1-mlp", heartbeat_seconds=None))
    gone = job_state(dataclasses.replace(job, pid=dead_pid()))
    assert gone.status == JOB_INTERRUPTED and "is gone" in gone.message
    old = utcnow() - timedelta(minutes=10)
    elsewhere = job_state(dataclasses.replace(job, host="another-host", pid=1, heartbeat_at=old))
    assert elsewhere.status == JOB_STALLED and "another-host" in elsewhere.message
    hung = job_state(dataclasses.replace(job, heartbeat_at=old))  # alive but silent
    assert hung.status == JOB_STALLED
    legacy = job_state(dataclasses.replace(job, pid=None, host=None, heartbeat_at=None, updated_at=old))
    assert legacy.status == JOB_STALLED and "not recorded" in legacy.message
    assert job_state(job).status == JOB_RUNNING  # this process, fresh heartbeat
    store.finish_job(job.id, "failed", "boom")
    assert job_state(store.get_job(job.id)) == JobState("failed", "boom")


def test_a_killed_job_is_interrupted_then_resumed_by_the_next_one(db_url: str, worker, store: Store):
    proc, job_id = worker("tiny: 1-mlp")
    other_proc, other_id = worker("tiny: 3-mlp")
    beating = store.get_job(job_id)
    wait_until(lambda: store.get_job(job_id).heartbeat_at > beating.heartbeat_at, "the worker's heartbeat")
    assert home_jobs(db_url)[job_id]["status"] == JOB_RUNNING
    for p in (proc, other_proc):
        p.send_signal(signal.SIGKILL)
        assert p.wait() == -signal.SIGKILL
    assert store.get_job(job_id).status == JOB_RUNNING  # what a kill -9 leaves in the table
    shown = home_jobs(db_url)
    assert {shown[job_id]["status"], shown[other_id]["status"]} == {JOB_INTERRUPTED}
    assert f"process {proc.pid} on {this_host()} is gone" in shown[job_id]["message"]
    assert "<td>running</td>" not in shown[job_id]["html"]
    new_id = store.start_job("build", "tiny: 1-mlp")  # the same work again
    resumed, interrupted = store.get_job(job_id), store.get_job(other_id)
    assert resumed.status == JOB_RESUMED and f"continued by job {new_id}" in resumed.message
    assert interrupted.status == JOB_INTERRUPTED and "continued" not in interrupted.message
    assert store.get_job(new_id).status == JOB_RUNNING
    store.finish_job(new_id)
    assert [j["status"] for j in home_jobs(db_url).values()] == ["done", JOB_INTERRUPTED, JOB_RESUMED]


def test_a_silent_job_of_another_host_is_shown_stalled_and_settled(db_url: str, store: Store):
    job_id = store.start_job("build", "tiny: 1-mlp", heartbeat_seconds=None)
    old = utcnow() - timedelta(minutes=30)
    with store.engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(host="build-box", pid=4242, heartbeat_at=old, updated_at=old))
    assert home_jobs(db_url)[job_id]["status"] == JOB_STALLED
    fresh = store.start_job("build", "tiny: 3-mlp", heartbeat_seconds=None)
    assert store.get_job(job_id).status == JOB_INTERRUPTED and "build-box" in store.get_job(job_id).message
    assert store.get_job(fresh).status == JOB_RUNNING


def test_a_build_killed_mid_pass_is_resumed_by_the_next_build(db_url: str, tmp_path: Path):
    from tests.tiny import tiny_llama

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog {i} times." for i in range(400)))
    args = [sys.executable, "-m", "latentpedia.cli", "build", "--model", str(tiny_llama(tmp_path / "tiny")), "--layers", "1",
            "--corpus", str(corpus), "--tokens", "3000", "--window", "32", "--batch-size", "4", "--checkpoint-seconds", "0",
            "--no-progress", "--db", db_url]  # fmt: skip
    env = {**os.environ, "LATENTPEDIA_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(args, env={**env, "LATENTPEDIA_CRASH_AT": "batch:5"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = Store.open(db_url)
    try:
        (first,) = store.list_jobs()
        assert first.status == JOB_RUNNING and first.pid is not None  # left behind by the kill
        assert home_jobs(db_url)[first.id]["status"] == JOB_INTERRUPTED
        resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        second, again = store.list_jobs()
        assert again.id == first.id and again.status == JOB_RESUMED and f"continued by job {second.id}" in again.message
        assert second.status == "done" and second.pid not in (None, first.pid)
    finally:
        store.close()
