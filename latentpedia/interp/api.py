"""Explain one latent, score one explanation: what the web routes call.

    explain_latent(store, "smollm2-135m", "6-mlp", 42, scorers=["embedding"], on_torch=run_on_worker)
    score_explanation(store, explanation_id, ["embedding", "detection"], llm=config)

Names are checked against the registries (registry.py). `on_torch(fn)` runs a torch step
(`fn(model)`); the web passes one that hands it to the live torch worker, so the caller's thread
only reads the store and talks to the LLM endpoint. Failures of an endpoint are stored as error
scores; bad input raises LatentpediaError.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from latentpedia.errors import LatentpediaError
from latentpedia.interp import registry
from latentpedia.interp.data import AtlasText, load_latent
from latentpedia.interp.llm.client import LLMClient, LLMConfig
from latentpedia.interp.pipeline import ExplainRequest, baseline_for, run_explain
from latentpedia.interp.registry import ScorerContext, TorchRunner
from latentpedia.interp.scoring import score_with_baseline
from latentpedia.interp.storage import stored_explanations
from latentpedia.store.api import Store


def explain_latent(store: Store, model_id: str, source: str, index: int, *, explainer: str = "offline",
                   variant: str = "examples", scorers: Iterable[str] = ("embedding",), llm: LLMConfig | None = None,
                   on_torch: TorchRunner | None = None) -> dict[str, Any]:  # fmt: skip
    """Explain latent `index` of `source` (unless it already is, by this method and version) and
    score it with `scorers`; {"explained", "scored", "errors", "skipped"}."""
    request = ExplainRequest(model=model_id, sources=[source], explainer=explainer, variant=variant,
                             scorers=list(scorers), indices=[index], llm=llm, progress=False, on_torch=on_torch)  # fmt: skip
    return run_explain(store, request, log=lambda _message: None)[source]


def score_explanation(store: Store, explanation_id: int, scorers: Iterable[str], *, llm: LLMConfig | None = None,
                      on_torch: TorchRunner | None = None, seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """Score a stored explanation (a person's or an explainer's) with each of `scorers`, beside a
    baseline; the score rows, stored."""
    kinds = registry.scorers(scorers)
    found = store.get_explanation(explanation_id)
    if found is None:
        raise LatentpediaError(f"no explanation {explanation_id}")
    if any(kind.needs_llm for kind in kinds) and llm is None:
        raise LatentpediaError(f"the {'/'.join(k.name for k in kinds if k.needs_llm)} scorer(s) need an LLM endpoint")
    atlas = AtlasText(store, found.source_id)
    latent = load_latent(atlas, found.latent_index)
    if latent.max_act <= 0:
        raise LatentpediaError("this latent never fires in the corpus: there is nothing to score on")
    pool = stored_explanations(store, found.source_id, found.method, found.prompt_version, found.explainer_model)
    baseline = baseline_for(found.latent_index, pool, seed, atlas)
    client = LLMClient(llm) if llm is not None and any(kind.needs_llm for kind in kinds) else None
    try:
        context = ScorerContext(atlas, client, seed, on_torch)
        rows = [_score(kind.build(context), found, latent, baseline) for kind in kinds]
    finally:
        if client is not None:
            client.close()
    store.add_scores_bulk(rows)
    return rows


def _score(scorer: Any, found: Any, latent: Any, baseline: tuple[int | None, str, int] | None) -> dict[str, Any]:
    """One score row; a scorer's torch work (`prepare`) runs first, outside the error capture,
    so a busy or timed-out torch worker is an error of the request, not a stored score."""
    if hasattr(scorer, "prepare"):
        scorer.prepare([latent], [found.text] + ([baseline[1]] if baseline else []))
    return score_with_baseline(scorer, found.id, found.text, latent, baseline)
