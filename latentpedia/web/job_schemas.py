"""What /api/jobs answers: a job as shown (its true state, progress, ETA, log tail, error in words)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from latentpedia.dashboards.progress import format_seconds
from latentpedia.store.jobs import FINISHED, QueuedJob, job_state
from latentpedia.store.records import JobRecord


class JobOut(BaseModel):
    """A job; the progress fields are filled for jobs run by the worker (`queued` true)."""

    id: int
    kind: str
    target: str
    status: str = Field(description='queued | running | done | failed | cancelled | interrupted | stalled | resumed')
    finished: bool
    progress: float = Field(description="0..1 of the current stage")
    message: str
    created_at: datetime
    updated_at: datetime
    queued: bool = Field(description="started from the web or the API (else a CLI run)")
    stage: str = ""
    done: int = 0
    total: int | None = None
    unit: str = ""
    rate: float | None = Field(None, description="units per second in this run")
    eta_seconds: float | None = None
    eta: str | None = Field(None, description="the ETA in words, e.g. 4m05s")
    log: list[str] = Field(default_factory=list, description="the last lines logged")
    log_count: int = 0
    error: str | None = Field(None, description="the traceback of a failed job (admins only)")
    attempts: int = 0
    cancel_requested: bool = False
    params: dict[str, Any] | None = Field(None, description="the request (admins only)")


class JobsPage(BaseModel):
    """/jobs: the newest jobs and what an admin may start."""

    jobs: list[JobOut]
    kinds: list[str]
    is_admin: bool
    models: list[str]
    sources: dict[str, list[str]] = Field(description="built sources per model (the forms' choices)")


class JobEvents(BaseModel):
    """One poll of a job: its state and the log lines after `since`."""

    id: int
    status: str
    finished: bool
    progress: float
    message: str
    stage: str
    done: int
    total: int | None
    unit: str
    rate: float | None
    eta: str | None
    lines: list[str] = Field(description="log lines numbered `since` onwards (older ones may have rotated out)")
    next: int = Field(description="pass as `since` in the next poll")
    poll_ms: int = Field(description="when to poll again (0: finished, stop)")


def job_out(job: JobRecord, queued: QueuedJob | None, *, admin: bool) -> JobOut:
    state = job_state(job)
    out = JobOut(
        id=job.id, kind=job.kind, target=job.target, status=state.status, finished=state.status in FINISHED,
        progress=job.progress, message=state.message, created_at=job.created_at, updated_at=job.updated_at,
        queued=queued is not None,
    )  # fmt: skip
    if queued is None:
        return out
    eta = None if queued.eta_seconds is None or out.finished else format_seconds(queued.eta_seconds)
    return out.model_copy(update=dict(
        stage=queued.stage, done=queued.done, total=queued.total, unit=queued.unit, rate=queued.rate,
        eta_seconds=queued.eta_seconds, eta=eta, log=queued.log, log_count=queued.log_count,
        error=queued.error if admin else None, attempts=queued.attempts, cancel_requested=queued.cancel_requested,
        params=queued.params if admin else None,
    ))  # fmt: skip


def job_events(job: JobOut, since: int) -> JobEvents:
    first = job.log_count - len(job.log)  # the number of the oldest line kept
    lines = job.log[max(since - first, 0):]
    return JobEvents(
        id=job.id, status=job.status, finished=job.finished, progress=job.progress, message=job.message,
        stage=job.stage, done=job.done, total=job.total, unit=job.unit, rate=job.rate, eta=job.eta,
        lines=lines, next=job.log_count, poll_ms=0 if job.finished else 1500,
    )  # fmt: skip
