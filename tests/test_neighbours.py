"""Neighbours and streaming correlation as pure functions (no model), and their storage on
SQLite and PostgreSQL: replaced per pair in one transaction, deleted with their source."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentpedia.dashboards.neighbours import best_match_summary, cosine_topk
from latentpedia.lab import matching
from latentpedia.lab.matching import accumulate
from latentpedia.store import families


def test_cosine_topk_equals_brute_force_in_blocks():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 24)), rng.standard_normal((170, 24)) * rng.uniform(0.1, 5, (170, 1))
    indices, values = cosine_topk(torch.tensor(a), torch.tensor(b), 7, block=64)
    an, bn = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = an @ bn.T
    expected = np.argsort(-cos, axis=1)[:, :7]
    assert indices.shape == (300, 7) and indices.dtype == np.int32
    assert (indices == expected).all()
    assert values == pytest.approx(np.take_along_axis(cos, expected, 1), abs=1e-5)
    small, _ = cosine_topk(torch.tensor(a), torch.tensor(b[:3]), 7)
    assert small.shape == (300, 3)  # k is capped at the other source's width


@pytest.mark.parametrize(("density", "max_pairs"), [(0.05, 4096), (0.9, 4096), (0.05, 0), (0.9, 0)])
def test_streaming_pearson_equals_corrcoef_over_all_tokens(density, max_pairs, monkeypatch):
    """Each token's active pairs, a sparse product or a dense one: the same correlations."""
    monkeypatch.setattr(matching, "MAX_PAIRS_PER_TOKEN", max_pairs)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((900, 12)) * (rng.random((900, 12)) < density)
    noise = rng.standard_normal((900, 5)) * (rng.random((900, 5)) < density)
    b = np.concatenate([a[:, :4] * 2 + 0.1 * rng.standard_normal((900, 4)) * (a[:, :4] != 0), noise], axis=1)
    a[:, 11] = 0  # a dead latent: correlation 0, not NaN
    batches = [{"a": torch.tensor(a[i : i + 128]).float(), "b": torch.tensor(b[i : i + 128]).float()} for i in range(0, 900, 128)]
    sums = accumulate(batches, [("a", "b")], {"a": 12, "b": 9})[("a", "b")]
    corr = np.nan_to_num(np.corrcoef(a.T, b.T)[:12, 12:])
    assert sums.n == 900
    assert sums.correlation().numpy() == pytest.approx(corr, abs=1e-4)
    (ab_idx, ab_val), (ba_idx, ba_val) = sums.best(2)
    assert (ab_idx[:, 0][:4] == np.arange(4)).all() and (ba_idx[:4, 0] == np.arange(4)).all()
    live_a, _ = sums.live()
    assert not live_a[11] and live_a[:11].all()


def test_best_match_summary_counts_live_latents_only():
    values = np.array([[0.9, 0.1], [0.5, 0.4], [0.0, 0.0]])
    median, hist = best_match_summary(values, np.array([True, True, False]))
    assert median == pytest.approx(0.7) and hist["n"] == 2 and sum(hist["counts"]) == 2


def _source(store, name: str, width: int) -> int:
    return store.add_source("m", name, "sae", "blocks.1.hook_resid_post", 1, 8, width, meta={})


def test_pairs_are_replaced_whole_and_deleted_with_their_source(store):
    store.upsert_model("m", "llama", 2, 8, 16, 10, 0, {})
    a, b = _source(store, "1-res-a", 3), _source(store, "1-res-b", 4)
    indices, values = np.array([[0, 1], [1, 0], [2, 3]]), np.array([[0.9, 0.2], [0.8, 0.1], [0.7, 0.6]])
    families.write_pair(store, a, b, "act_corr", indices, values, median=0.8, meta={"hist": {"n": 3}})
    assert families.has_pair(store, a, b, "act_corr") and not families.has_pair(store, b, a, "act_corr")
    assert families.best_matches(store, a, b, "act_corr", [2]) == {2: ([2, 3], [0.7, 0.6])}
    stamped = store.get_source("m", "1-res-a").meta["matches_at"]
    families.write_pair(store, a, b, "act_corr", indices[:, :1], values[:, :1], median=0.5, meta={})
    rows = families.latent_matches(store, a, 0)
    assert [(r.other, r.method, r.indices, r.values) for r in rows] == [("1-res-b", "act_corr", [0], [0.9])]
    assert [p.median for p in families.list_pairs(store, a)] == [0.5]
    assert store.get_source("m", "1-res-a").meta["matches_at"] >= stamped
    with pytest.raises(ValueError):
        families.write_pair(store, a, b, "vibes", indices, values, median=None, meta={})
    store.delete_source("m", "1-res-b")
    assert families.latent_matches(store, a, 0) == [] and families.list_pairs(store) == []


def test_a_source_without_weights_is_skipped_not_fatal(store):
    """A static source (imported without its weights) at the hook of a built one: its pairs are
    skipped with a note, the others are computed."""
    from types import SimpleNamespace

    from latentpedia.dashboards.neighbours import update_neighbours
    from latentpedia.store.schema import Source
    from sqlalchemy import update

    store.upsert_model("m", "llama", 2, 8, 16, 10, 0, {})
    static = _source(store, "1-res-static", 4)
    with store._begin() as session:
        session.execute(update(Source).where(Source.id == static).values(status="ready"))
    notes: list[str] = []
    assert update_neighbours(store, SimpleNamespace(id="m"), log=notes.append) == []
    assert any("1-res-static" in note and "skipped" in note for note in notes)
