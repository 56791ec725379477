"""The home page: models, sources and recent jobs."""

from __future__ import annotations

from latentpedia.store.api import Store
from latentpedia.store.jobs import job_state
from latentpedia.store.records import JobRecord
from latentpedia.web.pages.common import source_info
from latentpedia.web.schemas import HomePage, JobInfo, ModelInfo

RECENT_JOBS = 10


def home_page_data(store: Store) -> HomePage:
    """Everything the atlas holds, for `/` and `/api/home`."""
    models = [
        ModelInfo(id=m.id, family=m.family, n_layers=m.n_layers, d_model=m.d_model, d_mlp=m.d_mlp, vocab_size=m.vocab_size)
        for m in store.list_models()
    ]
    jobs = [job_info(j) for j in store.list_jobs(limit=RECENT_JOBS)]
    return HomePage(models=models, sources=[source_info(s) for s in store.list_sources()], jobs=jobs)


def job_info(job: JobRecord) -> JobInfo:
    """A job as shown: a "running" job whose process died or went silent is "interrupted" or
    "stalled" (store/jobs.py `job_state`), never "running"."""
    state = job_state(job)
    return JobInfo(id=job.id, kind=job.kind, target=job.target, status=state.status, progress=job.progress,
                   message=state.message, updated_at=job.updated_at)  # fmt: skip
