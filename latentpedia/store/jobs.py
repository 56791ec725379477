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
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update

from latentpedia.store.base import StoreBase, to_record, utc
from latentpedia.store.records import JobRecord
from latentpedia.store.schema import Job, utcnow

JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_FAILED = "failed"
JOB_INTERRUPTED = "interrupted"  # its process died before finishing it
JOB_RESUMED = "resumed"  # interrupted, and a later job took over its work
JOB_STALLED = "stalled"  # shown only: no heartbeat for STALE_SECONDS, process state unknown
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


class JobMethods(StoreBase):
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
        start its heartbeat (none if `heartbeat_seconds` is None: then call update_job often)."""
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
        """Mark a job finished ("done" sets progress to 1; "failed" keeps it); stops its heartbeat."""
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
