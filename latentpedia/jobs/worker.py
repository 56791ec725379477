"""The job worker (`latentpedia worker`, started by `latentpedia serve` unless `--no-worker`).

A loop: put back the jobs of workers that died (`requeue_abandoned`), claim the oldest queued job
(exclusive on both databases, store/jobs.py), run it through the CLI's own functions
(jobs/run.py) and give it its final status in words. While it runs:
- every progress reading of the work (dashboards/progress.py meters) and every log line goes to
  the store at most every `report_seconds` (stage, units done/total, rate, ETA, log tail);
- a cancel asked from the web is seen at the next store write and stops the work by raising
  `JobCancelled` from the progress listener, i.e. between two batches; the checkpoint written so
  far stays, so the same job queued again resumes;
- the pipelines' own `start_job` calls adopt the claimed job (store/jobs.py `running_job`).
A worker killed with `kill -9` leaves its job "running" with a dead pid: the next worker queues it
again and the build resumes from its checkpoint, exactly like `latentpedia build` run again.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable

from latentpedia.dashboards.progress import ProgressReading, progress_listener
from latentpedia.jobs.kinds import parse_request
from latentpedia.jobs.run import RUNNERS
from latentpedia.store.api import Store
from latentpedia.store.jobs import JOB_CANCELLED, JOB_DONE, JOB_FAILED, QueuedJob, running_job


class JobCancelled(BaseException):
    """Raised between batches when the job's cancel was asked (a BaseException, so that no
    pipeline's `except Exception` swallows it)."""


class _Reporter:
    """Buffers a job's progress and log lines; writes them at most every `seconds`."""

    def __init__(self, store: Store, job_id: int, seconds: float, echo: Callable[[str], None]):
        self.store, self.job_id, self.seconds, self.echo = store, job_id, seconds, echo
        self.lines: list[str] = []
        self.reading: ProgressReading | None = None
        self.last = 0.0
        self.cancelled = False

    def log(self, line: str) -> None:
        self.echo(f"job {self.job_id}: {line}")
        self.lines.extend(str(line).splitlines() or [""])
        self._maybe_flush()

    def on_progress(self, reading: ProgressReading) -> None:
        self.reading = reading
        self._maybe_flush(final=reading.total is not None and reading.done >= reading.total)

    def _maybe_flush(self, *, final: bool = False) -> None:
        if final or time.monotonic() - self.last >= self.seconds:
            self.flush()
        if self.cancelled:
            raise JobCancelled("cancelled from the web")

    def flush(self) -> None:
        r, lines = self.reading, self.lines
        self.lines = []
        fields = {} if r is None else dict(stage=r.stage, done=r.done, total=r.total, unit=r.unit, rate=r.rate,
                                           eta_seconds=r.eta_seconds, progress=r.fraction)  # fmt: skip
        self.cancelled = self.store.report_job_progress(self.job_id, log=lines, **fields) or self.cancelled
        self.last = time.monotonic()


class Worker:
    """Claims and runs queued jobs of one store, one at a time."""

    def __init__(self, store: Store, *, poll_seconds: float = 2.0, report_seconds: float = 1.0, echo: Callable[[str], None] = print):
        self.store, self.poll_seconds, self.report_seconds, self.echo = store, poll_seconds, report_seconds, echo

    def run(self, *, stop: threading.Event | None = None, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Run jobs until `stop` is set, `max_jobs` ran, or (`exit_when_idle`) none is queued; returns how many ran."""
        stop = stop or threading.Event()
        ran = 0
        while not stop.is_set() and (max_jobs is None or ran < max_jobs):
            for job_id in self.store.requeue_abandoned():
                self.echo(f"job {job_id}: its worker died; queued again (resumes from its checkpoint)")
            queued = self.store.claim_job()
            if queued is None:
                if exit_when_idle:
                    break
                stop.wait(self.poll_seconds)
                continue
            self.run_job(queued)
            ran += 1
        return ran

    def run_job(self, queued: QueuedJob) -> str:
        """Run one claimed job to its final status ("done", "failed" or "cancelled")."""
        job_id = queued.job.id
        self.echo(f"job {job_id}: {queued.job.kind} {queued.job.target} (attempt {queued.attempts})")
        reporter = _Reporter(self.store, job_id, self.report_seconds, self.echo)
        try:
            request = parse_request(queued.params)
            reporter.flush()  # a cancel asked before the claim stops it here
            if reporter.cancelled:
                raise JobCancelled("cancelled before it started")
            with running_job(job_id), progress_listener(reporter.on_progress):
                summary = RUNNERS[request.kind](self.store, request, reporter.log)
            status, message, error = JOB_DONE, summary, None
        except JobCancelled as err:
            status, message, error = JOB_CANCELLED, f"{err}; what was checkpointed is kept", None
        except Exception as err:  # every failure is stored in words, the worker goes on
            status, message, error = JOB_FAILED, f"{type(err).__name__}: {err}", traceback.format_exc(limit=8)
        self._flush_quietly(reporter)
        self.store.finish_queued_job(job_id, status, message, error=error)
        self.echo(f"job {job_id}: {status}: {message}")
        return status

    def _flush_quietly(self, reporter: _Reporter) -> None:
        try:
            reporter.flush()
        except Exception as err:  # the final status matters more than the last lines
            self.echo(f"job {reporter.job_id}: could not store its last log lines: {err}")
