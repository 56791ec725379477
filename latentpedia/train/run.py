"""`latentpedia train-sae` / `eval-sae` end to end: validate, train, evaluate, add to the atlas.

Kept apart from the trainer so the trainer needs no model: it only reads cached activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentpedia.engine.resolve import resolve_source, stored_path
from latentpedia.errors import InvalidInputError
from latentpedia.models.hooks import hook_width
from latentpedia.models.loader import LoadedModel, load_model
from latentpedia.store.api import Store
from latentpedia.train.config import TrainConfig
from latentpedia.train.evals import evaluate_sae, evaluate_saes, summary_line
from latentpedia.train.trainer import Trainer


@dataclass
class TrainRequest:
    """What the CLI was asked for (see TrainConfig for the training knobs)."""

    model: str
    hooks: list[str]
    widths: list[int]
    out_dir: Path
    activations: Path | None = None  # None: the atlas's cached activations for this model
    import_to_atlas: bool = True
    eval_tokens: int = 8192
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    pairs: list[tuple[str, int]] | None = None  # exact (hook, width) SAEs instead of hooks x widths


def atlas_activations(store: Store, model_id: str) -> Path:
    """The activation cache of the atlas's newest corpus for `model_id`."""
    from latentpedia.dashboards.pipeline import activation_dir

    corpora = store.list_corpora(model_id)
    if not corpora:
        raise InvalidInputError(f"the atlas has no corpus for {model_id}: build one with --cache-acts HOOK, or pass --activations DIR")
    folder = activation_dir(model_id, corpora[-1].content_hash)
    if not (folder / "manifest.json").exists():
        raise InvalidInputError("no cached activations for the atlas's corpus: run `latentpedia build --cache-acts HOOK` or pass --activations DIR", folder)
    return folder


def eval_windows(store: Store | None, model: LoadedModel, n_tokens: int) -> torch.Tensor:
    """Windows to evaluate on: the last windows of the atlas's corpus (the activation cache
    holds the first ones), else the default corpus."""
    corpora = store.list_corpora(model.id) if store is not None else []
    if corpora:
        record = corpora[-1]
        n = min(record.n_windows, max(1, math.ceil(n_tokens / (record.window_len - 1))))
        return torch.as_tensor(store.get_windows(record.id, np.arange(record.n_windows - n, record.n_windows)), dtype=torch.long)
    from latentpedia.corpus import prepare_corpus

    return torch.as_tensor(prepare_corpus(model, n_tokens=n_tokens).windows, dtype=torch.long)


def json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN / inf -> None (PostgreSQL's JSON rejects them)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return {k: clean(v) for k, v in value.items()} if isinstance(value, dict) else value
    return clean(metrics)


def train_saes(store: Store, request: TrainRequest, *, log=print) -> list[dict[str, Any]]:
    """Train every (hook, width) SAE, evaluate each, and add them to the atlas if asked."""
    model = load_model(request.model)
    for hook in request.hooks + [h for h, _ in request.pairs or []]:
        hook_width(model, hook)  # UnknownHookError names the valid ones
    activations = request.activations or atlas_activations(store, model.id)
    config = TrainConfig(activations=Path(activations), out_dir=Path(request.out_dir), hooks=request.hooks,
                         widths=request.widths, model_id=model.id, pairs=request.pairs, **request.train)
    log(f"training {len(config.sae_pairs)} {config.architecture} SAE(s) on {config.n_tokens:,} tokens from {activations}")
    results = Trainer(config, log=log).run()
    for result in results:
        log(f"  {result['name']}: {result['tokens_per_second']:,} tok/s -> {result['path']}")
    windows = eval_windows(store, model, request.eval_tokens) if request.eval_tokens and results else None
    qualities = _evaluate(model, results, windows, log) if windows is not None else [{} for _ in results]
    for result, quality in zip(results, qualities, strict=True):
        result["quality"] = quality
    if request.import_to_atlas and results:
        _import(store, model, results, log)
    return results


def _evaluate(model: LoadedModel, results: list[dict[str, Any]], windows: torch.Tensor, log) -> list[dict[str, Any]]:
    """Every trained SAE evaluated together (one clean pass for all: evals.evaluate_saes)."""
    from latentpedia.sources import load_sae

    log(f"evaluating {len(results)} SAE(s) on {windows.shape[0] * (windows.shape[1] - 1):,} held-out tokens")
    qualities = [json_safe(m) for m in evaluate_saes(model, [load_sae(r["path"]) for r in results], windows)]
    for result, metrics in zip(results, qualities, strict=True):
        log(f"    {result['name']}: {summary_line(metrics)}")
    return qualities


def _import(store: Store, model: LoadedModel, results: list[dict[str, Any]], log) -> None:
    """Add every trained SAE to the atlas and build their dashboards from the cached activations
    they were trained on (one forward pass instead where the cache lacks their hook)."""
    from latentpedia.dashboards.pipeline import ATLAS_CORPUS, BuildRequest, build
    from latentpedia.engine.resolve import resolve_source

    sources = [resolve_source(model, str(r["path"]), name=r["name"]) for r in results]
    build(store, BuildRequest(model=model.id, corpus=ATLAS_CORPUS, from_cache=True), model=model, sources=sources, log=log)
    for result in results:
        source = store.get_source(model.id, result["name"])
        if source is not None and result["quality"]:
            store.set_source_quality(source.id, result["quality"])


def eval_sae(store: Store, target: str, *, model: str, n_tokens: int = 8192, log=print) -> dict[str, Any]:
    """Evaluate an SAE folder or an atlas source; store the metrics if it is in the atlas."""
    loaded = load_model(model)
    record = store.get_source(loaded.id, target)
    path = Path(stored_path(record) or target) if record is not None else Path(target)
    if not path.exists():
        raise InvalidInputError(f"neither an SAE folder nor an SAE source of {loaded.id} in the atlas", target)
    sae = resolve_source(loaded, str(path))  # validated against the model's hook width
    metrics = json_safe(evaluate_sae(loaded, sae, eval_windows(store, loaded, n_tokens)))
    log(f"{sae.id}: {summary_line(metrics)}")
    record = record or _source_by_path(store, loaded.id, path)
    if record is not None:
        store.set_source_quality(record.id, metrics)
        log(f"  stored as the quality of source {record.name}")
    return metrics


def _source_by_path(store: Store, model_id: str, path: Path):
    resolved = path.resolve()
    sources = store.list_sources(model_id)
    return next((s for s in sources if stored_path(s) and Path(stored_path(s)).resolve() == resolved), None)
