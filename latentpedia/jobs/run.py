"""Running one job: each kind calls the same function its CLI command calls.

`run_request(store, request, log)` returns a one-line summary; errors are the pipelines' own
(InvalidInputError, LatentpediaError, ...), which the worker stores in words.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from latentpedia.config import DEFAULT_MODEL_ID, data_dir
from latentpedia.errors import InvalidInputError
from latentpedia.jobs.kinds import BuildJob, DemoJob, ExplainJob, ImportSaeJob, ScoreJob, TrainSaeJob
from latentpedia.store.api import Store

Log = Callable[[str], None]


def model_spec(store: Store, model_id: str) -> str:
    """What `load_model` takes for a model of the atlas: its id (embedded) or the path it was
    loaded from (engine/worker.py `store_model_loader` does the same for live inference); a
    model not in the atlas yet: the embedded default or a model folder on the server."""
    record = store.get_model(model_id)
    if record is None:
        if model_id == DEFAULT_MODEL_ID or Path(model_id).is_dir():  # the embedded default, or a folder on the server
            return model_id
        raise InvalidInputError(f"the atlas has no model {model_id!r} (and no such folder on the server)")
    spec = record.spec or {}
    if model_id == DEFAULT_MODEL_ID or spec.get("kind") == "embedded":
        return model_id
    if spec.get("path"):
        return str(spec["path"])
    raise InvalidInputError(f"model {model_id!r} cannot be loaded again (spec {spec})")


def run_build(store: Store, job: BuildJob, log: Log) -> str:
    from latentpedia.dashboards.pipeline import BuildRequest, build

    request = BuildRequest(
        model=model_spec(store, job.model), sources=list(job.sources), corpus=job.corpus, n_tokens=job.tokens,
        window_len=job.window, batch_size=job.batch_size, rebuild=job.rebuild, checkpoint_seconds=job.checkpoint_seconds,
    )  # fmt: skip
    summary = build(store, request, log=log)
    return f"built {', '.join(summary['built']) or 'nothing new'}"


def run_import(store: Store, job: ImportSaeJob, log: Log) -> str:
    from latentpedia.dashboards.pipeline import import_sae
    from latentpedia.train.run import eval_sae

    spec = model_spec(store, job.model)
    summary = import_sae(store, Path(job.path), model=spec, name=job.name, hook=job.hook, n_tokens=job.tokens, log=log)
    for source in summary["built"] if job.eval_tokens else []:
        eval_sae(store, source, model=spec, n_tokens=job.eval_tokens, log=log)
    return f"imported {', '.join(summary['built']) or 'nothing new'}"


def run_train(store: Store, job: TrainSaeJob, log: Log) -> str:
    from latentpedia.train.run import TrainRequest, train_saes

    spec = model_spec(store, job.model)
    knobs = dict(architecture=job.architecture, k=job.k, n_tokens=job.tokens, batch_size=job.batch_size, seed=job.seed)
    request = TrainRequest(model=spec, hooks=list(job.hooks), widths=list(job.widths), out_dir=data_dir() / "saes" / Path(spec).name,
                           eval_tokens=job.eval_tokens, train=knobs)  # fmt: skip
    results = train_saes(store, request, log=log)
    return f"trained {', '.join(r['name'] for r in results)}"


def run_explain(store: Store, job: ExplainJob | ScoreJob, log: Log) -> str:
    from latentpedia.interp import pipeline

    request = pipeline.ExplainRequest(model=job.model, sources=list(job.sources), explainer=job.explainer,
                                      scorers=list(job.scorers), limit=job.limit)  # fmt: skip
    _with_llm(request)
    if isinstance(job, ScoreJob):
        return _score(store, request, log)
    summary = pipeline.run_explain(store, request, log)
    return "; ".join(f"{name}: {c['explained']} explained, {c['scored']} scored" for name, c in summary.items()) or "no source to explain"


def _with_llm(request) -> None:
    """The server's LLM endpoint ($LATENTPEDIA_LLM_*) for jobs that need one."""
    from latentpedia.interp import registry
    from latentpedia.interp.llm.client import LLMConfig

    needs = registry.explainer(request.explainer).needs_llm or any(s.needs_llm for s in registry.scorers(request.scorers))
    if needs:
        request.llm = LLMConfig.resolve()


def _score(store: Store, request, log: Log) -> str:
    """Score only the latents that already have an explanation (others are left unexplained)."""
    from latentpedia.interp import pipeline

    if store.get_model(request.model) is None:
        raise InvalidInputError(f"the atlas has no model {request.model!r}")
    names = request.sources or [s.name for s in store.list_sources(request.model) if s.status == "ready"]
    sources = [store.get_source(request.model, name) or _missing(request.model, name) for name in names]
    parts = []
    for source in sources:
        explained = sorted(store.explained_indices(source.id))[: request.limit]
        if not explained:
            parts.append(f"{source.name}: no explanation to score")
            continue
        request.sources, request.indices, request.limit = [source.name], explained, None
        counts = pipeline.run_explain(store, request, log)[source.name]
        parts.append(f"{source.name}: {counts['scored']} scored")
    return "; ".join(parts) or "no source to score"


def _missing(model: str, name: str):
    raise InvalidInputError(f"model {model!r} has no source {name!r}")


def run_demo(store: Store, job: DemoJob, log: Log) -> str:
    from latentpedia.jobs.demo import run_stage

    return run_stage(store, job, log)


RUNNERS: dict[str, Callable[[Store, object, Log], str]] = {
    "build": run_build, "import-sae": run_import, "train-sae": run_train, "explain": run_explain, "score": run_explain,
    "demo": run_demo,
}  # fmt: skip
