"""Streaming per-latent histograms of positive activations.

Each latent keeps `n_fine` equal bins over [0, scale) where `scale` is the smallest power of two
above its running max (`dyadic_scale`, a function of the max alone); when the max outgrows the
range, the scale doubles and pairs of bins merge, which is exact. So the counts depend only on
the set of values seen, not on their order: `merge` of two partial histograms equals the
histogram of everything. At the end the fine bins are regrouped into `n_bins` equal bins over
(0, max] (each fine bin goes to the coarse bin holding its centre: edges are exact to one fine bin).
"""

from __future__ import annotations

import torch


def dyadic_scale(maxima: torch.Tensor) -> torch.Tensor:
    """The smallest power of two strictly above each max (0 where the max is not positive).

    Exact (frexp), so every value binned against it gives the same bin in any process."""
    exponent = torch.frexp(maxima.float()).exponent
    return torch.where(maxima > 0, torch.ldexp(torch.ones_like(maxima, dtype=torch.float32), exponent), torch.zeros((), dtype=torch.float32))


def coarsen_(counts: torch.Tensor, scale: torch.Tensor, target: torch.Tensor) -> None:
    """Bring rows binned over [0, scale) to [0, target) (target a power-of-two multiple of scale,
    or scale 0 for rows with nothing yet) by merging pairs of bins, in place: exact."""
    fresh = (scale == 0) & (target > 0)
    scale[fresh] = target[fresh]
    n = counts.shape[1]
    while True:
        rows = torch.nonzero(scale < target).flatten()
        if rows.numel() == 0:
            return
        merged = counts[rows].view(len(rows), n // 2, 2).sum(-1)
        counts[rows] = torch.cat([merged, torch.zeros_like(merged)], dim=1)
        scale[rows] *= 2


class StreamingHistogram:
    def __init__(self, d: int, n_fine: int = 512):
        self.n_fine = n_fine
        self.counts = torch.zeros((d, n_fine), dtype=torch.int64)
        self.scale = torch.zeros(d)  # 0 = no positive value seen yet

    def _grow(self, maxima: torch.Tensor) -> None:
        target = dyadic_scale(maxima)
        if bool((target > self.scale).any()):
            coarsen_(self.counts, self.scale, target)

    def merge(self, other: "StreamingHistogram") -> None:
        """Add another partial histogram of the same latents (this becomes the histogram of both)."""
        target = torch.maximum(self.scale, other.scale)
        counts, scale = other.counts.clone(), other.scale.clone()
        coarsen_(counts, scale, target)
        coarsen_(self.counts, self.scale, target)
        self.counts += counts

    def update(self, x: torch.Tensor, maxima: torch.Tensor) -> None:
        """x [N, d] activations; maxima [d] running max including x."""
        self._grow(maxima)
        positive = x > 0
        n_positive = int(positive.sum())
        if n_positive == 0:
            return
        if 8 * n_positive < x.numel():  # sparse: bin only the non-zeros
            tok, lat = torch.nonzero(positive, as_tuple=True)
            bins = (x[tok, lat] / self.scale[lat] * self.n_fine).to(torch.int64).clamp_(0, self.n_fine - 1)
            flat = lat * self.n_fine + bins
            self.counts.view(-1).index_add_(0, flat, torch.ones_like(flat))
            return
        # dense: bin everything, sending non-positive values to one extra "dump" bin
        bins = (x * (self.n_fine / self.scale.clamp_min(1e-30))).to(torch.int64).clamp_(0, self.n_fine - 1)
        flat = torch.where(positive, bins + torch.arange(x.shape[1]) * self.n_fine, self.counts.numel()).flatten()
        self.counts.view(-1).add_(torch.bincount(flat, minlength=self.counts.numel() + 1)[: self.counts.numel()])

    def finalize(self, maxima: torch.Tensor, n_bins: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
        """(edges [d, n_bins+1], counts [d, n_bins]) over (0, max] per latent."""
        d = self.counts.shape[0]
        centres = (torch.arange(self.n_fine) + 0.5)[None, :] / self.n_fine * self.scale[:, None]
        coarse = (centres / maxima.clamp_min(1e-30)[:, None] * n_bins).to(torch.int64).clamp_(0, n_bins - 1)
        counts = torch.zeros((d, n_bins), dtype=torch.int64).scatter_add_(1, coarse, self.counts)
        edges = torch.linspace(0, 1, n_bins + 1)[None, :] * maxima.clamp_min(0)[:, None]
        return edges, counts

    def state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts, "scale": self.scale}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.counts, self.scale = state["counts"], state["scale"]
