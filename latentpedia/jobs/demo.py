"""`latentpedia demo` in stages: a first slice served within minutes, the rest arriving as jobs.

The default atlas (dashboards/defaults.py) is built in stages. Each is idempotent (it builds only
what the store lacks) and each has a check that reads the store alone (no model, no tokenising),
so that `demo` on a built atlas serves at once:

    slice     the neuron sources over `first_tokens` tokens and the game's first campaign:
              what `demo` builds in the foreground before it serves
    neurons   the same sources over the full budget, caching the residual stream for the SAEs;
              each source's slice is replaced in one transaction (readers never see half of one)
    saes      the default SAEs trained on that cache, evaluated together, built from the cache
    families  the SAEs matched across widths and depth
    explain   offline explanations, embedding scores and search vectors for every latent

After the slice, `demo` queues every missing stage as a `demo` job (kinds.DemoJob) and serves; the
worker started by `serve` runs them oldest first, so they show on `/` and `/jobs` with live
progress and each source appears when it is written. A stage job first runs every earlier stage
the atlas still lacks, so a failed or cancelled job never leaves a later one building on half an
atlas; a killed worker's job is queued again and resumes from its checkpoint. `demo --no-serve`
runs the same stages in the foreground (`build_all`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from latentpedia.config import DEFAULT_MODEL_ID
from latentpedia.dashboards import defaults
from latentpedia.jobs.kinds import DemoJob
from latentpedia.store.api import Store
from latentpedia.store.jobs import FINISHED

Log = Callable[[str], None]


def model_id(spec: str) -> str:
    """The id a model spec gets in the atlas, without loading it."""
    if spec == DEFAULT_MODEL_ID:
        return spec
    from latentpedia.models.loader import slug

    path = Path(spec).expanduser()
    return slug(path.resolve().name if path.is_dir() else path.name)


def _ready(store: Store, plan: DemoJob) -> dict[str, object]:
    return {s.name: s for s in store.list_sources(model_id(plan.model)) if s.status == "ready"}


def _neuron_names(plan: DemoJob) -> list[str]:
    return defaults.default_sources(plan.layers)


def slice_done(store: Store, plan: DemoJob) -> bool:
    """Every neuron source is built (over any budget): something to serve."""
    ready = _ready(store, plan)
    return all(name in ready for name in _neuron_names(plan))


def neurons_done(store: Store, plan: DemoJob) -> bool:
    """Every neuron source is built over the default corpus at the full budget."""
    ready = _ready(store, plan)
    if not all(name in ready for name in _neuron_names(plan)):
        return False
    corpora = {c.id: c for c in store.list_corpora(model_id(plan.model))}
    full = {cid for cid, c in corpora.items() if c.spec.get("name") == "default" and c.spec.get("max_tokens") == plan.tokens}
    return all(ready[name].corpus_id in full for name in _neuron_names(plan))


def _sae_records(store: Store, plan: DemoJob) -> list | None:
    """The plan's SAE sources (by hook and width, so that no torch is imported to name them);
    None while one is not built."""
    ready = [s for s in _ready(store, plan).values() if s.kind != "mlp"]
    found = [next((s for s in ready if s.hook_name == hook and s.d_sae == width), None) for hook, width in plan.saes]
    return None if None in found else found


def saes_done(store: Store, plan: DemoJob) -> bool:
    return _sae_records(store, plan) is not None


def families_done(store: Store, plan: DemoJob) -> bool:
    """Every SAE has its activation-correlation matches (`match_atlas` writes a pair both ways,
    and every default SAE is in one of its pairs)."""
    from latentpedia.store import families

    records = _sae_records(store, plan)
    if records is None:
        return False
    matched = {p.source_id for p in families.list_pairs(store) if p.method == "act_corr"}
    return len(records) < 2 or all(r.id in matched for r in records)


def explain_done(store: Store, plan: DemoJob) -> bool:
    """Every latent of every built source has an explanation."""
    return all(len(store.explained_indices(s.id)) >= s.d_sae for s in _ready(store, plan).values())


DONE = {"neurons": neurons_done, "saes": saes_done, "families": families_done, "explain": explain_done}


def missing_stages(store: Store, plan: DemoJob) -> list[str]:
    """The stages the atlas still lacks, in order (none: the default atlas is complete)."""
    if store.get_model(model_id(plan.model)) is None:
        return plan.stages()
    missing: list[str] = []
    for stage in plan.stages():
        if missing or not DONE[stage](store, plan):  # a stage after a missing one is redone from its inputs
            missing.append(stage)
    return missing


# ------------------------------------------------------------------------------------- running


def build_slice(store: Store, plan: DemoJob, first_tokens: int, *, log: Log = print) -> None:
    """The neuron sources over `first_tokens` tokens (no activation cache): pages to browse
    while the rest is built. Resumable like any build."""
    from latentpedia.dashboards.pipeline import BuildRequest, build

    log(f"first slice: the neuron sources over {first_tokens:,} tokens, served while the rest is built")
    build(store, BuildRequest(model=plan.model, sources=_neuron_names(plan), n_tokens=first_tokens), log=log)
    _campaign(store, plan)


def _campaign(store: Store, plan: DemoJob) -> None:
    from latentpedia.store.game import ensure_default_campaign

    ensure_default_campaign(store, model_id(plan.model))  # the game's first campaign (docs/game.md)


def _build_neurons(store: Store, plan: DemoJob, log: Log) -> None:
    from latentpedia.dashboards.pipeline import BuildRequest, build

    hooks = list(dict.fromkeys(hook for hook, _ in plan.saes))
    request = BuildRequest(model=plan.model, sources=_neuron_names(plan), n_tokens=plan.tokens,
                           cache_hooks=hooks, cache_tokens=plan.cache_tokens if hooks else 0)  # fmt: skip
    build(store, request, log=log)
    _campaign(store, plan)


def _train_saes(store: Store, plan: DemoJob, log: Log) -> None:
    from latentpedia.dashboards.pipeline import activation_dir
    from latentpedia.train.atlas import missing_default_saes, train_default_saes

    mid = model_id(plan.model)
    corpora = store.list_corpora(mid)
    if missing_default_saes(store, mid, plan.saes) and not (corpora and (activation_dir(mid, corpora[-1].content_hash) / "manifest.json").exists()):
        log("the activation cache is missing: the neuron pass runs again to cache it")
        _build_neurons(store, plan, log)
    train_default_saes(store, model=plan.model, pairs=plan.saes, n_tokens=plan.sae_tokens, log=log)


def _match(store: Store, plan: DemoJob, log: Log) -> None:
    from latentpedia.lab.matching import match_atlas
    from latentpedia.models.loader import load_model

    match_atlas(store, load_model(plan.model), log=log)  # families: widths, depth


def _explain(store: Store, plan: DemoJob, log: Log) -> None:
    from latentpedia.interp.pipeline import explain_atlas

    explain_atlas(store, model_id(plan.model), "offline", ("embedding",), log=log)


RUN = {"neurons": _build_neurons, "saes": _train_saes, "families": _match, "explain": _explain}


def run_stage(store: Store, plan: DemoJob, log: Log = print) -> str:
    """Run `plan.stage` after every earlier stage the atlas lacks; a one-line summary."""
    stages = plan.stages()
    if plan.stage not in stages:
        return f"stage {plan.stage} is not part of this atlas"
    ran = []
    for stage in stages[: stages.index(plan.stage) + 1]:
        if stage != plan.stage and DONE[stage](store, plan):
            continue
        RUN[stage](store, plan, log)  # idempotent: a done stage does (almost) nothing
        ran.append(stage)
    return f"default atlas: {', '.join(ran)} built"


def build_all(store: Store, plan: DemoJob, *, log: Log = print) -> None:
    """Every stage in the foreground (`demo --no-serve`)."""
    for stage in missing_stages(store, plan):
        RUN[stage](store, plan, log)


def waiting_stages(store: Store, plan: DemoJob) -> dict[str, int]:
    """{stage: job id} of the demo jobs of this model queued or running (a killed worker's
    running job counts: the next worker queues it again)."""
    waiting: dict[str, int] = {}
    for queued in store.list_queued_jobs(limit=500):
        params = queued.params
        if params.get("kind") == "demo" and queued.job.status not in FINISHED and params.get("model", DEFAULT_MODEL_ID) == plan.model:
            waiting.setdefault(params.get("stage", ""), queued.job.id)
    return waiting


def queue_missing(store: Store, plan: DemoJob) -> dict[str, int]:
    """Queue every missing stage that has no waiting job, in build order; {stage: job id} of
    every missing stage."""
    waiting = waiting_stages(store, plan)
    jobs = {}
    for stage in missing_stages(store, plan):
        if stage not in waiting:
            job = plan.model_copy(update={"stage": stage})
            waiting[stage] = store.enqueue_job("demo", job.target(), job.model_dump(mode="json"))
        jobs[stage] = waiting[stage]
    return jobs
