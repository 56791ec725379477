"""The home page: models, sources and recent jobs."""

from __future__ import annotations

from latentpedia.store.api import Store
from latentpedia.web.pages.common import source_info
from latentpedia.web.schemas import HomePage, JobInfo, ModelInfo

RECENT_JOBS = 10


def home_page_data(store: Store) -> HomePage:
    """Everything the atlas holds, for `/` and `/api/home`."""
    models = [
        ModelInfo(id=m.id, family=m.family, n_layers=m.n_layers, d_model=m.d_model, d_mlp=m.d_mlp, vocab_size=m.vocab_size)
        for m in store.list_models()
    ]
    jobs = [
        JobInfo(id=j.id, kind=j.kind, target=j.target, status=j.status, progress=j.progress,
                message=j.message, updated_at=j.updated_at)  # fmt: skip
        for j in store.list_jobs(limit=RECENT_JOBS)
    ]
    return HomePage(models=models, sources=[source_info(s) for s in store.list_sources()], jobs=jobs)
