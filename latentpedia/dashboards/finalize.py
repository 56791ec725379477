"""Turn a finished accumulator (plus the source's decoder) into stored records."""

from __future__ import annotations

import math

import numpy as np
import torch

from latentpedia.dashboards.accumulator import SourceAccumulator
from latentpedia.store.records import ExampleBatch, LatentStats


def row_histograms(values: torch.Tensor, bins: int, *, in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row equal-width histograms over [row min, row max]: (edges [r, bins+1], counts [r, bins]).
    With `in_place` the caller hands `values` over (it is overwritten: no copy is made)."""
    lo, hi = torch.aminmax(values, dim=1, keepdim=True)
    width = (hi - lo).clamp_min(1e-12)
    scaled = values if in_place else values.clone()
    scaled.sub_(lo).div_(width).mul_(bins)  # (values - lo) / width * bins, rounded alike
    index = scaled.to(torch.int32).clamp_(0, bins - 1)
    index += torch.arange(values.shape[0], dtype=torch.int32)[:, None] * bins
    counts = torch.bincount(index.view(-1), minlength=values.shape[0] * bins).view(-1, bins)
    edges = lo + torch.linspace(0, 1, bins + 1)[None, :] * (hi - lo)
    return edges, counts


def _pairs(indices: torch.Tensor, values: torch.Tensor) -> list[list[list[float]]]:
    return [[[int(i), round(float(v), 5)] for i, v in zip(ri, rv)] for ri, rv in zip(indices.tolist(), values.tolist())]


def logit_effects(
    directions: torch.Tensor, norm_weight: torch.Tensor | None, W_U: torch.Tensor, *, n: int = 10, bins: int = 50, block: int = 512
) -> list[dict]:
    """Tokens each direction promotes/suppresses: direction * final-norm scale @ W_U^T, per latent."""
    basis = "final_norm_scale*W_U" if norm_weight is not None else "W_U"
    unembed_t = W_U.float().T
    scale = None if norm_weight is None else norm_weight.float()
    out = []
    for a in range(0, directions.shape[0], block):
        dirs = directions[a : a + block].float()
        if scale is not None:
            dirs = dirs * scale
        logits = dirs @ unembed_t
        pos = torch.topk(logits, n, dim=1)
        neg = torch.topk(logits.neg_(), n, dim=1)  # the most negative logits, negated back below
        edges, counts = row_histograms(logits.neg_(), bins, in_place=True)
        edge_rows = [[round(e, 5) for e in row] for row in edges.tolist()]
        for p, q, e, c in zip(_pairs(pos.indices, pos.values), _pairs(neg.indices, -neg.values), edge_rows, counts.tolist()):
            out.append({"pos": p, "neg": q, "hist": {"edges": e, "counts": c}, "basis": basis})
    return out


def aligned_entries(decoder: torch.Tensor, n: int = 10) -> list[list[list[float]]]:
    """Largest-magnitude entries of each decoder row: [[dimension, value], ...]."""
    top = torch.topk(decoder.float().abs(), min(n, decoder.shape[1]), dim=1).indices
    return _pairs(top, torch.gather(decoder.float(), 1, top))


def latent_stats(acc: SourceAccumulator, logits: list[dict], aligned: list) -> tuple[LatentStats, dict]:
    cfg = acc.config
    n = max(acc.n_tokens, 1)
    edges, counts = acc.hist.finalize(acc.maxima, cfg.hist_bins)
    corr_idx, corr_val, note = acc.corr.top(cfg.n_correlated)
    hist = [{"edges": [round(e, 5) for e in row], "counts": row_counts} for row, row_counts in zip(edges.tolist(), counts.tolist())]
    correlated = [
        [[j, round(v, 5)] for j, v in zip(row_idx, row_val) if math.isfinite(v)]
        for row_idx, row_val in zip(corr_idx.tolist(), corr_val.tolist())
    ]
    stats = LatentStats(
        max_act=acc.maxima.numpy().astype(np.float32),
        frac_nonzero=(acc.count_pos.double() / n).numpy().astype(np.float32),
        mean_act=(acc.sums / n).numpy().astype(np.float32),
        hist=hist,
        logits=logits,
        aligned=aligned,
        correlated=correlated,
    )
    return stats, note


def example_batch(acc: SourceAccumulator) -> ExampleBatch:
    """Top and quantile examples of every latent, non-zero per-token values in CSR layout."""
    q = acc.quantiles
    top_values, top_windows, top_tokens = acc.top.ranked()
    parts = []
    lat, rank = torch.nonzero((top_windows >= 0) & (top_values > 0), as_tuple=True)
    parts.append((lat, torch.zeros_like(lat), torch.full_like(lat, -1), rank, top_windows[lat, rank], top_tokens[lat, rank]))
    q_windows, q_tokens = q.final(acc.maxima)
    lat, slot = torch.nonzero(q_windows >= 0, as_tuple=True)
    group, rank = slot // q.per_group, slot % q.per_group
    parts.append((lat, torch.ones_like(lat), group, rank, q_windows[lat, slot], q_tokens[lat, slot]))
    cols = [torch.cat(c) for c in zip(*parts)]
    lat, kind, group, rank, window, tokens = cols
    order = np.lexsort((rank.numpy(), group.numpy(), kind.numpy(), lat.numpy()))
    lat, kind, group, rank, window, tokens = (c[order] for c in (lat, kind, group, rank, window, tokens))
    tokens = tokens.float()
    max_value, max_pos = tokens.max(dim=1)
    ex, pos = torch.nonzero(tokens > 0, as_tuple=True)
    counts = torch.bincount(ex, minlength=len(lat))
    offsets = np.zeros(len(lat) + 1, dtype=np.int64)
    np.cumsum(counts.numpy(), out=offsets[1:])
    return ExampleBatch(
        latent=lat.numpy().astype(np.int32),
        kind=kind.numpy().astype(np.int8),
        group=group.numpy().astype(np.int8),
        rank=rank.numpy().astype(np.int16),
        window=window.numpy().astype(np.int32),
        max_value=max_value.numpy().astype(np.float32),
        max_pos=max_pos.numpy().astype(np.int16),
        offsets=offsets,
        positions=pos.numpy().astype(np.uint16),
        values=tokens[ex, pos].numpy().astype(np.float16),
    )
