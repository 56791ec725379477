"""The job queue in the store (store/jobs.py), on SQLite and PostgreSQL: a queued job is claimed
by exactly one worker process, progress and log tails are recorded, cancels stop queued jobs at
once and running ones at their next report, and the jobs of a worker killed with SIGKILL are
queued again. Real processes; no model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from latentpedia.store.api import Store
from latentpedia.store.jobs import (
    JOB_CANCELLED, JOB_DONE, JOB_INTERRUPTED, JOB_QUEUED, JOB_RUNNING, LOG_LINES, job_state, running_job,
)  # fmt: skip
from tests.test_jobs_state import wait_until

ROOT = Path(__file__).resolve().parents[1]
CLAIMER = """
import sys, time
from pathlib import Path
from latentpedia.store.api import Store
store = Store.open(sys.argv[1])
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
claimed = []
while True:
    job = store.claim_job(heartbeat_seconds=None)
    if job is None:
        break
    claimed.append(job.job.id)
    store.finish_queued_job(job.job.id, "done", "ok")
print(",".join(map(str, claimed)), flush=True)
"""
HOLDER = """
import sys, time
from latentpedia.store.api import Store
store = Store.open(sys.argv[1])
job = store.claim_job(heartbeat_seconds=0.05)
print(job.job.id, flush=True)
time.sleep(600)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_enqueue_claim_report_finish(store: Store):
    job_id = store.enqueue_job("build", "m: 1-mlp", {"kind": "build", "sources": ["1-mlp"]}, requested_by=None)
    queued = store.get_queued_job(job_id)
    assert queued.job.status == JOB_QUEUED and queued.params == {"kind": "build", "sources": ["1-mlp"]} and queued.attempts == 0
    claimed = store.claim_job(heartbeat_seconds=None)
    assert claimed.job.id == job_id and claimed.job.status == JOB_RUNNING and claimed.job.pid == os.getpid()
    assert claimed.attempts == 1 and claimed.started_at is not None
    assert store.claim_job(heartbeat_seconds=None) is None  # nothing else is queued
    cancel = store.report_job_progress(job_id, stage="forward pass", done=300, total=1200, unit="tokens", rate=150.0,
                                       eta_seconds=6.0, progress=0.25, log=["line one", "line two"])  # fmt: skip
    assert cancel is False
    seen = store.get_queued_job(job_id)
    assert (seen.stage, seen.done, seen.total, seen.unit, seen.rate, seen.eta_seconds) == ("forward pass", 300, 1200, "tokens", 150.0, 6.0)
    assert seen.job.progress == 0.25 and seen.log == ["line one", "line two"] and seen.log_count == 2
    store.finish_queued_job(job_id, JOB_DONE, "built 1-mlp")
    done = store.get_queued_job(job_id)
    assert done.job.status == JOB_DONE and done.job.progress == 1.0 and done.finished_at is not None and done.error is None


def test_the_log_keeps_its_tail(store: Store):
    job_id = store.enqueue_job("build", "t", {})
    for start in range(0, 130, 10):
        store.report_job_progress(job_id, log=[f"line {i}" for i in range(start, start + 10)])
    queued = store.get_queued_job(job_id)
    assert queued.log_count == 130 and len(queued.log) == LOG_LINES
    assert queued.log[-1] == "line 129" and queued.log[0] == f"line {130 - LOG_LINES}"


def test_two_worker_processes_never_claim_the_same_job(db_url: str, tmp_path: Path):
    store = Store.open(db_url)
    ids = [store.enqueue_job("build", f"job {i}", {"i": i}) for i in range(24)]
    script, go = tmp_path / "claimer.py", tmp_path / "go"
    script.write_text(CLAIMER)
    procs = [subprocess.Popen([sys.executable, str(script), db_url, str(go)], stdout=subprocess.PIPE, text=True, env=_env())
             for _ in range(2)]  # fmt: skip
    go.touch()  # both start claiming at once
    claimed = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        claimed.append([int(x) for x in out.strip().split(",") if x])
    both = claimed[0] + claimed[1]
    assert sorted(both) == ids, "every job claimed exactly once"
    assert len(set(both)) == len(both)
    assert all(store.get_job(i).status == JOB_DONE for i in ids)
    store.close()


def test_one_job_two_claims(db_url: str):
    store, other = Store.open(db_url), Store.open(db_url)
    job_id = store.enqueue_job("build", "only", {})
    try:
        first, second = store.claim_job(heartbeat_seconds=None), other.claim_job(heartbeat_seconds=None)
    finally:
        other.close()
        store.close()
    assert [j.job.id for j in (first, second) if j is not None] == [job_id]


def test_cancel_a_queued_job_before_it_runs(store: Store):
    job_id = store.enqueue_job("build", "t", {})
    assert store.cancel_job(job_id).job.status == JOB_CANCELLED
    assert store.claim_job(heartbeat_seconds=None) is None
    again = store.cancel_job(job_id)  # a finished job stays as it is
    assert again.job.status == JOB_CANCELLED and again.finished_at is not None
    with pytest.raises(KeyError):
        store.cancel_job(10**6)


def test_cancel_a_running_job_is_seen_at_its_next_report(store: Store):
    job_id = store.enqueue_job("build", "t", {})
    store.claim_job(heartbeat_seconds=None)
    assert store.report_job_progress(job_id, done=1) is False
    cancelled = store.cancel_job(job_id)
    assert cancelled.job.status == JOB_RUNNING and cancelled.cancel_requested
    assert store.cancel_requested(job_id)
    assert store.report_job_progress(job_id, done=2) is True


def test_pipeline_jobs_adopt_the_claimed_job(store: Store):
    job_id = store.enqueue_job("build", "t", {})
    store.claim_job(heartbeat_seconds=None)
    before = len(store.list_jobs(limit=100))
    with running_job(job_id):
        assert store.start_job("build", "m: 1-mlp", "building") == job_id
        store.finish_job(job_id, "failed", "left to the worker")
    assert len(store.list_jobs(limit=100)) == before
    assert store.get_job(job_id).status == JOB_RUNNING
    assert store.start_job("build", "outside", heartbeat_seconds=None) != job_id  # only inside the block


def test_a_killed_workers_job_is_queued_again(db_url: str, tmp_path: Path):
    store = Store.open(db_url)
    job_id = store.enqueue_job("build", "t", {"kind": "build"})
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), db_url], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert int(proc.stdout.readline()) == job_id
        assert store.requeue_abandoned() == []  # its worker lives
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.stdout.close()
    assert job_state(store.get_job(job_id)).status == JOB_INTERRUPTED
    assert store.requeue_abandoned() == [job_id]
    again = store.claim_job(heartbeat_seconds=None)
    assert again.job.id == job_id and again.attempts == 2 and again.job.pid == os.getpid()
    store.close()


def test_a_killed_workers_cancelled_job_is_not_run_again(db_url: str, tmp_path: Path):
    store = Store.open(db_url)
    job_id = store.enqueue_job("build", "t", {})
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), db_url], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        proc.stdout.readline()
        store.cancel_job(job_id)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.stdout.close()
    wait_until(lambda: job_state(store.get_job(job_id)).status != JOB_RUNNING, "the worker's death to show")
    assert store.requeue_abandoned() == []
    assert store.get_job(job_id).status == JOB_CANCELLED
    store.close()
