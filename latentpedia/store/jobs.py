"""Jobs: long-running tasks (builds), their progress, and whether the process running them lives.

A job records its process (`pid` on `host`) and a heartbeat: `start_job` starts a daemon thread
that stamps `heartbeat_at` every `heartbeat_seconds` until `finish_job` (or `close()`), and
`update_job` stamps it too. A process killed with `kill -9` stops beating, so a stored
"running" job can be told apart from a dead one:

- `job_state(job)` is what readers show (the home page): a "running" job whose process is gone
  (same host, pid not alive) is "interrupted"; one whose heartbeat is older than
  `STALE_SECONDS` (another host's process, or a hung one) is "stalled". Never "running" then.
- `start_job` settles the earlier abandoned jobs: "resumed" (its message names the new job) when
  the new job does the same work (same kind and target: a build run again resumes from its
  checkpoint), else "interrupted". Settling writes; `job_state` only reads.

Queued jobs (the job queue; latentpedia/jobs runs them): `enqueue_job` stores a "queued" job
with its request in `job_tasks`; a worker `claim_job`s the oldest one (row lock with SKIP LOCKED
on PostgreSQL; one atomic UPDATE ... WHERE status='queued' on SQLite, whose single writer makes it
exclusive), reports progress (`report_job_progress`: stage, units done/total, rate, ETA, log
lines), checks `cancel_requested` between batches and finishes it. `requeue_abandoned` puts back
the jobs of a worker killed with `kill -9`: run again, they resume from their checkpoints. While a
worker runs a job (`running_job(id)`), the pipeline's own `start_job`/`finish_job` calls adopt it
instead of recording a second job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String, Text, func, select, update
from sqlalchemy.orm import Mapped, aliased, mapped_column

from latentpedia.store.base import StoreBase, to_record, utc
from latentpedia.store.records import JobRecord
from latentpedia.store.schema import Base, Job, utcnow

JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_FAILED = "failed"
JOB_INTERRUPTED = "interrupted"  # its process died before finishing it
JOB_RESUMED = "resumed"  # interrupted, and a later job took over its work
JOB_STALLED = "stalled"  # shown only: no heartbeat for STALE_SECONDS, process state unknown
JOB_QUEUED = "queued"  # waiting for a worker (job_tasks holds its request)
JOB_CANCELLED = "cancelled"
FINISHED = frozenset({JOB_DONE, JOB_FAILED, JOB_CANCELLED, JOB_RESUMED})
LOG_LINES = 50  # log lines kept per queued job
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0

_log = logging.getLogger(__name__)


def this_host() -> str:
    """The name jobs record as their host."""
    return socket.gethostname()[:255]


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie, dead but not reaped, does not)."""
    if os.name != "posix":
        return True  # no cheap check: the heartbeat decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


@dataclass(frozen=True)
class JobState:
    """How a job should be shown: its true status and a message saying why."""

    status: str
    message: str


def job_state(job: JobRecord, *, now: datetime | None = None, stale_after: float = STALE_SECONDS) -> JobState:
    """The status to show for `job`: a "running" job whose process is gone or silent is not running."""
    if job.status != JOB_RUNNING:
        return JobState(job.status, job.message)
    where = f"process {job.pid} on {job.host}" if job.pid is not None else "its process (not recorded)"
    if job.pid is not None and job.host == this_host() and not process_alive(job.pid):
        return JobState(JOB_INTERRUPTED, _with(job.message, f"{where} is gone (killed?); run it again to resume"))
    last = utc(job.heartbeat_at or job.updated_at)
    silent = ((now or utcnow()) - last).total_seconds()
    if silent > stale_after:
        since = f"{last:%Y-%m-%d %H:%M:%S} UTC"
        return JobState(JOB_STALLED, _with(job.message, f"no sign of life from {where} since {since}"))
    return JobState(JOB_RUNNING, job.message)


def _with(message: str, reason: str) -> str:
    return f"{reason} ({message})" if message else reason


