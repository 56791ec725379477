"""SAE evals on the tiny model, quality stored per source (SQLite + PostgreSQL), the CLI end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.tiny import D_MODEL, tiny_llama

from latentpedia.errors import LatentpediaError, UnknownHookError
from latentpedia.models import load_model
from latentpedia.sources import SAESource, SAEWeights
from latentpedia.store import Store
from latentpedia.train.evals import evaluate_sae, evaluate_saes
from latentpedia.train.run import TrainRequest, eval_sae, train_saes

HOOK = "blocks.2.hook_resid_post"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(str(tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")))


def windows(model, n: int = 6, length: int = 24) -> torch.Tensor:
    ids = torch.randint(1, model.vocab_size, (n, length), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = model.bos_id
    return ids


def identity_sae(d: int, *, zero: bool = False) -> SAESource:
    """relu(x) - relu(-x) = x: a perfect reconstruction (or, with zero=True, none at all)."""
    eye = torch.eye(d)
    W_dec = torch.zeros(2 * d, d) if zero else torch.cat([eye, -eye])
    weights = SAEWeights("relu", torch.cat([eye, -eye], dim=1), torch.zeros(2 * d), W_dec, torch.zeros(d))
    return SAESource(weights, HOOK)


def test_perfect_reconstruction_recovers_all_of_the_ce_loss(tiny):
    metrics = evaluate_sae(tiny, identity_sae(D_MODEL), windows(tiny))
    assert metrics["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["kl_div"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["ce_loss_zero"] > metrics["ce_loss_clean"]
    assert metrics["tokens"] + round(metrics["outlier_fraction"] * 6 * 23) == 6 * 23  # position 0 left out


def test_zero_reconstruction_recovers_none_of_it(tiny):
    metrics = evaluate_sae(tiny, identity_sae(D_MODEL, zero=True), windows(tiny))
    assert metrics["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["ce_loss_sae"] == pytest.approx(metrics["ce_loss_zero"], abs=1e-5)
    assert metrics["kl_div"] > 0


def test_sparsity_metrics(tiny):
    metrics = evaluate_sae(tiny, identity_sae(D_MODEL), windows(tiny))
    assert metrics["l0"] == pytest.approx(D_MODEL, abs=1)  # every coordinate is + or -
    assert metrics["dead_fraction"] < 0.2 and metrics["dense_fraction"] > 0.8
    assert sum(metrics["density_histogram"]["counts"]) == round(2 * D_MODEL * (1 - metrics["dead_fraction"]))


def random_sae(hook: str, d_sae: int, seed: int) -> SAESource:
    g = torch.Generator().manual_seed(seed)
    W_enc, W_dec = torch.randn(D_MODEL, d_sae, generator=g) / 4, torch.randn(d_sae, D_MODEL, generator=g) / 4
    return SAESource(SAEWeights("relu", W_enc, torch.zeros(d_sae), W_dec, torch.zeros(D_MODEL)), hook)


def test_several_saes_evaluated_together_get_each_its_own_figures(tiny):
    """One clean pass for all, one zero-ablated pass per hook: the same figures as one by one."""
    saes = [random_sae(HOOK, 96, 1), identity_sae(D_MODEL), random_sae("blocks.1.hook_resid_post", 48, 2), random_sae(HOOK, 32, 3)]
    together = evaluate_saes(tiny, saes, windows(tiny))
    alone = [evaluate_sae(tiny, sae, windows(tiny)) for sae in saes]
    assert together == alone
    assert together[1]["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-4) and together[0]["ce_loss_recovered"] < 0.99
    assert together[0]["ce_loss_zero"] == together[3]["ce_loss_zero"] != together[2]["ce_loss_zero"]  # per hook


def test_quality_is_merged_into_the_source_meta(store):
    store.upsert_model("m", "llama", 4, 64, 128, 600, 0, {})
    pk = store.add_source("m", "2-res-topk-128", "sae", HOOK, 2, 64, 128, meta={"architecture": "topk"})
    store.set_source_quality(pk, {"l0": 3.0, "explained_variance": 0.9})
    merged = store.set_source_quality(pk, {"ce_loss_recovered": 0.95, "l0": 3.5, "density_histogram": {"counts": [1, 2]}})
    assert merged == {"l0": 3.5, "explained_variance": 0.9, "ce_loss_recovered": 0.95, "density_histogram": {"counts": [1, 2]}}
    meta = store.get_source("m", "2-res-topk-128").meta
    assert meta["quality"] == merged and meta["architecture"] == "topk"
    with pytest.raises(LatentpediaError):
        store.set_source_quality(pk + 1000, {"l0": 1.0})


def test_unknown_hook_is_refused_before_training(tiny, tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/atlas.db")
    request = TrainRequest(model=tiny.spec["path"], hooks=["blocks.9.hook_resid_post"], widths=[32],
                           out_dir=tmp_path / "out", activations=tmp_path)
    with pytest.raises(UnknownHookError, match="blocks.9.hook_resid_post"):
        train_saes(store, request, log=lambda *_: None)
    assert not (tmp_path / "out").exists()


def test_train_import_and_eval_end_to_end(tiny, tmp_path, monkeypatch):
    """Cached tiny-model activations -> train -> SAELens folder -> atlas source with its quality."""
    from latentpedia.dashboards.pipeline import BuildRequest, build
    from latentpedia.corpus.default import pydoc_documents

    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(d.text for d in pydoc_documents()[:40]))
    store = Store.open(f"sqlite:///{tmp_path}/atlas.db")
    build(store, BuildRequest(model=tiny.spec["path"], sources=["1-mlp"], corpus=str(corpus), n_tokens=1200, window_len=32,
                              cache_hooks=[HOOK], cache_tokens=1000, progress=False, checkpoint_seconds=0), log=lambda *_: None)
    request = TrainRequest(model=tiny.spec["path"], hooks=[HOOK], widths=[128], out_dir=tmp_path / "saes", eval_tokens=200,
                           train=dict(k=8, n_tokens=1536, batch_size=128, buffer_tokens=512, progress=False))
    [result] = train_saes(store, request, log=lambda *_: None)
    source = store.get_source(tiny.id, "2-res-topk-128")
    assert source is not None and source.status == "ready"
    quality = source.meta["quality"]
    assert 0 < quality["l0"] <= 8 and quality["explained_variance"] > 0.1 and "ce_loss_recovered" in quality
    again = eval_sae(store, "2-res-topk-128", model=tiny.spec["path"], n_tokens=200, log=lambda *_: None)
    assert again["l0"] == pytest.approx(quality["l0"])
    assert Path(result["path"], "cfg.json").exists()
