"""Per-layer transcoders trained in one streaming pass on the tiny LLaMA: they learn, export to a
SAELens folder the loader reads back as the same function, resume exactly, evaluate, and feed
an attribution graph."""

from __future__ import annotations

import pytest
import torch

from latentpedia.errors import InvalidInputError
from latentpedia.experiments.graph import AttributionConfig, generate_graph
from latentpedia.models import load_model, run_with_cache
from latentpedia.sources import load_sae
from latentpedia.sources.hooknames import transcoder_hooks
from latentpedia.sources.transcoder_skip import skip_of
from latentpedia.train.transcoder_evals import evaluate_transcoders, predict
from latentpedia.train.transcoders import TranscoderConfig, TranscoderTrainer
from tests.tiny import D_MODEL, N_LAYERS, tiny_llama

WIDTH, K = 96, 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama"))


@pytest.fixture(scope="module")
def windows(tiny):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, tiny.vocab_size, (260, 33), generator=g)  # 240 to train (one pass), 20 held out
    ids[:, 0] = tiny.bos_id
    return ids


def _config(out, **overrides) -> TranscoderConfig:
    values = dict(out_dir=out, model_id="tiny", width=WIDTH, k=K, n_tokens=6000, windows_per_step=4, lr=1e-2,
                  progress=False, checkpoint_seconds=1e9)
    return TranscoderConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def trained(tiny, windows, tmp_path_factory):
    out = tmp_path_factory.mktemp("tc")
    return TranscoderTrainer(tiny, windows[:240], _config(out, skip=True), log=lambda *_: None).run()


def test_every_layer_gets_a_transcoder_that_learns(trained):
    assert [r["layer"] for r in trained] == list(range(N_LAYERS))
    # the tiny model's gated MLPs are close to random quadratic forms, far from sparse: modest EV
    assert sum(r["training_metrics"]["ev"] for r in trained) / N_LAYERS > 0.05
    for result in trained:
        assert result["name"] == f"{result['layer']}-tc-skip-topk-96"
        assert result["tokens"] >= 6000
        assert result["training_metrics"]["ev"] > 0.02, result
        assert 1 < result["training_metrics"]["l0"] <= K


def test_export_loads_back_as_the_trained_function(tiny, windows, trained):
    source = load_sae(trained[1]["path"])
    assert source.kind == "transcoder"
    assert (source.hook_name, source.output_hook) == transcoder_hooks(1)
    assert source.d_in == source.d_out == D_MODEL and source.d_sae == WIDTH
    assert skip_of(source).shape == (D_MODEL, D_MODEL)
    acts = run_with_cache(tiny, windows[240:], list(transcoder_hooks(1)))
    x, y = (acts[name][:, 1:].reshape(-1, D_MODEL) for name in transcoder_hooks(1))
    err = (predict(source, x) - y).pow(2).sum()
    assert float(1 - err / (y - y.mean(0)).pow(2).sum()) > 0.15  # held-out windows
    assert int((source.encode(x) > 0).sum(-1).max()) <= K


def test_evaluation_per_layer_and_whole_replacement(tiny, windows, trained):
    sources = [load_sae(r["path"]) for r in trained]
    metrics = evaluate_transcoders(tiny, sources, windows[240:])
    assert sorted(metrics["layers"]) == list(range(N_LAYERS))
    assert all(m["explained_variance"] > 0.05 and m["l0"] <= K for m in metrics["layers"].values())
    whole = metrics["replacement"]
    assert whole["ce_loss_zero"] != whole["ce_loss_clean"]
    assert whole["ce_loss_recovered"] > 0.2
    assert whole["kl_div"] >= 0


def test_resumed_training_ends_with_the_same_weights(tiny, windows, tmp_path):
    config = _config(tmp_path / "a", layers=[0, 2], n_tokens=1024)
    straight = TranscoderTrainer(tiny, windows[:40], config, log=lambda *_: None).run()
    resumed_config = _config(tmp_path / "b", layers=[0, 2], n_tokens=1024)
    assert TranscoderTrainer(tiny, windows[:40], resumed_config, log=lambda *_: None).run(stop_after=3) == []
    lines = []
    resumed = TranscoderTrainer(tiny, windows[:40], resumed_config, log=lines.append).run()
    assert any("resuming" in line for line in lines)
    for a, b in zip(straight, resumed):
        wa, wb = load_sae(a["path"]).weights, load_sae(b["path"]).weights
        torch.testing.assert_close(wa.W_enc, wb.W_enc)
        torch.testing.assert_close(wa.W_dec, wb.W_dec)


def test_bad_settings_are_refused(tiny, windows, tmp_path):
    with pytest.raises(InvalidInputError, match="layer 9"):
        TranscoderTrainer(tiny, windows, _config(tmp_path, layers=[9]))
    with pytest.raises(InvalidInputError, match="k must"):
        TranscoderTrainer(tiny, windows, _config(tmp_path, k=WIDTH + 1))


def test_trained_transcoders_make_an_attribution_graph(tiny, trained):
    sources = [load_sae(r["path"], source_id=r["name"]) for r in trained]
    graph = generate_graph(tiny, "The function returns a list", sources,
                           config=AttributionConfig(max_feature_nodes=64))
    kinds = {n["feature_type"] for n in graph["nodes"]}
    assert "cross layer transcoder" in kinds and "logit" in kinds
    assert graph["metadata"]["transcoder_list"] == [r["name"] for r in trained]
    assert graph["metadata"]["info"]["n_expanded_features"] <= 64