class _Heartbeat:
    """A daemon thread calling `beat()` every `seconds` until stopped (or the process dies)."""

    def __init__(self, beat: Callable[[], None], seconds: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(beat, seconds), name="job-heartbeat", daemon=True)
        self._thread.start()

    def _run(self, beat: Callable[[], None], seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                beat()
            except Exception as err:  # a locked or unreachable database: try again at the next tick
                _log.debug("job heartbeat failed: %s", err)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


_RUNNING_JOB: ContextVar[int | None] = ContextVar("latentpedia_running_job", default=None)


@contextmanager
def running_job(job_id: int) -> Iterator[None]:
    """Within this block, `start_job`/`finish_job` calls (the pipelines') adopt job `job_id`."""
    token = _RUNNING_JOB.set(job_id)
    try:
        yield
    finally:
        _RUNNING_JOB.reset(token)


class JobTask(Base):
    """A queued job's request and live progress (one row per job started through the queue)."""

    __tablename__ = "job_tasks"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    params: Mapped[dict[str, Any]]  # the typed request (latentpedia.jobs.kinds), as JSON
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far (> 1: resumed)
    stage: Mapped[str] = mapped_column(String(200), default="")
    done: Mapped[int] = mapped_column(BigInteger, default=0)  # units of the stage done
    total: Mapped[int | None] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(20), default="")
    rate: Mapped[float | None] = mapped_column(Float)  # units per second, this run
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    log: Mapped[str] = mapped_column(Text, default="")  # the last LOG_LINES lines
    log_count: Mapped[int] = mapped_column(Integer, default=0)  # lines ever logged
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


@dataclass(frozen=True)
class QueuedJob:
    """A queued job: the job row's fields, its request and its progress."""

    job: JobRecord
    params: dict[str, Any]
    requested_by: int | None
    cancel_requested: bool
    attempts: int
    stage: str
    done: int
    total: int | None
    unit: str
    rate: float | None
    eta_seconds: float | None
    log: list[str]
    log_count: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


def _queued(job: Job, task: JobTask) -> QueuedJob:
    return QueuedJob(
        job=to_record(JobRecord, job), params=task.params, requested_by=task.requested_by,
        cancel_requested=task.cancel_requested, attempts=task.attempts, stage=task.stage, done=task.done,
        total=task.total, unit=task.unit, rate=task.rate, eta_seconds=task.eta_seconds,
        log=task.log.splitlines() if task.log else [], log_count=task.log_count, error=task.error,
        started_at=utc(task.started_at), finished_at=utc(task.finished_at),
    )  # fmt: skip


