"""Malformed SAE input: every problem is an InvalidInputError naming the file and the problem."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.sae_builders import (
    CASES,
    random_sae,
    write_dictionary_learning,
    write_gemmascope,
    write_gemmascope2,
    write_saelens,
    write_sparsify,
)
from safetensors.torch import load_file, save_file

from latentpedia.errors import InvalidInputError
from latentpedia.sources import detect_format, load_sae


def _error(path: Path, **kwargs) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        load_sae(path, **kwargs)
    return info.value


def _assert_error(path: Path, file: Path, *fragments: str, **kwargs) -> None:
    """Loading `path` fails, blaming `file`, with every fragment in the message."""
    err = _error(path, **kwargs)
    assert err.path == file, str(err)
    for fragment in fragments:
        assert fragment in str(err), str(err)
    assert str(file) in str(err)


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_tensors(path: Path, edit: Callable[[dict], None]) -> None:
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def _saelens(tmp_path: Path, arch: str = "relu", **settings) -> Path:
    return write_saelens(tmp_path / "sae", random_sae(arch, **settings))


# --- missing or unreadable files ---------------------------------------------------------------

def test_path_that_does_not_exist(tmp_path) -> None:
    _assert_error(tmp_path / "nope", tmp_path / "nope", "no such file or folder")


def test_folder_without_any_sae(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    _assert_error(tmp_path, tmp_path, "no SAE found here", "sae_weights.safetensors", "params.npz", "ae.pt")
    with pytest.raises(InvalidInputError):
        detect_format(tmp_path)


@pytest.mark.parametrize("write, cfg_name", [
    (lambda root: write_saelens(root / "sae", random_sae("relu")), "cfg.json"),
    (lambda root: write_sparsify(root / "run", random_sae("topk")), "cfg.json"),
    (lambda root: write_dictionary_learning(root / "t0", random_sae("relu"), "AutoEncoder"), "config.json"),
], ids=["saelens", "sparsify", "dictionary_learning"])
def test_missing_config_file(tmp_path, write, cfg_name) -> None:
    folder = write(tmp_path)
    (folder / cfg_name).unlink()
    _assert_error(folder, folder / cfg_name, f"missing config file '{cfg_name}'")


@pytest.mark.parametrize("content, problem", [("{not json", "unreadable JSON"), ("[1, 2]", "expected a JSON object")])
def test_unreadable_json(tmp_path, content, problem) -> None:
    folder = _saelens(tmp_path)
    (folder / "cfg.json").write_text(content)
    _assert_error(folder, folder / "cfg.json", problem)


@pytest.mark.parametrize("write, weights", [
    (lambda root: write_saelens(root / "sae", random_sae("relu")), "sae_weights.safetensors"),
    (lambda root: write_gemmascope(root / "layer_1", random_sae("jumprelu")), "params.npz"),
    (lambda root: write_dictionary_learning(root / "t0", random_sae("relu"), "AutoEncoder"), "ae.pt"),
], ids=["safetensors", "npz", "torch"])
def test_corrupt_weights_file(tmp_path, write, weights) -> None:
    folder = write(tmp_path)
    (folder / weights).write_bytes(b"\x00garbage" * 10)
    _assert_error(folder, folder / weights, "unreadable")


class _Payload:
    """Not a tensor: torch.load(weights_only=True) must refuse to unpickle it."""


def test_torch_file_with_arbitrary_objects_is_refused(tmp_path) -> None:
    folder = write_dictionary_learning(tmp_path / "t0", random_sae("relu"), "AutoEncoder")
    torch.save({"encoder.weight": _Payload()}, folder / "ae.pt")
    _assert_error(folder, folder / "ae.pt", "unreadable torch file")


# --- missing keys ------------------------------------------------------------------------------

def test_missing_tensor(tmp_path) -> None:
    folder = _saelens(tmp_path)
    _edit_tensors(folder / "sae_weights.safetensors", lambda t: t.pop("W_dec"))
    _assert_error(folder, folder / "sae_weights.safetensors", "missing tensor 'W_dec'")


def test_missing_threshold_for_jumprelu(tmp_path) -> None:
    folder = _saelens(tmp_path, "jumprelu")
    _edit_tensors(folder / "sae_weights.safetensors", lambda t: t.pop("threshold"))
    _assert_error(folder, folder / "sae_weights.safetensors", "'threshold'", "jumprelu")


def test_missing_k_for_topk(tmp_path) -> None:
    folder = _saelens(tmp_path, "topk")
    _edit_json(folder / "cfg.json", lambda c: c.pop("k"))
    _assert_error(folder, folder / "cfg.json", "missing setting 'k'", "topk")


def test_missing_sparsify_encoder(tmp_path) -> None:
    folder = write_sparsify(tmp_path / "run", random_sae("topk"))
    _edit_tensors(folder / "sae.safetensors", lambda t: t.pop("encoder.weight"))
    _assert_error(folder, folder / "sae.safetensors", "missing tensor 'encoder.weight'")


def test_missing_dictionary_learning_keys(tmp_path) -> None:
    folder = write_dictionary_learning(tmp_path / "t0", random_sae("gated"), "GatedAutoEncoder")
    state = torch.load(folder / "ae.pt", weights_only=True)
    del state["gate_bias"]
    torch.save(state, folder / "ae.pt")
    _assert_error(folder, folder / "ae.pt", "missing tensor 'gate_bias'")
    _edit_json(folder / "config.json", lambda c: c["trainer"].pop("dict_class"))
    _assert_error(folder, folder / "config.json", "missing key 'trainer.dict_class'")


def test_missing_gemmascope_key(tmp_path) -> None:
    ref = random_sae("jumprelu")
    folder = tmp_path / "layer_3"
    folder.mkdir()
    np.savez(folder / "params.npz", W_enc=ref.W_enc, W_dec=ref.W_dec, b_enc=ref.b_enc, b_dec=ref.b_dec)
    _assert_error(folder, folder / "params.npz", "missing tensor 'threshold'")


# --- shapes and values -------------------------------------------------------------------------

def test_wrong_bias_shape(tmp_path) -> None:
    folder = _saelens(tmp_path)
    _edit_tensors(folder / "sae_weights.safetensors", lambda t: t.update(b_enc=t["b_enc"][:63].clone()))
    _assert_error(folder, folder / "sae_weights.safetensors", "'b_enc' has shape [63], expected [64]")


def test_wrong_shape_is_reported_in_the_files_layout(tmp_path) -> None:
    folder = write_dictionary_learning(tmp_path / "t0", random_sae("relu"), "AutoEncoder")
    state = torch.load(folder / "ae.pt", weights_only=True)
    state["decoder.weight"] = state["decoder.weight"][:, :63].clone()  # [d_in, d_sae - 1]
    torch.save(state, folder / "ae.pt")
    _assert_error(folder, folder / "ae.pt",
                  "'decoder.weight' (our W_dec, transposed) has shape [16, 63], expected [16, 64]")


def test_non_matrix_encoder(tmp_path) -> None:
    folder = write_sparsify(tmp_path / "run", random_sae("topk"))
    _edit_tensors(folder / "sae.safetensors", lambda t: t.update({"encoder.weight": torch.zeros(64 * 16)}))
    _assert_error(folder, folder / "sae.safetensors", "'encoder.weight'", "must be 2-D")


def test_config_width_disagrees_with_weights(tmp_path) -> None:
    folder = _saelens(tmp_path)
    _edit_json(folder / "cfg.json", lambda c: c.update(d_in=17))
    _assert_error(folder, folder / "cfg.json", "config says d_in=17 but the weights have d_in=16")


def test_input_width_differs_from_model_hook(tmp_path) -> None:
    folder = _saelens(tmp_path)
    _assert_error(folder, folder / "sae_weights.safetensors", "d_in=16", "width 576", expected_d_in=576)
    assert load_sae(folder, expected_d_in=16).d_in == 16


@pytest.mark.parametrize("fmt", ["saelens", "gemmascope"])
def test_nan_and_inf_values(tmp_path, fmt) -> None:
    ref = random_sae("jumprelu")
    ref.W_dec = ref.W_dec.copy()
    ref.W_dec[0, :2] = np.nan
    ref.W_dec[3, 1] = np.inf
    folder = write_saelens(tmp_path / "s", ref) if fmt == "saelens" else write_gemmascope(tmp_path / "layer_2", ref)
    weights = folder / ("sae_weights.safetensors" if fmt == "saelens" else "params.npz")
    _assert_error(folder, weights, "'W_dec' contains 2 NaN and 1 Inf values")


# --- settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("edit, fragment", [
    (lambda c: c.update(architecture="mystery"), "unknown SAE architecture 'mystery'"),
    (lambda c: c.update(architecture="standard", activation_fn="tanh-relu"), "unknown SAE architecture"),
    (lambda c: c.update(normalize_activations="covariance_whitening"), "unsupported normalize_activations"),
    (lambda c: c["metadata"].update(hook_head_index=3), "single attention head"),
], ids=["architecture", "activation", "normalization", "head"])
def test_unsupported_saelens_settings(tmp_path, edit, fragment) -> None:
    folder = _saelens(tmp_path)
    _edit_json(folder / "cfg.json", edit)
    _assert_error(folder, folder / "cfg.json", fragment)


def test_unknown_dictionary_learning_class(tmp_path) -> None:
    folder = write_dictionary_learning(tmp_path / "t0", random_sae("relu"), "AutoEncoder")
    _edit_json(folder / "config.json", lambda c: c["trainer"].update(dict_class="FancyAutoEncoder"))
    _assert_error(folder, folder / "config.json", "unknown SAE architecture", "FancyAutoEncoder")


def test_unknown_gemmascope2_architecture(tmp_path) -> None:
    folder = write_gemmascope2(tmp_path / "resid_post/layer_1_width_16k_l0_small", random_sae("jumprelu"),
                               config={"architecture": "relu", "hf_hook_point_in": "model.layers.1.output"})
    _assert_error(folder, folder / "config.json", "unknown SAE architecture 'Gemma Scope 2 relu'")


def test_k_larger_than_d_sae(tmp_path) -> None:
    folder = _saelens(tmp_path, "topk")
    _edit_json(folder / "cfg.json", lambda c: c.update(k=100))
    _assert_error(folder, folder / "cfg.json", "k=100 must be between 1 and d_sae=64")


def test_b_dec_subtraction_needs_input_width(tmp_path) -> None:
    ref = random_sae("relu", d_out=12)
    folder = write_saelens(tmp_path / "tc", ref, hook_name_out="blocks.6.hook_mlp_out")
    _edit_json(folder / "cfg.json", lambda c: c.update(apply_b_dec_to_input=True))
    _assert_error(folder, folder / "cfg.json", "apply_b_dec_to_input")


# --- hooks -------------------------------------------------------------------------------------

def test_hook_that_cannot_be_determined_asks_for_hook_name(tmp_path) -> None:
    folder = write_sparsify(tmp_path / "run", random_sae("topk"), hookpoint="embed_tokens")
    _assert_error(folder, folder / "cfg.json", "cannot tell which hook point", "pass hook_name", "embed_tokens")
    assert load_sae(folder, hook_name="blocks.0.hook_resid_pre").hook_name == "blocks.0.hook_resid_pre"


def test_gemmascope_without_layer_folder_asks_for_hook_name(tmp_path) -> None:
    folder = write_gemmascope(tmp_path / "my_sae", random_sae("jumprelu"))
    _assert_error(folder, folder / "params.npz", "pass hook_name", "layer_N")


def test_saelens_without_hook(tmp_path) -> None:
    folder = _saelens(tmp_path)
    _edit_json(folder / "cfg.json", lambda c: c["metadata"].pop("hook_name"))
    _assert_error(folder, folder / "cfg.json", "pass hook_name")


def test_hook_name_not_in_a_block(tmp_path) -> None:
    _assert_error(_saelens(tmp_path), tmp_path / "sae" / "cfg.json", "unsupported hook point", hook_name="hook_embed")


def test_sparsify_run_with_several_hookpoints(tmp_path) -> None:
    run = tmp_path / "run"
    write_sparsify(run, random_sae("topk"), hookpoint="layers.2")
    write_sparsify(run, random_sae("topk"), hookpoint="layers.4")
    _assert_error(run, run, "2 hookpoints", "layers.2, layers.4")
    assert detect_format(run) == "sparsify"
    assert load_sae(run / "layers.4").hook_name == "blocks.4.hook_resid_post"


def test_transcoder_without_output_hook(tmp_path) -> None:
    folder = write_saelens(tmp_path / "tc", random_sae("relu", apply_b_dec_to_input=False),
                           hook_name="blocks.6.hook_resid_mid", hook_name_out="blocks.6.hook_mlp_out")
    _edit_json(folder / "cfg.json", lambda c: c["metadata"].pop("hook_name_out"))
    _assert_error(folder, folder / "cfg.json", "hook_name_out")


# --- loading is read-only ----------------------------------------------------------------------

def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_loading_writes_nothing(tmp_path, case) -> None:
    path = case.build(tmp_path)
    before = _snapshot(tmp_path)
    os.chmod(tmp_path, 0o555)  # a write attempt would also fail loudly for non-root users
    try:
        load_sae(path).encode(torch.zeros(1, case.ref.d_in))
    finally:
        os.chmod(tmp_path, 0o755)
    assert _snapshot(tmp_path) == before
