"""SAE quality: reconstruction, sparsity and what splicing the SAE into the model costs.

    metrics = evaluate_sae(model, sae, windows)     # windows: [n, T] token ids, BOS in column 0

Position 0 (the BOS / attention-sink token) is left out everywhere: its activation is never
replaced and its prediction never scored. Outlier tokens (norm > `outlier_factor` x the batch's
median: attention sinks, which SAE training leaves out too) are treated like position 0 for the
activation metrics and keep their clean activation when splicing; `outlier_fraction` says how
many there were. Metrics:
- `l0` (mean active latents per token), `explained_variance` (1 - SSE / total variance),
  `mse` (mean squared error per element), `dead_fraction` (latents that never fired on the
  eval tokens), `dense_fraction` (firing on > 10% of tokens), `density_histogram` (log10 of
  each live latent's firing frequency);
- `ce_loss_clean`, `ce_loss_sae`, `ce_loss_zero`, `ce_loss_recovered` = (zero - sae) /
  (zero - clean): 1 for a perfect reconstruction, 0 for one no better than zero-ablation;
  `kl_div` = mean KL(clean || spliced) of the next-token distributions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from latentpedia.models.hooks import hooks
from latentpedia.sources.sae import SAESource

if TYPE_CHECKING:
    from latentpedia.models.loader import LoadedModel

DENSE_FREQUENCY = 0.1
HISTOGRAM_RANGE, HISTOGRAM_BINS = (-8.0, 0.0), 32


@torch.no_grad()
def reconstruct(sae: SAESource, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent activations, reconstruction in the input's units) for [..., d_in] inputs."""
    w = sae.weights
    x = x.float()
    acts = sae.encode(x)
    rows = w.W_dec / w.W_dec.norm(dim=-1, keepdim=True) if w.rescale_acts_by_decoder_norm else w.W_dec
    out = acts @ rows + w.b_dec
    return acts, _undo_normalization(out, x, sae)


def _undo_normalization(out: torch.Tensor, x: torch.Tensor, sae: SAESource) -> torch.Tensor:
    w = sae.weights
    if w.normalize_activations == "expected_average_only_in" and w.norm_scaling_factor:
        return out / w.norm_scaling_factor
    if w.normalize_activations == "constant_norm_rescale":
        return out * x.norm(dim=-1, keepdim=True) / math.sqrt(w.d_in)
    if w.normalize_activations == "layer_norm":
        mu = x.mean(dim=-1, keepdim=True)
        return out * (x - mu).std(dim=-1, keepdim=True) + mu
    return out


