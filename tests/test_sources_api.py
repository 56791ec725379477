"""Source ids, hook-name inference, NeuronSource, and the import-time promise (no transformers)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from latentpedia.sources import NeuronSource, Source, hook_kind_short, source_id, width_label
from latentpedia.sources.hooknames import (
    from_gemma_scope_path,
    from_hf_hook_point,
    from_module_path,
    from_submodule_name,
)


def test_source_id() -> None:
    assert source_id(6, "res", "topk-4k") == "6-res-topk-4k"
    assert source_id(6, "mlp") == "6-mlp"


@pytest.mark.parametrize("n, label", [(64, "64"), (4096, "4k"), (16384, "16k"), (4608, "4.5k"),
                                      (1 << 20, "1m"), (3000, "3k"), (1000, "1k")])
def test_width_label(n, label) -> None:
    assert width_label(n) == label


@pytest.mark.parametrize("hook, short", [
    ("blocks.6.hook_resid_post", "res"), ("blocks.6.hook_resid_pre", "res"), ("blocks.6.hook_mlp_out", "mlp"),
    ("blocks.6.mlp.hook_post", "mlp"), ("blocks.6.hook_attn_out", "att"), ("blocks.6.attn.hook_z", "att"),
])
def test_hook_kind_short(hook, short) -> None:
    assert hook_kind_short(hook) == short


@pytest.mark.parametrize("path, transcode, hooks", [
    ("layers.6", False, ("blocks.6.hook_resid_post", None)),
    ("model.layers.6", False, ("blocks.6.hook_resid_post", None)),
    ("gpt_neox.layers.3", False, ("blocks.3.hook_resid_post", None)),
    ("transformer.h.2.mlp", False, ("blocks.2.hook_mlp_out", None)),
    ("layers.6.self_attn", False, ("blocks.6.hook_attn_out", None)),
    ("layers.6.mlp", True, ("blocks.6.ln2.hook_normalized", "blocks.6.hook_mlp_out")),
    ("blocks.4.hook_resid_mid", False, ("blocks.4.hook_resid_mid", None)),
    ("layers.6.input_layernorm", False, None),
    ("embed_tokens", False, None),
])
def test_sparsify_hookpoints(path, transcode, hooks) -> None:
    assert from_module_path(path, transcode=transcode) == hooks


def test_dictionary_learning_submodules() -> None:
    assert from_submodule_name(["resid_post_layer_3"]) == ("blocks.3.hook_resid_post", None)
    assert from_submodule_name(["", "10_32768", "mlp_out_layer4"]) == ("blocks.4.hook_mlp_out", None)
    assert from_submodule_name(["attn_out_layer2"]) == ("blocks.2.hook_attn_out", None)
    assert from_submodule_name(["trainer_0"]) is None


@pytest.mark.parametrize("path, hooks", [
    ("gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82", ("blocks.12.hook_resid_post", None)),
    ("gemma-scope-9b-pt-mlp-canonical/layer_3/width_16k/canonical", ("blocks.3.hook_mlp_out", None)),
    ("models--google--gemma-scope-2b-pt-att/snapshots/abc/layer_5/width_16k/average_l0_40",
     ("blocks.5.attn.hook_z", None)),
    ("gemma-scope-2b-pt-transcoders/layer_7/width_16k/average_l0_9",
     ("blocks.7.ln2.hook_normalized", "blocks.7.hook_mlp_out")),
    ("gemma-scope-2-1b-pt/mlp_out/layer_9_width_16k_l0_medium", ("blocks.9.hook_mlp_out", None)),
    ("gemma-scope-2-1b-pt/resid_post_all/layer_9_width_262k_l0_big", ("blocks.9.hook_resid_post", None)),
    ("saes/layer_12/width_16k/average_l0_82", ("blocks.12.hook_resid_post", None)),
])
def test_gemma_scope_paths(tmp_path, path, hooks) -> None:
    folder = tmp_path / path
    folder.mkdir(parents=True)
    assert from_gemma_scope_path(folder)[0] == hooks


def test_gemma_scope_path_without_site_says_it_assumed_the_residual_stream(tmp_path) -> None:
    folder = tmp_path / "layer_1" / "width_16k"
    folder.mkdir(parents=True)
    assert "assumed" in from_gemma_scope_path(folder)[1]


@pytest.mark.parametrize("point, hook", [
    ("model.layers.12.output", "blocks.12.hook_resid_post"),
    ("model.language_model.layers.3.output", "blocks.3.hook_resid_post"),
    ("model.layers.12.self_attn.o_proj.input", "blocks.12.attn.hook_z"),
    ("model.layers.12.post_feedforward_layernorm.output", "blocks.12.hook_mlp_out"),
    ("model.layers.12.pre_feedforward_layernorm.output", "blocks.12.ln2.hook_normalized"),
    ("model.embed_tokens.output", None),
])
def test_gemma_scope_2_hook_points(point, hook) -> None:
    assert from_hf_hook_point(point) == hook


# --- NeuronSource ------------------------------------------------------------------------------

class _TinyMLP(torch.nn.Module):
    def __init__(self, d_model: int = 8, d_mlp: int = 32):
        super().__init__()
        self.down = torch.nn.Linear(d_mlp, d_model, bias=False)


@pytest.fixture
def tiny_model(monkeypatch):
    """A stand-in LoadedModel plus a stand-in `models.hooks.write_matrix` (down_proj.weight.T)."""
    torch.manual_seed(0)
    mlps = {2: _TinyMLP(), 5: _TinyMLP()}
    model = types.SimpleNamespace(id="tiny", d_mlp=32, d_model=8, mlps=mlps)
    calls = []

    def write_matrix(m, name):
        calls.append(name)
        return m.mlps[int(name.split(".")[1])].down.weight.T

    fake = types.ModuleType("latentpedia.models.hooks")
    fake.write_matrix = write_matrix
    monkeypatch.setitem(sys.modules, "latentpedia.models.hooks", fake)
    return model, calls


def test_neuron_source(tiny_model) -> None:
    model, calls = tiny_model
    source = NeuronSource(model, 5)
    assert isinstance(source, Source)
    assert (source.id, source.kind, source.layer) == ("5-mlp", "mlp", 5)
    assert source.hook_name == "blocks.5.mlp.hook_post"
    assert source.output_hook == "blocks.5.hook_mlp_out"
    assert source.d_in == source.d_sae == 32
    x = torch.randn(2, 3, 32, dtype=torch.float64)
    assert source.encode(x).dtype == torch.float32
    torch.testing.assert_close(source.encode(x), x.float())
    decoder = source.decoder()
    assert calls == ["blocks.5.mlp.hook_post"]
    assert decoder.shape == (32, 8) and decoder.dtype == torch.float32
    torch.testing.assert_close(decoder, model.mlps[5].down.weight.T)
    # Row i is what one unit of neuron i adds to the residual stream.
    one_hot = torch.zeros(32)
    one_hot[7] = 1.0
    torch.testing.assert_close(model.mlps[5].down(one_hot), decoder[7])
    assert source.meta()["model"] == "tiny"


def test_importing_sources_does_not_import_transformers() -> None:
    code = "import sys, latentpedia.sources; assert 'transformers' not in sys.modules, 'transformers imported'"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
