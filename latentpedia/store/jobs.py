"""Jobs: long-running tasks (builds) and their progress, shown on the home page."""

from __future__ import annotations

from sqlalchemy import select

from latentpedia.store.base import StoreBase, to_record
from latentpedia.store.records import JobRecord
from latentpedia.store.schema import Job, utcnow

JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_FAILED = "failed"


class JobMethods(StoreBase):
    """Recording jobs; each call is its own short transaction."""

    def start_job(self, kind: str, target: str, message: str = "") -> int:
        """Record a running job (progress 0) and return its id."""
        with self._begin() as session:
            job = Job(kind=kind, target=target, status=JOB_RUNNING, progress=0.0, message=message)
            session.add(job)
            session.flush()
            return job.id

    def update_job(
        self,
        job_id: int,
        progress: float | None = None,
        message: str | None = None,
        status: str | None = None,
    ) -> None:
        """Set a job's progress (0..1), message and/or status; KeyError if unknown."""
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
            job.updated_at = utcnow()

    def finish_job(self, job_id: int, status: str = JOB_DONE, message: str | None = None) -> None:
        """Mark a job finished ("done" sets progress to 1; "failed" keeps it)."""
        progress = 1.0 if status == JOB_DONE else None
        self.update_job(job_id, progress=progress, message=message, status=status)

    def get_job(self, job_id: int) -> JobRecord | None:
        """One job, or None."""
        with self._read() as session:
            job = session.get(Job, job_id)
            return None if job is None else to_record(JobRecord, job)

    def list_jobs(self, limit: int = 20, status: str | None = None) -> list[JobRecord]:
        """The newest jobs first (of one status if given)."""
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if status is not None:
            query = query.where(Job.status == status)
        with self._read() as session:
            return [to_record(JobRecord, job) for job in session.scalars(query)]
