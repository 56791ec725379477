"""`latentpedia train-transcoders` end to end: corpus windows, one streaming training pass over
them for every layer, evaluation on held-out windows, and (optionally) the atlas: each layer's
transcoder becomes a source with its dashboards and its quality."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.train.run import json_safe
from latentpedia.train.transcoder_evals import evaluate_transcoders
from latentpedia.train.transcoders import TranscoderConfig, TranscoderTrainer


@dataclass
class TranscoderRequest:
    model: str
    out_dir: Path
    corpus: str = "default"
    window_len: int = 128
    eval_tokens: int = 4096  # held-out tokens (the corpus's last windows); 0: skip the evaluation
    import_to_atlas: bool = True
    train: dict[str, Any] = field(default_factory=dict)  # TranscoderConfig fields


def corpus_split(model, request: TranscoderRequest, n_train: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(training windows, held-out windows or None) tokenized from `request.corpus`."""
    from latentpedia.corpus import prepare_corpus

    per_window = request.window_len - 1
    n_eval = math.ceil(request.eval_tokens / per_window) if request.eval_tokens else 0
    wanted = min(n_train, 2_000_000) + n_eval * per_window  # windows cycle when the corpus is shorter
    corpus = prepare_corpus(model, request.corpus, n_tokens=wanted, window_len=request.window_len)
    windows = torch.as_tensor(corpus.windows, dtype=torch.long)
    if n_eval and len(windows) <= n_eval:
        raise InvalidInputError(f"the corpus makes only {len(windows)} windows: too few to hold {n_eval} out for evaluation")
    return (windows[:-n_eval], windows[-n_eval:]) if n_eval else (windows, None)


def train_transcoders(store, request: TranscoderRequest, *, log=print) -> dict[str, Any]:
    """Train, evaluate and (if asked) add to the atlas; {"results": per layer, "quality": ...}."""
    from latentpedia.models.loader import load_model
    from latentpedia.sources import load_sae

    model = load_model(request.model)
    config = TranscoderConfig(out_dir=Path(request.out_dir), model_id=model.id, **request.train)
    train_windows, eval_windows = corpus_split(model, request, config.n_tokens)
    layers = config.layers if config.layers is not None else list(range(model.n_layers))
    log(f"training {len(layers)} transcoders ({config.width} latents, k={config.k}{', skip' if config.skip else ''}) "
        f"on {config.n_tokens:,} tokens of {request.corpus} in one streaming pass")
    results = TranscoderTrainer(model, train_windows, config, log=log).run()
    quality: dict[str, Any] = {}
    if eval_windows is not None:
        sources = [load_sae(r["path"], source_id=r["name"]) for r in results]
        quality = json_safe(evaluate_transcoders(model, sources, eval_windows))
        for r in results:
            r["quality"] = {**quality["layers"][r["layer"]], "replacement": quality["replacement"]}
            log(f"  {r['name']}: EV {r['quality']['explained_variance']:.3f}, L0 {r['quality']['l0']:.1f}")
        whole = quality["replacement"]
        log(f"every MLP replaced: CE {whole['ce_loss_replaced']:.4f} (clean {whole['ce_loss_clean']:.4f}, "
            f"zero {whole['ce_loss_zero']:.4f}), CE-loss recovered {whole['ce_loss_recovered']:.3f}, KL {whole['kl_div']:.4f}")
    if request.import_to_atlas and results:
        from latentpedia.train.run import _import

        _import(store, model, [{**r, "quality": r.get("quality", {})} for r in results], log)
    return {"results": results, "quality": quality}
