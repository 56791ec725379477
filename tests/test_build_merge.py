"""Mergeable build statistics: for random splits of a window stream into contiguous shards (at
batch boundaries), feeding each shard to its own accumulator and merging them in order equals
one accumulator fed everything — what a sharded (Ray) build relies on. Also: the quantile
sample depends only on the set of windows seen (any batch order), and follows its stated rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentpedia.dashboards.accumulator import SourceAccumulator, StatsConfig
from latentpedia.dashboards.correlation import Correlations
from latentpedia.dashboards.examples import QuantileExamples, TopExamples, window_keys
from latentpedia.dashboards.finalize import example_batch, latent_stats
from latentpedia.dashboards.histogram import StreamingHistogram, dyadic_scale

N_WIN, T, D, BATCH = 96, 12, 20, 4
CONFIG = StatsConfig(top_k=6, per_group=3, seed=5)


def synthetic(seed: int, density: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((N_WIN, T, D), generator=g).abs() * torch.linspace(0.1, 5, D)
    x *= torch.rand((N_WIN, T, D), generator=g) < density
    x[:, :, 2] = 0  # a dead latent
    x[:, :, 7] = torch.round(x[:, :, 7])  # many ties in value
    x[:, 0, :] = 50.0  # BOS
    return x


def fed(x: torch.Tensor, lo: int, hi: int, config: StatsConfig = CONFIG) -> SourceAccumulator:
    acc = SourceAccumulator(D, T, config)
    acc.start_at(lo // BATCH)
    for a in range(lo, hi, BATCH):
        b = min(a + BATCH, hi)
        acc.update(x[a:b], torch.arange(a, b))
    return acc


def random_split(rng: np.random.Generator) -> list[int]:
    """Shard boundaries at batch multiples: [0, ..., N_WIN]."""
    n_batches = N_WIN // BATCH
    cuts = sorted(rng.choice(np.arange(1, n_batches), size=int(rng.integers(1, 5)), replace=False).tolist())
    return [0, *(c * BATCH for c in cuts), N_WIN]


def merged(x: torch.Tensor, bounds: list[int], config: StatsConfig = CONFIG) -> SourceAccumulator:
    parts = [fed(x, a, b, config) for a, b in zip(bounds, bounds[1:])]
    total = parts[0]
    for part in parts[1:]:
        total.merge(part)
    return total


def assert_same_store_rows(a: SourceAccumulator, b: SourceAccumulator) -> None:
    """What the build writes (examples and latent rows) is identical."""
    ea, eb = example_batch(a), example_batch(b)
    for name in ("latent", "kind", "group", "rank", "window", "max_value", "max_pos", "offsets", "positions", "values"):
        np.testing.assert_array_equal(getattr(ea, name), getattr(eb, name), err_msg=name)
    sa, _ = latent_stats(a, [], [])
    sb, _ = latent_stats(b, [], [])
    for name in ("max_act", "frac_nonzero", "mean_act"):
        np.testing.assert_array_equal(getattr(sa, name), getattr(sb, name), err_msg=name)
    assert sa.hist == sb.hist
    assert sa.correlated == sb.correlated


@pytest.mark.parametrize("seed", range(6))
def test_merge_of_random_shards_equals_one_pass(seed):
    rng = np.random.default_rng(seed)
    x = synthetic(seed, density=float(rng.choice([0.02, 0.3])))  # sparse and dense Gram paths
    whole = fed(x, 0, N_WIN)
    total = merged(x, random_split(rng))
    assert total.n_tokens == whole.n_tokens
    assert torch.equal(total.count_pos, whole.count_pos)
    assert torch.equal(total.maxima, whole.maxima)
    torch.testing.assert_close(total.sums, whole.sums, rtol=1e-12, atol=0)
    assert_same_store_rows(total, whole)


@pytest.mark.parametrize("seed", range(4))
def test_top_examples_merge(seed):
    rng = np.random.default_rng(100 + seed)
    x = synthetic(seed)
    wmax = x[:, 1:, :].max(1).values
    bounds = random_split(rng)
    parts = []
    for a, b in zip(bounds, bounds[1:]):
        top = TopExamples(D, 6, T)
        for lo in range(a, b, BATCH):
            top.update(wmax[lo : lo + BATCH], torch.arange(lo, lo + BATCH), x[lo : lo + BATCH])
        parts.append(top)
    for part in parts[1:]:
        parts[0].merge(part)
    values, windows, _ = parts[0].ranked()
    for latent in (0, 7, 19):  # 7 has ties: lower window first
        order = sorted(range(N_WIN), key=lambda w: (-float(wmax[w, latent]), w))[:6]
        assert windows[latent].tolist() == order


@pytest.mark.parametrize("seed", range(4))
def test_histogram_merge(seed):
    rng = np.random.default_rng(200 + seed)
    flat = synthetic(seed)[:, 1:, :].reshape(-1, D)
    cut = int(rng.integers(1, len(flat) - 1))
    whole, first, second = StreamingHistogram(D), StreamingHistogram(D), StreamingHistogram(D)
    whole.update(flat, flat.max(0).values)
    first.update(flat[:cut], flat[:cut].max(0).values)
    second.update(flat[cut:], flat[cut:].max(0).values)
    first.merge(second)
    assert torch.equal(first.scale, whole.scale)
    assert torch.equal(first.counts, whole.counts)


@pytest.mark.parametrize("density", [0.3, 0.01])
def test_correlations_merge(density):
    flat = synthetic(3, density)[:, 1:, :].reshape(-1, D)
    whole, first, second = Correlations(D), Correlations(D), Correlations(D)
    for part, rows in ((whole, flat), (first, flat[:500]), (second, flat[500:])):
        part.update(rows)
    first.merge(second)
    assert first.n == whole.n
    whole._fold() if whole.partial is not None else None
    torch.testing.assert_close(first.gram, whole.gram, rtol=1e-6, atol=1e-9)
    assert torch.equal(first.top(3)[0], whole.top(3)[0])


def test_wide_correlations_merge_keeps_the_same_token_sample():
    x = synthetic(4, 0.05)[:, 1:, :]
    whole = Correlations(D, max_dense=4, sample_every=2, sample_cap=200)
    first = Correlations(D, max_dense=4, sample_every=2, sample_cap=200)
    second = Correlations(D, max_dense=4, sample_every=2, sample_cap=200)
    second.batches = 12
    for b in range(N_WIN // BATCH):
        rows = x[b * BATCH : (b + 1) * BATCH].reshape(-1, D)
        whole.update(rows)
        (first if b < 12 else second).update(rows)
    first.merge(second)
    assert first.sampled == whole.sampled == 200
    assert torch.equal(torch.cat(first.sample).to_dense(), torch.cat(whole.sample).to_dense())


def brute_force_quantiles(wmax: torch.Tensor, latent: int, q: QuantileExamples) -> list[list[int]]:
    """The documented rule, spelled out: bottom (key, window) per fine interval of [0, scale),
    then per equal interval of (0, max] the smallest keys among those kept."""
    values = wmax[:, latent]
    top = float(values.max())
    scale = float(dyadic_scale(torch.tensor([top]))[0])
    keys = window_keys(torch.arange(len(values)), torch.tensor([latent]), q.seed)[:, 0]
    live = [w for w in range(len(values)) if values[w] > 0]
    kept = []
    for j in range(q.n_fine):
        members = [w for w in live if min(int(np.floor(float(values[w]) / scale * q.n_fine)), q.n_fine - 1) == j]
        kept += sorted(members, key=lambda w: (float(keys[w]), w))[: q.per_group]
    groups = []
    for g in range(q.n_groups):
        inside = [w for w in kept if min(max(int(np.ceil(float(values[w]) / top * q.n_groups)) - 1, 0), q.n_groups - 1) == g]
        groups.append(sorted(inside, key=lambda w: (float(keys[w]), w))[: q.per_group])
    return groups


@pytest.mark.parametrize("seed", range(3))
def test_quantile_sample_follows_its_rule_in_any_batch_order(seed):
    x = synthetic(seed)
    wmax = x[:, 1:, :].max(1).values
    x[:, 0, :] = 0
    order = np.random.default_rng(seed).permutation(N_WIN // BATCH)
    results = []
    for batches in (range(N_WIN // BATCH), order):
        q = QuantileExamples(D, T, n_groups=10, per_group=3, seed=9)
        maxima = torch.zeros(D)
        for b in batches:
            lo = int(b) * BATCH
            grown = torch.maximum(maxima, wmax[lo : lo + BATCH].max(0).values)
            q.update(wmax[lo : lo + BATCH], torch.arange(lo, lo + BATCH), x[lo : lo + BATCH], grown, grown > maxima)
            maxima = grown
        windows, tokens = q.final(maxima)
        results.append(windows)
        for latent in (0, 7, 13, 19):
            expected = brute_force_quantiles(wmax, latent, q)
            got = windows[latent].view(10, 3).tolist()
            assert [[w for w in row if w >= 0] for row in got] == expected
            for g, row in enumerate(got):
                for slot, w in enumerate(row):
                    if w >= 0:
                        torch.testing.assert_close(tokens[latent, g * 3 + slot].float(), x[w, :, latent].half().float())
        assert windows[2].eq(-1).all()  # the dead latent has no samples
    assert torch.equal(results[0], results[1])
