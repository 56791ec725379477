"""Quality of a set of per-layer transcoders: each layer's fit, and the whole replacement model.

Per layer: L0, explained variance and MSE of the MLP output predicted from the MLP input.
Together: the CE loss with every MLP output replaced by its transcoder's prediction at once
(positions after BOS whose MLP output is not an outlier), against the clean model and against
every MLP output zeroed at the same positions: `ce_loss_recovered` = (zero - replaced) / (zero -
clean), and the KL divergence from the clean next-token distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from latentpedia.models.hooks import run_with_cache
from latentpedia.sources.base import Source
from latentpedia.sources.transcoder_skip import skip_of
from latentpedia.train.evals import _ce, _ce_summary, _log_probs, inlier_mask


def predict(source: Source, x: torch.Tensor) -> torch.Tensor:
    """[..., d_out]: the transcoder's MLP output for MLP input `x` (skip included)."""
    out = source.encode(x) @ source.decoder() + source.weights.b_dec
    skip = skip_of(source)
    return out if skip is None else out + x.float() @ skip


def _per_layer(model, sources: Sequence[Source], windows: torch.Tensor, batch_size: int,
               outlier_factor: float | None) -> dict[int, dict[str, float]]:
    names = {s.layer: (s.hook_name, s.output_hook) for s in sources}
    sums = {s.layer: {"err": 0.0, "y2": 0.0, "y": 0.0, "n": 0, "l0": 0.0} for s in sources}
    d = model.d_model
    y_sum = {s.layer: torch.zeros(d) for s in sources}
    for start in range(0, len(windows), batch_size):
        ids = windows[start:start + batch_size]
        acts = run_with_cache(model, ids, [n for pair in names.values() for n in pair])
        for source in sources:
            x, y = acts[source.hook_name], acts[source.output_hook]
            mask = inlier_mask(y, outlier_factor)
            x, y = x[mask].float(), y[mask].float()
            s = sums[source.layer]
            s["err"] += float((predict(source, x) - y).pow(2).sum())
            s["y2"] += float(y.pow(2).sum())
            s["n"] += y.shape[0]
            s["l0"] += float((source.encode(x) > 0).sum())
            y_sum[source.layer] += y.sum(0)
    out = {}
    for layer, s in sums.items():
        n = max(s["n"], 1)
        variance = s["y2"] - float(y_sum[layer].pow(2).sum()) / n
        out[layer] = {"tokens": s["n"], "l0": s["l0"] / n, "mse": s["err"] / n,
                      "explained_variance": 1 - s["err"] / max(variance, 1e-12)}
    return out


def _replace_all(sources: Sequence[Source], fn, outlier_factor: float | None) -> dict:
    """Hooks replacing every transcoder's output by fn(source, its MLP input)."""
    stash: dict[int, torch.Tensor] = {}
    fns = {}
    for source in sources:
        def read(x, source=source):
            stash[source.layer] = x

        def write(y, source=source):
            x = stash.pop(source.layer)
            mask = inlier_mask(y, outlier_factor)
            new = y.clone()
            new[mask] = fn(source, x[mask].float()).to(y.dtype)
            return new

        fns[source.hook_name], fns[source.output_hook] = read, write
    return fns


@torch.no_grad()
def evaluate_transcoders(model, sources: Sequence[Source], windows: torch.Tensor, *, batch_size: int = 8,
                         outlier_factor: float | None = 10.0) -> dict[str, Any]:
    """{"layers": {layer: {l0, explained_variance, mse, tokens}}, "replacement": CE metrics}."""
    windows = torch.as_tensor(windows, dtype=torch.long)
    sources = sorted(sources, key=lambda s: s.layer)
    layers = _per_layer(model, sources, windows, batch_size, outlier_factor)
    sums = {"clean": 0.0, "sae": 0.0, "zero": 0.0, "kl": 0.0}
    replaced_fns = _replace_all(sources, predict, outlier_factor)
    zero_fns = _replace_all(sources, lambda s, x: torch.zeros(*x.shape[:-1], s.d_out), outlier_factor)
    for start in range(0, len(windows), batch_size):
        ids = windows[start:start + batch_size]
        clean = _log_probs(model, ids, {})
        replaced = _log_probs(model, ids, replaced_fns)
        zero = _log_probs(model, ids, zero_fns)
        weight = len(ids) / len(windows)
        sums["clean"] += weight * _ce(clean, ids)
        sums["sae"] += weight * _ce(replaced, ids)
        sums["zero"] += weight * _ce(zero, ids)
        sums["kl"] += weight * float((clean.exp() * (clean - replaced)).sum(-1).mean())
    summary = _ce_summary(sums)
    summary["ce_loss_replaced"] = summary.pop("ce_loss_sae")
    return {"layers": layers, "replacement": summary}


__all__ = ["evaluate_transcoders", "predict"]