class JobQueueMethods(StoreBase):
    """The job queue; each call is its own short transaction."""

    def enqueue_job(self, kind: str, target: str, params: dict[str, Any], *, requested_by: int | None = None) -> int:
        """Store a "queued" job and its request; returns its id."""
        with self._begin() as session:
            job = Job(kind=kind, target=target, status=JOB_QUEUED, progress=0.0, message="waiting for a worker")
            session.add(job)
            session.flush()
            session.add(JobTask(job_id=job.id, params=params, requested_by=requested_by, log="", log_count=0,
                                stage="", done=0, unit="", attempts=0, cancel_requested=False))  # fmt: skip
            return job.id

    def claim_job(self, *, heartbeat_seconds: float | None = HEARTBEAT_SECONDS) -> QueuedJob | None:
        """Make the oldest queued job this process's running job (None if there is none). Exclusive:
        a row lock skipped by other workers on PostgreSQL, one atomic UPDATE on SQLite."""
        queued = aliased(Job)  # not correlated with the UPDATE's own table
        oldest = select(func.min(queued.id)).select_from(queued).join(JobTask, JobTask.job_id == queued.id).where(queued.status == JOB_QUEUED)
        now = utcnow()
        mine = dict(status=JOB_RUNNING, pid=os.getpid(), host=this_host(), heartbeat_at=now, updated_at=now,
                    message="started")  # fmt: skip
        with self._begin() as session:
            if self.dialect == "postgresql":
                locked = select(Job.id).join(JobTask, JobTask.job_id == Job.id).where(Job.status == JOB_QUEUED)
                job_id = session.scalar(locked.order_by(Job.id).limit(1).with_for_update(of=Job, skip_locked=True))
            else:
                claim = update(Job).where(Job.id == oldest.scalar_subquery(), Job.status == JOB_QUEUED).values(**mine)
                job_id = session.scalar(claim.returning(Job.id).execution_options(synchronize_session=False))
            if job_id is None:
                return None
            if self.dialect == "postgresql":
                session.execute(update(Job).where(Job.id == job_id).values(**mine))
            task = session.get(JobTask, job_id)
            task.attempts += 1
            task.started_at = task.started_at or now
        if heartbeat_seconds:
            self._heartbeats[job_id] = _Heartbeat(lambda: self._beat(job_id), heartbeat_seconds)
        return self.get_queued_job(job_id)

    def get_queued_job(self, job_id: int) -> QueuedJob | None:
        """A job started through the queue, or None (unknown, or recorded by a CLI run)."""
        with self._read() as session:
            row = session.execute(select(Job, JobTask).join(JobTask, JobTask.job_id == Job.id).where(Job.id == job_id)).first()
            return None if row is None else _queued(*row)

    def list_queued_jobs(self, limit: int = 50) -> list[QueuedJob]:
        """Jobs started through the queue, newest first."""
        query = select(Job, JobTask).join(JobTask, JobTask.job_id == Job.id).order_by(Job.id.desc()).limit(limit)
        with self._read() as session:
            return [_queued(*row) for row in session.execute(query)]

    def report_job_progress(self, job_id: int, *, stage: str | None = None, done: int | None = None,
                            total: int | None = None, unit: str | None = None, rate: float | None = None,
                            eta_seconds: float | None = None, progress: float | None = None,
                            log: list[str] | tuple[str, ...] = ()) -> bool:  # fmt: skip
        """Record a running job's progress and new log lines; returns whether a cancel was asked."""
        with self._begin() as session:
            # the jobs row first, FOR UPDATE, as cancel_job takes it: two writers locking the two
            # rows in opposite orders deadlock on PostgreSQL (seen with progress written often)
            job = session.get(Job, job_id, with_for_update=True)
            task = session.get(JobTask, job_id)
            if job is None or task is None:
                raise KeyError(f"no queued job {job_id}")
            for name, value in (("stage", stage), ("done", done), ("total", total), ("unit", unit)):
                if value is not None:
                    setattr(task, name, value)
            if done is not None:  # a new reading: rate and ETA belong to it, even when unknown
                task.rate, task.eta_seconds = rate, eta_seconds
            if log:
                lines = (task.log.splitlines() if task.log else []) + [line.rstrip()[:500] for line in log]
                task.log, task.log_count = "\n".join(lines[-LOG_LINES:]), task.log_count + len(log)
            if progress is not None:
                job.progress = min(max(float(progress), 0.0), 1.0)
            if stage is not None:
                job.message = stage
            job.updated_at = job.heartbeat_at = utcnow()
            return task.cancel_requested

    def cancel_requested(self, job_id: int) -> bool:
        with self._read() as session:
            return bool(session.scalar(select(JobTask.cancel_requested).where(JobTask.job_id == job_id)))

    def cancel_job(self, job_id: int) -> QueuedJob:
        """Cancel a queued job now, or ask its worker to stop a running one between batches.
        KeyError if unknown; a finished job is returned unchanged."""
        with self._begin() as session:
            job = session.get(Job, job_id, with_for_update=True)
            task = session.get(JobTask, job_id)
            if job is None or task is None:
                raise KeyError(f"no queued job {job_id}")
            if job.status == JOB_QUEUED or (job.status != JOB_RUNNING and job.status not in FINISHED):
                job.status, job.message, task.finished_at = JOB_CANCELLED, "cancelled before it ran", utcnow()
            elif job.status == JOB_RUNNING:
                task.cancel_requested, job.message = True, "cancelling: stops after the current batch"
            job.updated_at = utcnow()
        return self.get_queued_job(job_id)

    def finish_queued_job(self, job_id: int, status: str, message: str, *, error: str | None = None) -> None:
        """Give a claimed job its final status (stops its heartbeat)."""
        heartbeat = self._heartbeats.pop(job_id, None)
        if heartbeat is not None:
            heartbeat.stop()
        with self._begin() as session:
            job, task = session.get(Job, job_id), session.get(JobTask, job_id)
            job.status, job.message, job.updated_at = status, message, utcnow()
            if status == JOB_DONE:
                job.progress = 1.0
                task.eta_seconds = 0.0
            task.error, task.finished_at = error, utcnow()

    def requeue_abandoned(self) -> list[int]:
        """Queue again the claimed jobs whose worker died (killed, or silent for STALE_SECONDS):
        the next claim runs them again, and their pipelines resume from their checkpoints."""
        query = (select(Job).join(JobTask, JobTask.job_id == Job.id)
                 .where(Job.status.in_((JOB_RUNNING, JOB_INTERRUPTED)), JobTask.finished_at.is_(None)))  # fmt: skip
        requeued = []
        with self._begin() as session:
            for job in session.scalars(query.with_for_update()):
                state = job_state(to_record(JobRecord, job))
                if state.status == JOB_RUNNING:
                    continue
                task = session.get(JobTask, job.id)
                if task.cancel_requested:
                    job.status, job.message, task.finished_at = JOB_CANCELLED, f"cancelled ({state.message})", utcnow()
                    continue
                job.status, job.pid, job.updated_at = JOB_QUEUED, None, utcnow()
                job.message = f"queued again: {state.message}"
                requeued.append(job.id)
        return requeued


