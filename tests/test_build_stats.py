"""The streaming statistics against brute-force computations on synthetic activations."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from latentpedia.dashboards.accumulator import SourceAccumulator, StatsConfig
from latentpedia.dashboards.examples import window_keys
from latentpedia.dashboards.finalize import example_batch, latent_stats, logit_effects

N_WIN, T, D, BATCH = 60, 16, 24, 8


def synthetic(seed: int = 0, density: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((N_WIN, T, D), generator=g).abs() * torch.linspace(0.1, 5, D)
    x *= torch.rand((N_WIN, T, D), generator=g) < density
    x[:, :, 3] = 0  # a dead latent
    x[:, 0, :] = 100.0  # BOS: must be ignored everywhere
    return x


def feed(acc: SourceAccumulator, x: torch.Tensor, start: int = 0, stop: int | None = None) -> None:
    stop = len(x) if stop is None else stop
    for lo in range(start, stop, BATCH):
        hi = min(lo + BATCH, stop)
        acc.update(x[lo:hi], torch.arange(lo, hi))


@pytest.fixture(scope="module")
def built():
    x = synthetic()
    acc = SourceAccumulator(D, T, StatsConfig(top_k=5, seed=7))
    feed(acc, x)
    return x, acc


def test_simple_stats_ignore_bos(built):
    x, acc = built
    body = x[:, 1:, :].reshape(-1, D)
    assert acc.n_tokens == N_WIN * (T - 1)
    torch.testing.assert_close(acc.maxima, body.max(0).values)
    torch.testing.assert_close(acc.count_pos, (body > 0).sum(0))
    torch.testing.assert_close(acc.sums, body.double().sum(0))


def test_top_examples_are_the_windows_with_highest_max(built):
    x, acc = built
    wmax = x[:, 1:, :].max(dim=1).values  # [N, D]
    values, windows, tokens = acc.top.ranked()
    for latent in range(D):
        if latent == 3:
            assert (values[latent] <= 0).all()
            continue
        expected = torch.argsort(wmax[:, latent], descending=True)[:5]
        assert windows[latent].tolist() == expected.tolist()
        for slot, window in enumerate(expected):
            got = tokens[latent, slot].float()
            assert got[0] == 0
            torch.testing.assert_close(got[1:], x[window, 1:, latent].half().float())


def test_quantile_samples_are_bottom_keys_per_interval():
    """Bottom keys per fine interval of [0, 64) (64: the power of two above the max 50), then
    per tenth of (0, 50] the smallest keys among those kept (tests/test_build_merge.py checks
    the rule when the max moves and for any batch order)."""
    x = synthetic(1)
    x[0, 5, :] = 50.0  # the max of every live latent is in the first batch
    x[:, :, 3] = 0
    acc = SourceAccumulator(D, T, StatsConfig(top_k=5, seed=11))
    feed(acc, x)
    wmax = x[:, 1:, :].max(dim=1).values
    q = acc.quantiles
    windows, _ = q.final(acc.maxima)
    for latent in (0, 10, 23):
        keys = window_keys(torch.arange(N_WIN), torch.tensor([latent]), 11)[:, 0]
        fine = (wmax[:, latent] / 64 * q.n_fine).floor().clamp(0, q.n_fine - 1)
        kept = []
        for interval in range(q.n_fine):
            members = torch.nonzero((fine == interval) & (wmax[:, latent] > 0)).flatten()
            kept += members[torch.argsort(keys[members], stable=True)][:5].tolist()
        kept = torch.tensor(sorted(kept))  # window order, so equal keys fall back on the window
        groups = (torch.ceil(wmax[kept, latent] / acc.maxima[latent] * 10) - 1).clamp(0, 9)
        for group in range(10):
            members = kept[groups == group]
            expected = members[torch.argsort(keys[members], stable=True)][:5].tolist()
            slots = windows[latent, group * 5 : group * 5 + 5]
            assert [w for w in slots.tolist() if w >= 0] == expected


def test_histogram_counts_every_positive_value(built):
    x, acc = built
    edges, counts = acc.hist.finalize(acc.maxima, 50)
    body = x[:, 1:, :].reshape(-1, D)
    for latent in (0, 12, 23):
        values = body[:, latent][body[:, latent] > 0].numpy()
        assert counts[latent].sum() == len(values)
        ref, _ = np.histogram(values, bins=edges[latent].numpy())
        assert np.abs(ref - counts[latent].numpy()).sum() <= 0.1 * len(values)
    assert counts[3].sum() == 0


@pytest.mark.parametrize("density", [0.3, 0.01])  # dense matmul and sparse product paths
def test_correlations_match_numpy(density):
    x = synthetic(2, density)
    x[:, 1:, 5] = x[:, 1:, 4] * 2 + 0.01  # latent 5 is a copy of latent 4
    acc = SourceAccumulator(D, T)
    feed(acc, x)
    idx, val, _ = acc.corr.top(3)
    body = x[:, 1:, :].reshape(-1, D).double().numpy()
    with np.errstate(invalid="ignore"):
        ref = np.corrcoef(body.T)
    assert idx[4, 0] == 5 and val[4, 0] == pytest.approx(1.0, abs=1e-4)
    for latent in (0, 7, 20):
        row = ref[latent].copy()
        row[latent] = -np.inf
        row[np.isnan(row)] = -np.inf
        assert val[latent, 0].item() == pytest.approx(row.max(), abs=1e-4)


def test_resume_from_saved_state_is_bit_identical():
    x = synthetic(3)
    whole = SourceAccumulator(D, T)
    feed(whole, x)
    first = SourceAccumulator(D, T)
    feed(first, x, 0, 24)
    buffer = io.BytesIO()
    torch.save(first.state(), buffer)
    buffer.seek(0)
    second = SourceAccumulator(D, T)
    second.load(torch.load(buffer, weights_only=False))
    feed(second, x, 24)
    a, b = example_batch(whole), example_batch(second)
    for field in ("latent", "window", "positions", "values", "offsets", "group", "rank"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert torch.equal(whole.corr.gram, second.corr.gram)
    assert torch.equal(whole.hist.counts, second.hist.counts)


def test_example_batch_csr_round_trip(built):
    x, acc = built
    batch = example_batch(acc)
    assert len(batch.offsets) == len(batch.latent) + 1
    for j in np.nonzero(batch.kind == 0)[0][:20]:
        latent, window = batch.latent[j], batch.window[j]
        pos = batch.positions[batch.offsets[j] : batch.offsets[j + 1]]
        vals = batch.values[batch.offsets[j] : batch.offsets[j + 1]]
        dense = np.zeros(T, dtype=np.float32)
        dense[pos] = vals
        np.testing.assert_allclose(dense[1:], x[window, 1:, latent].half().float().numpy())
        assert batch.max_pos[j] == int(np.argmax(dense))
    assert not (batch.latent == 3).any()


def test_latent_stats_and_logits(built):
    _, acc = built
    g = torch.Generator().manual_seed(0)
    directions, W_U, norm = torch.randn(D, 6, generator=g), torch.randn(40, 6, generator=g), torch.rand(6, generator=g)
    logits = logit_effects(directions, norm, W_U, n=4, bins=10)
    ref = (directions * norm) @ W_U.T
    assert [t for t, _ in logits[2]["pos"]] == torch.topk(ref[2], 4).indices.tolist()
    assert [t for t, _ in logits[2]["neg"]] == torch.topk(-ref[2], 4).indices.tolist()
    assert logits[2]["neg"][0][1] == pytest.approx(ref[2].min().item(), abs=1e-4)
    assert sum(logits[2]["hist"]["counts"]) == 40
    stats, note = latent_stats(acc, logits, [[] for _ in range(D)])
    assert stats.frac_nonzero[3] == 0 and stats.max_act[3] == 0
    assert "all tokens" in note["correlation"]


def test_wide_sources_correlate_over_a_token_sample():
    from latentpedia.dashboards.correlation import Correlations

    x = synthetic(4, 0.05).reshape(-1, D)[:, :]
    x[:, 9] = x[:, 8] * 3
    exact, sampled = Correlations(D), Correlations(D, max_dense=8, sample_every=1, sample_cap=10**6)
    for lo in range(0, len(x), 100):
        exact.update(x[lo : lo + 100])
        sampled.update(x[lo : lo + 100])
    (ie, ve, _), (is_, vs, note) = exact.top(3), sampled.top(3)
    assert "sample" in note["correlation"]
    assert torch.equal(ie[8], is_[8]) and is_[8, 0] == 9
    torch.testing.assert_close(ve[~torch.isinf(ve)], vs[~torch.isinf(vs)], atol=1e-4, rtol=1e-4)


def test_outlier_tokens_are_masked_like_the_bos():
    from latentpedia.dashboards.runner import outlier_tokens

    x = torch.randn(3, 6, 8)
    assert outlier_tokens(x, 10.0) is None and outlier_tokens(x, None) is None
    x[1, 1] *= 1000  # a second attention sink
    x[2, 0] *= 1000  # the BOS itself never counts
    mask = outlier_tokens(x, 10.0)
    assert mask.shape == (3, 6) and mask.sum() == 1 and bool(mask[1, 1])
