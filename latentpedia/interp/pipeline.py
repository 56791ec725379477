"""Explain and score the latents of an atlas, resumably, through the store's API.

    explain_atlas(store, "smollm2-135m", explainer="offline", scorers=["embedding"])   # make demo
    run_explain(store, ExplainRequest(model=..., sources=["6-mlp"], explainer="llm", llm=config,
                                      scorers=["simulation", "detection"]), log=print)

Per source, latents go in batches: explain the ones without an explanation by this method,
prompt version and model (a rerun skips them), store them in one transaction, then run each
scorer on every stored explanation it has not scored yet, beside a baseline (the same scorer on a
random other latent's explanation over the same held-out examples), and store those rows in one
transaction. Killing a run loses at most one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from latentpedia.dashboards.progress import ProgressMeter
from latentpedia.errors import LatentpediaError
from latentpedia.interp import offline, registry
from latentpedia.interp.data import AtlasText, LatentData, load_latent
from latentpedia.interp.embedding import WorkerEmbedder
from latentpedia.interp.explanation_embeddings import embed_explanations
from latentpedia.interp.llm.client import LLMClient, LLMConfig, estimate_tokens
from latentpedia.interp.registry import EXPLAINERS, LLM_SCORERS, SCORERS, ScorerContext, TorchRunner
from latentpedia.interp.scoring import score_with_baseline
from latentpedia.interp.storage import StoredExplanation, stored_explanations
from latentpedia.store.api import Store

__all__ = ["EXPLAINERS", "LLM_SCORERS", "SCORERS", "ExplainRequest", "baseline_for", "explain_atlas", "run_explain"]
Log = Callable[[str], None]


@dataclass
class ExplainRequest:
    model: str
    sources: list[str] = field(default_factory=list)  # empty: every built source of the model
    explainer: str = "offline"  # a name in registry.EXPLAINERS
    variant: str = "examples"  # the LLM explainer's prompt variant (registry.LLMExplainer.variants)
    scorers: list[str] = field(default_factory=lambda: ["embedding"])
    limit: int | None = None  # latents per source (the first N)
    indices: list[int] | None = None  # exactly these latents
    llm: LLMConfig | None = None  # the explainer's endpoint
    scorer_llm: LLMConfig | None = None  # the scorers' endpoint (default: llm)
    scorer_backend: Any = None  # an in-process backend (LocalLM) for LLM scorers instead
    batch_size: int = 256
    seed: int = 0
    progress: bool = True
    on_torch: TorchRunner | None = None  # runs the scorers' torch steps (default: on this thread)

    def check(self) -> None:
        kind = registry.explainer(self.explainer)
        kind.stored_as(self.variant)
        llm_scorers = [s.name for s in registry.scorers(self.scorers) if s.needs_llm]
        if kind.needs_llm and self.llm is None:
            raise LatentpediaError(f"the {kind.name} explainer needs an endpoint: --llm-base-url and --llm-model")
        if llm_scorers and self.scorer_backend is None and (self.scorer_llm or self.llm) is None:
            raise LatentpediaError(f"the {'/'.join(llm_scorers)} scorer(s) need an LLM endpoint: --llm-base-url and --llm-model")


def explain_atlas(store: Store, model_id: str, explainer: str = "offline", scorers: list[str] | tuple[str, ...] = ("embedding",),
                  *, progress: bool = True, log: Log | None = None, **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    """Explain (and score) every built source of `model_id`; what `make demo` calls at the end."""
    request = ExplainRequest(model=model_id, explainer=explainer, scorers=list(scorers), progress=progress, **kwargs)
    return run_explain(store, request, log=log or (lambda _m: None))


class _Runner:
    """The explainer and scorers of one run (LLM clients shared by every source)."""

    def __init__(self, request: ExplainRequest):
        self.request = request
        self.client = LLMClient(request.llm) if request.llm else None
        scorer_config = request.scorer_llm or request.llm
        self.scorer_backend = request.scorer_backend or (
            (self.client if scorer_config is request.llm else LLMClient(scorer_config)) if scorer_config else None
        )
        self.kind = registry.explainer(request.explainer)
        stored = self.kind.stored_as(request.variant)
        self.method, self.version = stored.method, stored.version
        self.model_name = request.llm.model if self.kind.needs_llm and request.llm else None
        self.explain = self.kind.build(self.client, request.variant)  # (atlas, latents) -> [row | error message]

    def scorers(self, atlas: AtlasText) -> list[Any]:
        context = ScorerContext(atlas, self.scorer_backend, self.request.seed, self.request.on_torch)
        return [kind.build(context) for kind in registry.scorers(self.request.scorers)]

    def close(self) -> None:
        for client in {id(c): c for c in (self.client, self.scorer_backend) if isinstance(c, LLMClient)}.values():
            client.close()


def run_explain(store: Store, request: ExplainRequest, log: Log) -> dict[str, Any]:
    """Explain and score as `request` says; a summary {source: {"explained", "scored", "errors"}}."""
    request.check()
    sources = _sources(store, request)
    runner = _Runner(request)
    summary: dict[str, Any] = {}
    try:
        for source in sources:
            summary[source.name] = _run_source(store, runner, source, log)
    finally:
        runner.close()
    if runner.client is not None:
        u = runner.client.usage
        log(f"LLM: {u.requests} requests sent, {u.cached} answered from the cache, "
            f"{u.prompt_tokens:,} prompt + {u.completion_tokens:,} completion tokens")  # fmt: skip
    return summary


def _sources(store: Store, request: ExplainRequest) -> list[Any]:
    if store.get_model(request.model) is None:
        raise LatentpediaError(f"the atlas has no model {request.model!r}")
    if not request.sources:
        return [s for s in store.list_sources(request.model) if s.status == "ready"]
    out = []
    for name in request.sources:
        source = store.get_source(request.model, name)
        if source is None:
            raise LatentpediaError(f"model {request.model!r} has no source {name!r}")
        out.append(source)
    return out


def _run_source(store: Store, runner: _Runner, source: Any, log: Log) -> dict[str, Any]:
    request = runner.request
    atlas = AtlasText(store, source.id)
    indices = request.indices if request.indices is not None else list(range(source.d_sae))[: request.limit]
    bad = [i for i in indices if not 0 <= i < source.d_sae]
    if bad:
        raise LatentpediaError(f"source {source.name!r} has latents 0..{source.d_sae - 1}, not {bad[0]}")
    stored = stored_explanations(store, source.id, runner.method, runner.version, runner.model_name)
    alive = {row["idx"] for row in store.list_latents(source.id, limit=None) if (row["max_act"] or 0) > 0}
    todo = [i for i in indices if i not in stored or (i in alive and any(s not in stored[i].scorers for s in request.scorers))]
    if runner.kind.needs_llm and todo:
        _print_estimate(atlas, runner, [i for i in todo if i not in stored], log)
    scorers = runner.scorers(atlas) if todo else []
    counts = {"explained": 0, "scored": 0, "errors": [], "skipped": len(indices) - len(todo)}
    with _progress(request.progress, f"explain {source.name}", len(todo)) as (progress, task):
        for start in range(0, len(todo), request.batch_size):
            batch = todo[start : start + request.batch_size]
            latents = {i: load_latent(atlas, i) for i in batch}
            _explain_batch(store, runner, atlas, source.id, [latents[i] for i in batch if i not in stored], stored, counts)
            for scorer in scorers:
                scored = _score_batch(scorer, latents, stored, request.seed, atlas)
                rows = [row for _, row in scored]
                store.add_scores_bulk(rows)
                for index, _ in scored:
                    stored[index].scorers.add(scorer.name)
                counts["scored"] += sum(r["status"] == "ok" for r in rows)
                counts["errors"] += [r["error"] for r in rows if r["status"] != "ok"][:5]
            progress.update(task, advance=len(batch))
    log(f"{source.name}: {counts['explained']} explained, {counts['scored']} scores, "
        f"{counts['skipped']} already done, {len(counts['errors'])} errors")  # fmt: skip
    return counts


def _explain_batch(store: Store, runner: _Runner, atlas: AtlasText, source_id: int, latents: list[LatentData],
                   stored: dict[int, StoredExplanation], counts: dict[str, Any]) -> None:  # fmt: skip
    if runner.kind.needs_llm:
        latents = [lat for lat in latents if lat.max_act > 0]  # nothing to show an LLM
    results = runner.explain(atlas, latents)
    rows = []
    for lat, result in zip(latents, results, strict=True):
        if isinstance(result, str):
            counts["errors"].append(f"latent {lat.index}: {result}")
            continue
        rows.append({**result, "source_id": source_id, "latent_index": lat.index})
    ids = store.add_explanations_bulk(rows)
    embedder = WorkerEmbedder(runner.request.on_torch) if runner.request.on_torch else None
    embed_explanations(store, embedder, ids=ids)  # for explanation search, once, at write time
    for row, eid in zip(rows, ids, strict=True):
        stored[row["latent_index"]] = StoredExplanation(eid, row["latent_index"], row["text"])
    counts["explained"] += len(rows)


def baseline_for(index: int, stored: dict[int, StoredExplanation], seed: int, atlas: AtlasText,
                 pool: list[int] | None = None) -> tuple[int | None, str, int] | None:  # fmt: skip
    """(explanation id, text, latent) of a random other latent: a stored explanation of the same
    method if there is one (`pool`: the sorted stored indices), else an offline explanation made
    on the spot (id None)."""
    rng = np.random.default_rng([seed, index])
    pool = sorted(stored) if pool is None else pool
    if len(pool) > 1 or (pool and pool[0] != index):
        k = int(rng.integers(len(pool)))
        if pool[k] == index:
            k = (k + 1) % len(pool)
        other = stored[pool[k]]
        return other.id, other.text, other.latent_index
    d = atlas.source.d_sae
    if d < 2:
        return None
    j = int((index + 1 + rng.integers(d - 1)) % d)
    return None, offline.explain_offline(atlas, load_latent(atlas, j))["text"], j


def _score_batch(scorer: Any, latents: dict[int, LatentData], stored: dict[int, StoredExplanation],
                 seed: int, atlas: AtlasText) -> list[tuple[int, dict[str, Any]]]:  # fmt: skip
    wanted = [i for i, lat in latents.items() if i in stored and scorer.name not in stored[i].scorers and lat.max_act > 0]
    pool = sorted(stored)
    baselines = {i: baseline_for(i, stored, seed, atlas, pool) for i in wanted}
    if hasattr(scorer, "prepare"):
        texts = [stored[i].text for i in wanted] + [b[1] for b in baselines.values() if b]
        scorer.prepare([latents[i] for i in wanted], texts)
    return [(i, score_with_baseline(scorer, stored[i].id, stored[i].text, latents[i], baselines[i])) for i in wanted]


def _print_estimate(atlas: AtlasText, runner: _Runner, new: list[int], log: Log) -> None:
    """Requests and tokens the explainer will need, from the first latent's prompt."""
    from latentpedia.interp.llm.explain import prompt_for

    if not new:
        return
    sample = load_latent(atlas, new[0])
    if not sample.explain_top:
        return
    one = estimate_tokens([prompt_for(runner.request.variant, atlas, sample)], 40)
    log(f"estimate for {atlas.source.name}: {len(new)} explainer requests, ~{one['prompt_tokens'] * len(new):,} prompt "
        f"tokens + ~{40 * len(new):,} completion tokens (LLM scorers add ~10-20 requests per latent, x2 with baselines)")


class _progress:
    """Latents done (dashboards/progress.py: a bar on a terminal, plain lines with rate and ETA
    otherwise, readings to the job worker)."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.meter = ProgressMeter(description, total, unit="latents", enabled=enabled)

    def __enter__(self) -> tuple[_progress, None]:
        self.meter.__enter__()
        return self, None

    def update(self, _task: None, *, advance: int) -> None:
        self.meter.advance(advance)

    def __exit__(self, *exc: Any) -> None:
        self.meter.__exit__(*exc)