class JobMethods(JobQueueMethods):
    """Recording jobs; each call is its own short transaction."""

    @property
    def _heartbeats(self) -> dict[int, _Heartbeat]:
        found = self.__dict__.get("_job_heartbeats")
        if found is None:
            found = self.__dict__["_job_heartbeats"] = {}
        return found

    def start_job(self, kind: str, target: str, message: str = "", *,
                  heartbeat_seconds: float | None = HEARTBEAT_SECONDS) -> int:  # fmt: skip
        """Record a running job (progress 0) of this process, settle earlier abandoned jobs and
        start its heartbeat (none if `heartbeat_seconds` is None: then call update_job often).
        Inside `running_job(id)` (a worker running a queued job) it returns that job instead."""
        adopted = _RUNNING_JOB.get()
        if adopted is not None:
            self.update_job(adopted, message=message or None)
            return adopted
        with self._begin() as session:
            job = Job(kind=kind, target=target, status=JOB_RUNNING, progress=0.0, message=message,
                      pid=os.getpid(), host=this_host(), heartbeat_at=utcnow())  # fmt: skip
            session.add(job)
            session.flush()
            _settle_abandoned(session, job)
            job_id = job.id
        if heartbeat_seconds:
            self._heartbeats[job_id] = _Heartbeat(lambda: self._beat(job_id), heartbeat_seconds)
        return job_id

    def _beat(self, job_id: int) -> None:
        """Stamp a running job's heartbeat (its `updated_at`, the last change, stays)."""
        stamp = update(Job).where(Job.id == job_id, Job.status == JOB_RUNNING)
        with self._begin() as session:
            session.execute(stamp.values(heartbeat_at=utcnow(), updated_at=Job.updated_at))

    def update_job(
        self,
        job_id: int,
        progress: float | None = None,
        message: str | None = None,
        status: str | None = None,
    ) -> None:
        """Set a job's progress (0..1), message and/or status (stamps its heartbeat); KeyError if unknown."""
        with self._begin() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise KeyError(f"no job {job_id}")
            if progress is not None:
                job.progress = min(max(float(progress), 0.0), 1.0)
            if message is not None:
                job.message = message
            if status is not None:
                job.status = status
            job.updated_at = job.heartbeat_at = utcnow()

    def finish_job(self, job_id: int, status: str = JOB_DONE, message: str | None = None) -> None:
        """Mark a job finished ("done" sets progress to 1; "failed" keeps it); stops its heartbeat.
        The job adopted by `running_job` is left to its worker, which finishes it."""
        if job_id == _RUNNING_JOB.get():
            return
        heartbeat = self._heartbeats.pop(job_id, None)
        if heartbeat is not None:
            heartbeat.stop()
        progress = 1.0 if status == JOB_DONE else None
        self.update_job(job_id, progress=progress, message=message, status=status)

    def get_job(self, job_id: int) -> JobRecord | None:
        """One job, or None."""
        with self._read() as session:
            job = session.get(Job, job_id)
            return None if job is None else to_record(JobRecord, job)

    def list_jobs(self, limit: int = 20, status: str | None = None) -> list[JobRecord]:
        """The newest jobs first (of one stored status if given; `job_state` says how to show them)."""
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if status is not None:
            query = query.where(Job.status == status)
        with self._read() as session:
            return [to_record(JobRecord, job) for job in session.scalars(query)]

    def close(self) -> None:
        """Stop this store's heartbeats, then close its connections."""
        for heartbeat in self._heartbeats.values():
            heartbeat.stop()
        self._heartbeats.clear()
        super().close()


def _settle_abandoned(session, new: Job) -> None:
    """Give earlier "running" jobs whose process is gone or silent their true final status."""
    earlier = select(Job).where(Job.status == JOB_RUNNING, Job.id != new.id).with_for_update()
    for job in session.scalars(earlier):
        state = job_state(to_record(JobRecord, job))
        if state.status == JOB_RUNNING:
            continue
        same_work = (job.kind, job.target) == (new.kind, new.target)
        job.status = JOB_RESUMED if same_work else JOB_INTERRUPTED
        job.message = f"{state.message}; continued by job {new.id}" if same_work else state.message
        job.updated_at = utcnow()
