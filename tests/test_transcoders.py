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
    # node threshold 0.95: in the tiny random-token model the embeddings carry ~70% of the
    # influence and the briefly trained latents ~7%, so the default 0.8 keeps tokens and errors only
    graph = generate_graph(tiny, "The function returns a list", sources, node_threshold=0.95,
                           config=AttributionConfig(max_feature_nodes=64))
    kinds = {n["feature_type"] for n in graph["nodes"]}
    assert "cross layer transcoder" in kinds and "logit" in kinds
    assert graph["metadata"]["transcoder_list"] == [r["name"] for r in trained]
    assert graph["metadata"]["info"]["n_expanded_features"] <= 64


# --- circuit-tracer's transcoder format -----------------------------------------------------------

def _ct_set(folder, n_layers=3, d=D_MODEL, width=WIDTH, config="feature_input_hook: mlp.hook_in\n"):
    from tests.test_circuit_oracle import save_transcoders

    save_transcoders(folder, n_layers, d, width)
    if config is None:
        (folder / "config.yaml").unlink()
    else:
        (folder / "config.yaml").write_text("model_kind: transcoder_set\n" + config)
    return folder


def test_circuit_tracer_layer_files_load_with_their_skip(tmp_path):
    from safetensors.torch import load_file

    folder = _ct_set(tmp_path / "set")
    source = load_sae(folder / "layer_1.safetensors")
    stored = load_file(str(folder / "layer_1.safetensors"))
    assert (source.kind, source.format, source.layer) == ("transcoder", "circuit_tracer", 1)
    assert (source.hook_name, source.output_hook) == transcoder_hooks(1)
    assert source.weights.architecture == "jumprelu" and source.d_sae == WIDTH
    x = torch.randn(5, D_MODEL)
    pre = x @ stored["W_enc"].T + stored["b_enc"]  # circuit-tracer: F.linear(x, W_enc, b_enc), JumpReLU
    expected = pre * (pre > stored["activation_function.threshold"])
    torch.testing.assert_close(source.encode(x), expected)
    torch.testing.assert_close(skip_of(source), stored["W_skip"].T)  # theirs adds x @ W_skip.T


def test_circuit_tracer_sets_need_one_layer_named_and_a_known_layout(tmp_path):
    folder = _ct_set(tmp_path / "set")
    with pytest.raises(InvalidInputError, match="3 layers .*pass one of the layer files"):
        load_sae(folder)
    relu = _ct_set(tmp_path / "plain", n_layers=1, config=None)
    from safetensors.torch import load_file, save_file

    state = load_file(str(relu / "layer_0.safetensors"))
    del state["activation_function.threshold"], state["W_skip"]
    save_file(state, str(relu / "layer_0.safetensors"))
    source = load_sae(relu)  # a folder with one layer stands for it; no config: MLP in -> out
    assert source.weights.architecture == "relu" and source.hook_name == transcoder_hooks(0)[0]
    assert getattr(source, "skip", None) is None
    clt = _ct_set(tmp_path / "clt", n_layers=1, config="")
    (clt / "config.yaml").write_text("model_kind: cross_layer_transcoder\n")
    with pytest.raises(InvalidInputError, match="cross_layer_transcoder"):
        load_sae(clt / "layer_0.safetensors")
    odd = _ct_set(tmp_path / "odd", n_layers=1, config="feature_input_hook: hook_resid_pre\n")
    with pytest.raises(InvalidInputError, match="feature_input_hook 'hook_resid_pre'"):
        load_sae(odd / "layer_0.safetensors")
    bad = _ct_set(tmp_path / "bad", n_layers=1)
    state = load_file(str(bad / "layer_0.safetensors"))
    state["W_skip"] = state["W_skip"][:, :3].contiguous()
    save_file(state, str(bad / "layer_0.safetensors"))
    with pytest.raises(InvalidInputError, match="W_skip"):
        load_sae(bad / "layer_0.safetensors")


def test_circuit_tracer_transcoders_feed_an_attribution_graph(tiny, tmp_path):
    folder = _ct_set(tmp_path / "set", n_layers=N_LAYERS, config="feature_input_hook: ln2.hook_normalized\n"
                     "feature_output_hook: hook_mlp_out\n")
    sources = [load_sae(folder / f"layer_{i}.safetensors") for i in range(N_LAYERS)]
    graph = generate_graph(tiny, "The function returns a list", sources, config=AttributionConfig(max_feature_nodes=32))
    assert any(n["feature_type"] == "cross layer transcoder" for n in graph["nodes"]) and graph["links"]
