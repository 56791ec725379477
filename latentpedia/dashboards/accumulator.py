"""All streaming dashboard statistics of one source, updated batch by batch.

`update` takes the source's latent activations for a batch of windows (position 0, the BOS,
is excluded from every statistic) and costs a few vectorised tensor operations; `state`/`load`
round-trip everything needed to resume a build exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentpedia.dashboards.correlation import Correlations
from latentpedia.dashboards.examples import QuantileExamples, TopExamples
from latentpedia.dashboards.histogram import StreamingHistogram


@dataclass(frozen=True)
class StatsConfig:
    top_k: int = 32
    n_groups: int = 10
    per_group: int = 5
    # quantile samples are kept per fine interval of [0, power of two above the max), this many
    # per group, so they merge across shards (examples.py); part of the checkpoint key
    fine_per_group: int = 2
    hist_bins: int = 50
    n_logits: int = 10
    n_aligned: int = 10
    n_correlated: int = 10
    seed: int = 0
    # Tokens whose input (the hook activation) has a norm above this many times the batch's
    # median are left out like the BOS: SmolLM2 turns position 1 of ~15% of windows into a
    # second attention sink (~150x the median residual norm). None keeps every token.
    outlier_factor: float | None = 10.0


class SourceAccumulator:
    def __init__(self, d: int, window_len: int, config: StatsConfig = StatsConfig()):
        self.d, self.window_len, self.config = d, window_len, config
        self.n_tokens = 0
        self.count_pos = torch.zeros(d, dtype=torch.int64)
        self.sums = torch.zeros(d, dtype=torch.float64)
        self.maxima = torch.zeros(d)
        self.top = TopExamples(d, config.top_k, window_len)
        self.quantiles = QuantileExamples(d, window_len, n_groups=config.n_groups, per_group=config.per_group, seed=config.seed, fine_per_group=config.fine_per_group)
        self.hist = StreamingHistogram(d)
        self.corr = Correlations(d)

    def update(self, acts: torch.Tensor, windows: torch.Tensor, *, in_place: bool = False) -> None:
        """acts [B, T, d] latent activations of windows [B] (window ids in the corpus).

        Position 0 (BOS) is zeroed and left out of every statistic; with `in_place` the caller
        hands over `acts` (no copy is made and it is modified).
        """
        acts = acts.float() if in_place else acts.float().clone()
        acts[:, 0, :] = 0
        body = acts[:, 1:, :]
        flat = body.reshape(-1, self.d)
        self.n_tokens += flat.shape[0]
        self.count_pos += (flat > 0).sum(0)
        self.sums += flat.sum(0, dtype=torch.float64)
        wmax = body.max(dim=1).values  # [B, d]
        batch_max = wmax.max(0).values
        grew = batch_max > self.maxima
        self.maxima = torch.maximum(self.maxima, batch_max)
        self.top.update(wmax, windows, acts)
        self.quantiles.update(wmax, windows, acts, self.maxima, grew)
        self.hist.update(flat, self.maxima)
        self.corr.update(flat)

    def start_at(self, batch: int) -> None:
        """Declare that the first update is batch number `batch` of the whole stream (a shard of a
        distributed build): batch-numbered choices (Gram folds, token samples) then match a
        single-process build."""
        self.corr.batches = batch

    def merge(self, other: "SourceAccumulator") -> None:
        """Add the statistics of the windows that follow this accumulator's: the result equals
        one accumulator fed both (exactly, up to the order of float64 additions)."""
        self.n_tokens += other.n_tokens
        self.count_pos += other.count_pos
        self.sums += other.sums
        self.maxima = torch.maximum(self.maxima, other.maxima)
        self.top.merge(other.top)
        self.quantiles.merge(other.quantiles, self.maxima)
        self.hist.merge(other.hist)
        self.corr.merge(other.corr)

    _PARTS = ("top", "quantiles", "hist", "corr")

    def state(self) -> dict:
        plain = {k: getattr(self, k) for k in ("n_tokens", "count_pos", "sums", "maxima")}
        return {**plain, **{part: getattr(self, part).state() for part in self._PARTS}}

    def load(self, state: dict) -> None:
        for key in ("n_tokens", "count_pos", "sums", "maxima"):
            setattr(self, key, state[key])
        for part in self._PARTS:
            getattr(self, part).load(state[part])
