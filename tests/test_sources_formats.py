"""Every SAE format x every architecture it can hold: load, then compare `encode` with reference
math written here independently (numpy, float64), and with SAELens itself when it is installed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.sae_builders import CASES, Case, RefSAE, inputs

from latentpedia.sources import FORMATS, SAESource, detect_format, load_sae
from latentpedia.sources.architectures import ARCHITECTURES


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


def _top_k(a: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest entries of each row (last axis), zero the rest."""
    kept = np.zeros_like(a)
    idx = np.argsort(-a, axis=-1)[..., :k]
    np.put_along_axis(kept, idx, np.take_along_axis(a, idx, axis=-1), axis=-1)
    return kept


def _normalize(ref: RefSAE, x: np.ndarray) -> np.ndarray:
    if ref.normalize_activations == "constant_norm_rescale":
        return x * np.sqrt(ref.d_in) / np.linalg.norm(x, axis=-1, keepdims=True)
    if ref.normalize_activations == "layer_norm":
        x = x - x.mean(-1, keepdims=True)
        return x / (x.std(-1, ddof=1, keepdims=True) + 1e-5)
    if ref.normalize_activations == "expected_average_only_in" and ref.norm_scaling_factor:
        return x * ref.norm_scaling_factor
    return x


def reference_encode(ref: RefSAE, x: np.ndarray) -> np.ndarray:
    """The published math of each architecture, in float64."""
    W_enc, b_enc = ref.W_enc.astype(np.float64), ref.b_enc.astype(np.float64)
    x = _normalize(ref, x.astype(np.float64))
    if ref.apply_b_dec_to_input:
        x = x - ref.b_dec
    pre = x @ W_enc + b_enc
    if ref.rescale_acts_by_decoder_norm:
        pre = pre * np.linalg.norm(ref.W_dec.astype(np.float64), axis=-1)
    if ref.architecture == "relu":
        return _relu(pre)
    if ref.architecture == "topk" or (ref.architecture == "batchtopk" and ref.threshold is None):
        return _relu(_top_k(pre, ref.k))
    if ref.architecture in ("jumprelu", "batchtopk"):
        return np.where(pre > ref.threshold, _relu(pre), 0.0)
    if ref.architecture == "gated":
        magnitude = _relu(x @ (W_enc * np.exp(ref.r_mag)) + ref.b_mag)
        return np.where(pre > 0, magnitude, 0.0)
    if ref.architecture == "groupmax":
        groups = _relu(pre).reshape(*pre.shape[:-1], ref.k, -1)
        return np.where(groups == groups.max(-1, keepdims=True), groups, 0.0).reshape(pre.shape)
    raise AssertionError(f"no reference for {ref.architecture}")


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


def test_encode_matches_reference(case: Case, tmp_path) -> None:
    path = case.build(tmp_path)
    source = load_sae(path, **case.load_kwargs)
    x = inputs(case.ref.d_in)
    got = source.encode(torch.from_numpy(x))
    expected = reference_encode(case.ref, x)
    assert got.dtype == torch.float32 and got.shape == (2, 5, case.ref.d_sae)
    assert (expected > 0).any() and (expected == 0).any(), "test weights should give a mix of active/inactive"
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_source_fields(case: Case, tmp_path) -> None:
    source = load_sae(case.build(tmp_path), **case.load_kwargs)
    ref = case.ref
    assert isinstance(source, SAESource)
    assert (source.d_in, source.d_sae, source.d_out) == (ref.d_in, ref.d_sae, ref.d_out)
    assert source.hook_name == case.hook_name
    assert source.output_hook == (case.output_hook or case.hook_name)
    assert source.kind == ("transcoder" if case.output_hook else "sae")
    assert source.layer == int(case.hook_name.split(".")[1])
    assert source.format == case.format == detect_format(case.build(tmp_path / "again"))
    meta = source.meta()
    assert meta["architecture"] == ref.architecture and meta["format"] == case.format
    json.dumps(meta)  # stored as JSON


def test_decoder_rows(case: Case, tmp_path) -> None:
    source = load_sae(case.build(tmp_path), **case.load_kwargs)
    ref = case.ref
    expected = ref.decoder_rows if ref.decoder_rows is not None else ref.W_dec
    if ref.rescale_acts_by_decoder_norm:
        expected = ref.W_dec / np.linalg.norm(ref.W_dec, axis=-1, keepdims=True)
    decoder = source.decoder()
    assert decoder.dtype == torch.float32 and decoder.shape == (ref.d_sae, ref.d_out)
    np.testing.assert_allclose(decoder.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_every_architecture_and_format_has_a_case() -> None:
    assert {case.ref.architecture for case in CASES} == set(ARCHITECTURES)
    assert {case.format for case in CASES} == set(FORMATS)


def test_loading_accepts_the_weights_file_itself(tmp_path) -> None:
    case = next(c for c in CASES if c.id == "gemmascope-jumprelu")
    folder = case.build(tmp_path)
    assert detect_format(folder / "params.npz") == "gemmascope"
    assert load_sae(folder / "params.npz").hook_name == case.hook_name


def test_bfloat16_weights_load_as_float32(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    case = next(c for c in CASES if c.id == "saelens-jumprelu")
    folder = case.build(tmp_path)
    weights = folder / "sae_weights.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(weights)).items()}, str(weights))
    source = load_sae(folder)
    assert source.weights.W_enc.dtype == torch.float32
    x = torch.from_numpy(inputs())
    assert source.encode(x.to(torch.bfloat16)).dtype == torch.float32


def test_hook_name_argument_overrides_and_ids(tmp_path) -> None:
    case = next(c for c in CASES if c.id == "saelens-topk")
    source = load_sae(case.build(tmp_path), hook_name="blocks.3.hook_mlp_out")
    assert source.hook_name == "blocks.3.hook_mlp_out" and source.id == "3-mlp-topk-64"
    assert source.meta()["origin"]["hook_from"] == "argument"
    assert load_sae(case.build(tmp_path / "b"), source_id="custom").id == "custom"


def test_finetuning_scaling_factor_is_folded_into_decoder(tmp_path) -> None:
    from tests.sae_builders import random_sae, write_saelens

    ref = random_sae("relu")
    scale = np.linspace(0.5, 1.5, ref.d_sae, dtype=np.float32)
    folder = write_saelens(tmp_path / "sae", ref, extra_tensors={"scaling_factor": torch.from_numpy(scale)})
    source = load_sae(folder)
    np.testing.assert_allclose(source.decoder().numpy(), ref.W_dec * scale[:, None], rtol=1e-6)
    x = inputs()
    np.testing.assert_allclose(source.encode(torch.from_numpy(x)).numpy(), reference_encode(ref, x), atol=1e-5)