class ActivationStats:
    """Streaming L0, explained variance, MSE and firing counts over batches of [tokens, d_in]."""

    def __init__(self, sae: SAESource):
        self.sae = sae
        self.tokens, self.active, self.sse = 0, 0.0, 0.0
        self.sum = torch.zeros(sae.d_in, dtype=torch.float64)
        self.sum_sq = 0.0
        self.fired = torch.zeros(sae.d_sae, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        acts, recon = reconstruct(self.sae, x)
        self.tokens += x.shape[0]
        self.active += float((acts > 0).sum())
        self.sse += float((recon - x).double().pow(2).sum())
        self.sum += x.double().sum(0)
        self.sum_sq += float(x.double().pow(2).sum())
        self.fired += (acts > 0).double().sum(0)

    def result(self) -> dict[str, Any]:
        n = max(self.tokens, 1)
        total_var = self.sum_sq - float(self.sum.pow(2).sum()) / n
        freq = self.fired / n
        live = freq[freq > 0]
        counts = torch.histc(live.log10().float(), bins=HISTOGRAM_BINS, min=HISTOGRAM_RANGE[0], max=HISTOGRAM_RANGE[1])
        return {
            "tokens": self.tokens,
            "l0": self.active / n,
            "explained_variance": 1 - self.sse / max(total_var, 1e-12),
            "mse": self.sse / (n * self.sae.d_in),
            "dead_fraction": float((freq == 0).double().mean()),
            "dense_fraction": float((freq > DENSE_FREQUENCY).double().mean()),
            "density_histogram": {"log10_range": list(HISTOGRAM_RANGE), "counts": [int(c) for c in counts]},
        }


def activation_metrics(sae: SAESource, batches: Iterable[torch.Tensor]) -> dict[str, Any]:
    """L0, explained variance, MSE, dead/dense fractions and density histogram of `batches`."""
    stats = ActivationStats(sae)
    for x in batches:
        stats.add(x)
    return stats.result()


def inlier_mask(act: torch.Tensor, outlier_factor: float | None) -> torch.Tensor:
    """[B, T] True where a token is scored: position > 0 and norm <= factor x median norm."""
    norms = act.float().norm(dim=-1)
    mask = torch.ones_like(norms, dtype=torch.bool)
    mask[:, 0] = False
    if outlier_factor:
        mask &= norms <= outlier_factor * norms[:, 1:].median()
    return mask


def _splice(fn: Callable[[torch.Tensor], torch.Tensor], outlier_factor: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A hook replacing every scored position (see `inlier_mask`) by fn(activation)."""
    def hook(act: torch.Tensor) -> torch.Tensor:
        mask = inlier_mask(act, outlier_factor)
        new = act.clone()
        new[mask] = fn(act[mask]).to(act.dtype)
        return new
    return hook


def _log_probs(model: LoadedModel, ids: torch.Tensor, fns: dict) -> torch.Tensor:
    """Next-token log-probabilities at positions 1..T-2 (predicting tokens 2..T-1)."""
    with torch.inference_mode(), hooks(model, fns):
        logits = model.hf(input_ids=ids.to(model.hf.device), use_cache=False).logits
    return torch.log_softmax(logits[:, 1:-1].float(), dim=-1)


def _ce(log_probs: torch.Tensor, ids: torch.Tensor) -> float:
    return float(-log_probs.gather(-1, ids[:, 2:, None].to(log_probs.device)).mean())


def evaluate_sae(model: LoadedModel, sae: SAESource, windows: torch.Tensor, *, batch_size: int = 8,
                 outlier_factor: float | None = 10.0) -> dict[str, Any]:
    """Every metric of this module over `windows` ([n, T] token ids, BOS first)."""
    return evaluate_saes(model, [sae], windows, batch_size=batch_size, outlier_factor=outlier_factor)[0]


@torch.no_grad()
def evaluate_saes(model: LoadedModel, saes: Sequence[SAESource], windows: torch.Tensor, *, batch_size: int = 8,
                  outlier_factor: float | None = 10.0) -> list[dict[str, Any]]:
    """`evaluate_sae` of several SAEs at once: per batch one clean pass reads every hook, one
    zero-ablated pass per hook serves every SAE there, and one spliced pass per SAE (8 passes
    instead of 12 for the default atlas's four SAEs at three hooks; the figures are the same)."""
    windows = torch.as_tensor(windows, dtype=torch.long)
    stats = [ActivationStats(sae) for sae in saes]
    sums = [{"clean": 0.0, "sae": 0.0, "zero": 0.0, "kl": 0.0} for _ in saes]
    outliers = [0] * len(saes)
    by_hook: dict[str, list[int]] = {}
    for i, sae in enumerate(saes):
        by_hook.setdefault(sae.hook_name, []).append(i)

    def reader(members: list[int]) -> Callable[[torch.Tensor], None]:
        def read(act: torch.Tensor) -> None:
            mask = inlier_mask(act, outlier_factor)
            for i in members:
                outliers[i] += int((~mask[:, 1:]).sum())
                stats[i].add(act[mask])
        return read

    for start in range(0, len(windows), batch_size):
        ids = windows[start:start + batch_size]
        weight = len(ids) / len(windows)
        clean = _log_probs(model, ids, {hook: reader(members) for hook, members in by_hook.items()})
        clean_ce = _ce(clean, ids)
        for hook, members in by_hook.items():
            zero_ce = _ce(_log_probs(model, ids, {hook: _splice(torch.zeros_like, outlier_factor)}), ids)
            for i in members:
                sums[i]["clean"] += weight * clean_ce
                sums[i]["zero"] += weight * zero_ce
        for i, sae in enumerate(saes):
            spliced = _log_probs(model, ids, {sae.hook_name: _splice(lambda a, s=sae: reconstruct(s, a)[1], outlier_factor)})
            sums[i]["sae"] += weight * _ce(spliced, ids)
            sums[i]["kl"] += weight * float((clean.exp() * (clean - spliced)).sum(-1).mean())
    results = []
    for stat, total, outlier in zip(stats, sums, outliers, strict=True):
        scored = stat.tokens + outlier
        results.append({**stat.result(), **_ce_summary(total), "outlier_fraction": outlier / max(scored, 1)})
    return results


def _ce_summary(sums: dict[str, float]) -> dict[str, float]:
    gap = sums["zero"] - sums["clean"]
    recovered = (sums["zero"] - sums["sae"]) / gap if abs(gap) > 1e-9 else float("nan")
    return {"ce_loss_clean": sums["clean"], "ce_loss_sae": sums["sae"], "ce_loss_zero": sums["zero"],
            "ce_loss_recovered": recovered, "kl_div": sums["kl"]}


def summary_line(metrics: dict[str, Any]) -> str:
    """One human line: L0, EV, CE recovered, KL, dead/dense."""
    parts = [f"L0 {metrics['l0']:.1f}", f"EV {metrics['explained_variance']:.3f}", f"MSE {metrics['mse']:.4g}"]
    if "ce_loss_recovered" in metrics:
        parts += [f"CE recovered {metrics['ce_loss_recovered']:.3f}", f"KL {metrics['kl_div']:.4f}"]
    parts += [f"dead {metrics['dead_fraction']:.1%}", f"dense {metrics['dense_fraction']:.1%}"]
    return ", ".join(parts)
