"""`latentpedia worker` as a real process on the tiny model, on SQLite and PostgreSQL: a build
job killed with SIGKILL mid-pass is queued again by the next worker and resumes from its
checkpoint to exactly the store an uninterrupted build writes; a running job cancelled from the
API stops between batches; a job that cannot run fails with its error in words."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from latentpedia.dashboards.pipeline import BuildRequest, build
from latentpedia.store.api import Store
from latentpedia.store.jobs import JOB_CANCELLED, JOB_DONE, JOB_FAILED, JOB_INTERRUPTED, JOB_RUNNING, job_state
from tests.test_build_pipeline import N_TOKENS, corpus_file, dump, sae_dir, tiny_dir  # noqa: F401 (fixtures)
from tests.test_jobs_state import wait_until

ROOT = Path(__file__).resolve().parents[1]


def worker(db_url: str, home: Path, *, crash: str | None = None, idle_exit: bool = True) -> subprocess.Popen:
    env = {**os.environ, "LATENTPEDIA_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "LATENTPEDIA_PROGRESS_SECONDS": "0"}  # fmt: skip
    env.pop("LATENTPEDIA_CRASH_AT", None)
    if crash:
        env["LATENTPEDIA_CRASH_AT"] = crash
    args = [sys.executable, "-m", "latentpedia.cli", "worker", "--db", db_url, "--poll-seconds", "0.2",
            "--report-seconds", "0.001"]  # every reading written: progress before a kill, and progress writes racing a cancel
    return subprocess.Popen(args + (["--exit-when-idle"] if idle_exit else []), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def build_params(tiny_dir: Path, corpus_file: Path, sae_dir: Path, **extra) -> dict:
    return {"kind": "build", "model": str(tiny_dir), "sources": ["1-mlp", "3-mlp", str(sae_dir)], "corpus": str(corpus_file),
            "tokens": N_TOKENS, "window": 32, "batch_size": 4, "checkpoint_seconds": 0, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def reference(tiny_dir, corpus_file, sae_dir, tmp_path_factory) -> dict:
    """The same build run directly (uninterrupted), the store every worker run must equal."""
    home = tmp_path_factory.mktemp("reference")
    old = os.environ.get("LATENTPEDIA_HOME")
    os.environ["LATENTPEDIA_HOME"] = str(home)
    try:
        url = f"sqlite:///{home}/ref.db"
        request = BuildRequest(model=str(tiny_dir), sources=["1-mlp", "3-mlp", str(sae_dir)], corpus=str(corpus_file),
                               n_tokens=N_TOKENS, window_len=32, batch_size=4, checkpoint_seconds=0, progress=False)  # fmt: skip
        with Store.open(url) as store:
            build(store, request, log=lambda *_: None)
        return dump(url)
    finally:
        if old is None:
            os.environ.pop("LATENTPEDIA_HOME")
        else:
            os.environ["LATENTPEDIA_HOME"] = old


def test_a_killed_worker_s_build_resumes_to_the_same_store(db_url, tmp_path, tiny_dir, corpus_file, sae_dir, reference):
    home = tmp_path / "home"
    with Store.open(db_url) as store:
        job_id = store.enqueue_job("build", "tiny", build_params(tiny_dir, corpus_file, sae_dir))
    code, out = finish(worker(db_url, home, crash="batch:6"))
    assert code == -signal.SIGKILL, out
    assert list(home.glob("work/build-*/checkpoint.pt")), "the killed pass left its checkpoint"
    with Store.open(db_url) as store:
        assert job_state(store.get_job(job_id)).status == JOB_INTERRUPTED
        killed = store.get_queued_job(job_id)
        assert killed.done > 0 and killed.unit == "tokens"  # progress was reported before the kill
    assert dump(db_url) != reference
    code, out = finish(worker(db_url, home))
    assert code == 0, out
    assert f"job {job_id}: its worker died; queued again" in out
    with Store.open(db_url) as store:
        job = store.get_queued_job(job_id)
        assert job.job.status == JOB_DONE and job.attempts == 2 and job.job.progress == 1.0, job
        assert job.done == job.total and job.eta_seconds == 0.0 and job.rate
        assert any("building" in line for line in job.log)
        assert len(store.list_jobs(limit=100)) == 1  # the pipeline's own job record was the queued one
    assert dump(db_url) == reference
    assert not list(home.glob("work/build-*/checkpoint.pt"))


def test_cancel_stops_a_running_build_between_batches(db_url, tmp_path, tiny_dir, corpus_file, sae_dir):
    home = tmp_path / "home"
    params = build_params(tiny_dir, corpus_file, sae_dir, tokens=200_000, batch_size=1, sources=["1-mlp"], checkpoint_seconds=60)
    with Store.open(db_url) as store:
        job_id = store.enqueue_job("build", "long", params)
        proc = worker(db_url, home)
        try:
            wait_until(lambda: store.get_job(job_id).status == JOB_RUNNING and store.get_queued_job(job_id).done > 0,
                       "the build to report progress", timeout=240)  # fmt: skip
            store.cancel_job(job_id)
            wait_until(lambda: store.get_job(job_id).status != JOB_RUNNING, "the worker to stop the job", timeout=120)
        finally:
            code, out = finish(proc)
        job = store.get_queued_job(job_id)
        assert job.job.status == JOB_CANCELLED, out
        assert job.done < job.total and "cancelled" in job.job.message
        source = store.get_source(Path(tiny_dir).name, "1-mlp")
        assert source is None or source.status != "ready"
    assert code == 0, out


def test_a_job_that_cannot_run_fails_in_words(db_url, tmp_path, tiny_dir):
    home = tmp_path / "home"
    with Store.open(db_url) as store:
        job_id = store.enqueue_job("build", "bad layer", {"kind": "build", "model": str(tiny_dir), "sources": ["9-mlp"]})
        stale = store.enqueue_job("build", "bad request", {"kind": "build", "sources": []})
    code, out = finish(worker(db_url, home))
    assert code == 0, out
    with Store.open(db_url) as store:
        failed = store.get_queued_job(job_id)
        assert failed.job.status == JOB_FAILED and "9" in failed.job.message and failed.error
        bad = store.get_queued_job(stale)
        assert bad.job.status == JOB_FAILED and "sources" in bad.job.message


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie has exited; only its parent's wait is missing


@pytest.mark.skipif(sys.platform != "linux", reason="the worker's parent-death signal is Linux's prctl")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_serve_s_worker_stops_when_serve_dies(tmp_path, sig):
    """`serve` starts a `latentpedia worker`; stopping serve (SIGTERM, which uvicorn re-raises past
    serve's clean-up, or kill -9) must not leave the worker running."""
    import socket

    url = f"sqlite:///{tmp_path / 'atlas.db'}"
    Store.open(url).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LATENTPEDIA_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    serve = subprocess.Popen([sys.executable, "-m", "latentpedia.cli", "serve", "--db", url, "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        (job_worker,) = wait_until(lambda: _children(serve.pid), "serve's worker process", timeout=60)
        wait_until(lambda: "latentpedia.cli" in Path(f"/proc/{job_worker}/cmdline").read_text(), "the worker's exec")
        serve.send_signal(sig)
        serve.wait(timeout=60)
        wait_until(lambda: _gone(job_worker), "the worker to stop after serve died", timeout=30)
    finally:
        try:  # whatever is left of serve's process group (nothing, when the test passes)
            os.killpg(serve.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        serve.wait(timeout=10)
