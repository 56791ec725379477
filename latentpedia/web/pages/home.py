"""The home page: models, sources and recent jobs."""

from __future__ import annotations

from latentpedia.store.api import Store
from latentpedia.store.jobs import FINISHED, job_state
from latentpedia.store.records import JobRecord
from latentpedia.store import families
from latentpedia.web.family_schemas import RecentExplanation
from latentpedia.web.pages.common import feature_url, source_info
from latentpedia.web.schemas import HomePage, JobInfo, ModelInfo

RECENT_JOBS = 10
RECENT_EXPLANATIONS = 8


def home_page_data(store: Store) -> HomePage:
    """Everything the atlas holds, for `/` and `/api/home`."""
    models = [
        ModelInfo(id=m.id, family=m.family, n_layers=m.n_layers, d_model=m.d_model, d_mlp=m.d_mlp, vocab_size=m.vocab_size)
        for m in store.list_models()
    ]
    jobs = [job_info(j) for j in store.list_jobs(limit=RECENT_JOBS)]
    recent = recent_explanation_rows(store)
    return HomePage(models=models, sources=[source_info(s) for s in store.list_sources()], jobs=jobs, arriving=arriving_jobs(store),
                    random_explained_url="/random?explained=1" if recent else None, recent_explanations=recent)  # fmt: skip


def arriving_jobs(store: Store) -> list[JobInfo]:
    """The default atlas's stages still queued or running (`latentpedia demo`, jobs/demo.py), oldest first."""
    queued = [q for q in store.list_queued_jobs(limit=50) if q.job.kind == "demo" and q.job.status not in FINISHED]
    return [job_info(q.job) for q in reversed(queued)]


def recent_explanation_rows(store: Store) -> list[RecentExplanation]:
    """Recently voted, then newest explanations: where a newcomer can click first."""
    return [
        RecentExplanation(modelId=r["model"], layer=r["source"], index=r["index"], text=r["text"], author=r["author"],
                          score=r["score"], url=feature_url(r["model"], r["source"], r["index"]))  # fmt: skip
        for r in families.recent_explanations(store, RECENT_EXPLANATIONS)
    ]


def job_info(job: JobRecord) -> JobInfo:
    """A job as shown: a "running" job whose process died or went silent is "interrupted" or
    "stalled" (store/jobs.py `job_state`), never "running"."""
    state = job_state(job)
    return JobInfo(id=job.id, kind=job.kind, target=job.target, status=state.status, progress=job.progress,
                   message=state.message, updated_at=job.updated_at)  # fmt: skip
