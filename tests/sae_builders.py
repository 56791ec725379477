"""Small SAEs with known random weights, written in every on-disk format we read.

`random_sae(arch)` makes reference weights (numpy, canonical layout: W_enc [d_in, d_sae],
W_dec [d_sae, d_out]); the `write_*` functions store them as each tool does; `CASES` pairs every
format with every architecture it can hold (plus config variants), for parametrized tests.
A new architecture or format only needs a writer and a case here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

D_IN, D_SAE, K = 16, 64, 8


@dataclass
class RefSAE:
    """Reference weights plus what the reference encoder must do with them."""

    architecture: str  # relu | topk | batchtopk | jumprelu | gated | groupmax
    W_enc: np.ndarray
    b_enc: np.ndarray  # gated: the gate bias
    W_dec: np.ndarray
    b_dec: np.ndarray
    threshold: np.ndarray | None = None
    k: int | None = None
    r_mag: np.ndarray | None = None
    b_mag: np.ndarray | None = None
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    norm_scaling_factor: float | None = None
    rescale_acts_by_decoder_norm: bool = False
    decoder_rows: np.ndarray | None = None  # expected decoder() when it differs from W_dec

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def d_out(self) -> int:
        return self.W_dec.shape[1]


def random_sae(architecture: str, *, d_in: int = D_IN, d_sae: int = D_SAE, d_out: int | None = None,
               seed: int = 0, k: int = K, **settings: Any) -> RefSAE:
    """Random weights giving a mix of active and inactive latents on x ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    d_out = d_out or d_in

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    ref = RefSAE(
        architecture=architecture,
        W_enc=normal(d_in, d_sae, scale=d_in**-0.5),
        b_enc=normal(d_sae, scale=0.2),
        W_dec=normal(d_sae, d_out, scale=d_out**-0.5),
        b_dec=normal(d_out, scale=0.3),
    )
    if architecture in ("topk", "batchtopk", "groupmax"):
        ref.k = k
    if architecture in ("jumprelu", "batchtopk"):
        ref.threshold = rng.uniform(0.05, 0.6, d_sae).astype(np.float32)
    if architecture == "gated":
        ref.r_mag, ref.b_mag = normal(d_sae, scale=0.3), normal(d_sae, scale=0.2)
    return replace(ref, **settings)


def inputs(d_in: int = D_IN, seed: int = 1) -> np.ndarray:
    """[2, 5, d_in] activations: a batch of two five-token sequences."""
    return np.random.default_rng(seed).standard_normal((2, 5, d_in)).astype(np.float32)


def _t(array: np.ndarray | float) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.float32))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


# --- SAELens -----------------------------------------------------------------------------------

_SAELENS_ARCH = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated",
                 "batchtopk": "batchtopk"}


def saelens_tensors(ref: RefSAE) -> dict[str, torch.Tensor]:
    """SAELens state dict: our layout; gated uses b_gate; training BatchTopK a scalar threshold."""
    bias = "b_gate" if ref.architecture == "gated" else "b_enc"
    tensors = {"W_enc": _t(ref.W_enc), bias: _t(ref.b_enc), "W_dec": _t(ref.W_dec), "b_dec": _t(ref.b_dec)}
    if ref.architecture == "jumprelu":
        tensors["threshold"] = _t(ref.threshold)
    if ref.architecture == "batchtopk" and ref.threshold is not None:
        tensors["topk_threshold"] = _t(ref.threshold[0])
    if ref.architecture == "gated":
        tensors.update(r_mag=_t(ref.r_mag), b_mag=_t(ref.b_mag))
    return tensors


def saelens_cfg(ref: RefSAE, hook_name: str, *, style: str = "new", hook_name_out: str | None = None) -> dict:
    """cfg.json as SAELens >= 6 ("new"), 3.x-5.x ("old") or 0.x-2.x ("very_old") wrote it."""
    arch = _SAELENS_ARCH[ref.architecture]
    if hook_name_out:
        arch = "jumprelu_transcoder" if ref.architecture == "jumprelu" else "transcoder"
    if style == "new":
        return _saelens_cfg_v6(ref, arch, hook_name, hook_name_out)
    cfg = {"d_in": ref.d_in, "d_sae": ref.d_sae, "dtype": "float32", "device": "cpu", "model_name": "tiny",
           "hook_layer": 6, "hook_head_index": None, "context_size": 128, "prepend_bos": True,
           "apply_b_dec_to_input": ref.apply_b_dec_to_input,
           "activation_fn_str": "topk" if ref.architecture == "topk" else "relu",
           "normalize_activations": ref.normalize_activations, "finetuning_scaling_factor": False}
    if ref.architecture == "topk":
        cfg["activation_fn_kwargs"] = {"k": ref.k}
    if style == "very_old":
        return {**cfg, "hook_point": hook_name, "normalize_activations": ref.normalize_activations != "none"}
    return {**cfg, "hook_name": hook_name, "architecture": "standard" if ref.architecture == "topk" else arch,
            "sae_lens_training_version": "4.0.0"}


def _saelens_cfg_v6(ref: RefSAE, arch: str, hook_name: str, hook_name_out: str | None) -> dict:
    metadata = {"hook_name": hook_name, "model_name": "tiny", "sae_lens_version": "6.5.0",
                "sae_lens_training_version": "6.5.0", "prepend_bos": True}
    cfg = {"architecture": arch, "d_in": ref.d_in, "d_sae": ref.d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": ref.apply_b_dec_to_input, "normalize_activations": ref.normalize_activations,
           "reshape_activations": "none", "metadata": metadata}
    if ref.k is not None:
        cfg["k"] = ref.k
    if ref.rescale_acts_by_decoder_norm:
        cfg["rescale_acts_by_decoder_norm"] = True
    if hook_name_out:
        cfg["d_out"] = ref.d_out
        metadata["hook_name_out"] = hook_name_out
    return cfg


def write_saelens(folder: Path, ref: RefSAE, *, hook_name: str = "blocks.6.hook_resid_post",
                  style: str = "new", hook_name_out: str | None = None,
                  extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A SAELens folder (plus an ignored sparsity.safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "cfg.json", saelens_cfg(ref, hook_name, style=style, hook_name_out=hook_name_out))
    save_file({**saelens_tensors(ref), **(extra_tensors or {})}, str(folder / "sae_weights.safetensors"))
    save_file({"sparsity": torch.full((ref.d_sae,), -3.0)}, str(folder / "sparsity.safetensors"))
    return folder


# --- sparsify ----------------------------------------------------------------------------------

def write_sparsify(run: Path, ref: RefSAE, *, hookpoint: str = "layers.6", transcode: bool = False) -> Path:
    """One hookpoint of a sparsify run: nn.Linear encoder, W_dec [d_sae, d_in]."""
    folder = run / hookpoint
    _write_json(folder / "cfg.json", {
        "activation": "groupmax" if ref.architecture == "groupmax" else "topk", "expansion_factor": 32,
        "normalize_decoder": True, "num_latents": ref.d_sae, "k": ref.k, "multi_topk": False,
        "skip_connection": False, "transcode": transcode, "d_in": ref.d_in})
    save_file({"encoder.weight": _t(ref.W_enc.T.copy()), "encoder.bias": _t(ref.b_enc),
               "W_dec": _t(ref.W_dec), "b_dec": _t(ref.b_dec)}, str(folder / "sae.safetensors"))
    _write_json(run / "config.json", {"sae": {"k": ref.k}, "hookpoints": [hookpoint]})
    return folder


# --- dictionary_learning -----------------------------------------------------------------------

def dictionary_learning_state(ref: RefSAE, dict_class: str) -> dict[str, torch.Tensor]:
    """`ae.state_dict()` of each dictionary_learning class holding `ref`."""
    enc, dec = _t(ref.W_enc.T.copy()), _t(ref.W_dec.T.copy())
    if dict_class == "JumpReluAutoEncoder":
        return {"W_enc": _t(ref.W_enc), "b_enc": _t(ref.b_enc), "W_dec": _t(ref.W_dec),
                "b_dec": _t(ref.b_dec), "threshold": _t(ref.threshold)}
    if dict_class == "GatedAutoEncoder":
        return {"decoder_bias": _t(ref.b_dec), "encoder.weight": enc, "r_mag": _t(ref.r_mag),
                "gate_bias": _t(ref.b_enc), "mag_bias": _t(ref.b_mag), "decoder.weight": dec}
    state = {"encoder.weight": enc, "encoder.bias": _t(ref.b_enc), "decoder.weight": dec}
    if dict_class == "AutoEncoder":
        return {"bias": _t(ref.b_dec), **state}
    if dict_class == "AutoEncoderNew":
        return {**state, "decoder.bias": _t(ref.b_dec)}
    threshold = -1.0 if ref.threshold is None else float(ref.threshold[0])
    return {"k": torch.tensor(ref.k, dtype=torch.int), "threshold": torch.tensor(threshold), **state,
            "b_dec": _t(ref.b_dec)}


def write_dictionary_learning(folder: Path, ref: RefSAE, dict_class: str, *,
                              submodule_name: str = "resid_post_layer_6") -> Path:
    """A `trainer_N/` folder: ae.pt + config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(dictionary_learning_state(ref, dict_class), folder / "ae.pt")
    trainer = {"trainer_class": dict_class.replace("AutoEncoder", "") + "Trainer", "dict_class": dict_class,
               "activation_dim": ref.d_in, "dict_size": ref.d_sae, "lr": 1e-4, "layer": 6,
               "lm_name": "tiny", "submodule_name": submodule_name, "device": "cpu"}
    if ref.k is not None:
        trainer["k"] = ref.k
    _write_json(folder / "config.json", {"trainer": trainer, "buffer": {"d_submodule": ref.d_in, "ctx_len": 128}})
    return folder


# --- Gemma Scope 1 and 2 -----------------------------------------------------------------------

def _gemma_params(ref: RefSAE, lower: bool) -> dict[str, np.ndarray]:
    params = {"W_enc": ref.W_enc, "W_dec": ref.W_dec, "b_enc": ref.b_enc, "b_dec": ref.b_dec,
              "threshold": ref.threshold}
    return {(key.lower() if lower else key): np.asarray(value, dtype=np.float32) for key, value in params.items()}


def write_gemmascope(folder: Path, ref: RefSAE, *, lower: bool = False) -> Path:
    """`params.npz` as Google ships Gemma Scope (no config)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz", **_gemma_params(ref, lower))
    return folder


def write_gemmascope2(folder: Path, ref: RefSAE, *, config: dict[str, Any] | None = None,
                      lower: bool = True) -> Path:
    """`params.safetensors` (+ optional config.json) as Gemma Scope 2 ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {key: torch.from_numpy(value.copy()) for key, value in _gemma_params(ref, lower).items()}
    save_file(tensors, str(folder / "params.safetensors"))
    if config is not None:
        _write_json(folder / "config.json", config)
    return folder


# --- circuit-tracer ----------------------------------------------------------------------------

def write_circuit_tracer(folder: Path, ref: RefSAE, *, layer: int = 6, n_layers: int | None = None,
                         config: bool = True, skip: np.ndarray | None = None) -> Path:
    """A transcoder set as circuit-tracer saves one: `layer_{i}.safetensors` (nn.Linear-style
    `W_enc [d_tc, d_model]`, `W_dec [d_tc, d_model]`, JumpReLU threshold under
    `activation_function.threshold`, skip `W_skip [d_out, d_in]`) + config.yaml. Other layers of
    the set (`n_layers`) get shifted copies. Returns the file of `layer`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_layers or layer + 1):
        if n_layers is None and i != layer:
            continue
        shift = 0.0 if i == layer else 0.5
        tensors = {"W_enc": _t(ref.W_enc.T.copy() + shift), "W_dec": _t(ref.W_dec), "b_enc": _t(ref.b_enc),
                   "b_dec": _t(ref.b_dec)}
        if ref.threshold is not None:
            tensors["activation_function.threshold"] = _t(ref.threshold)
        if skip is not None:
            tensors["W_skip"] = _t(skip)
        save_file(tensors, str(folder / f"layer_{i}.safetensors"))
    if config:
        (folder / "config.yaml").write_text(
            "model_name: tiny\nmodel_kind: transcoder_set\nfeature_input_hook: mlp.hook_in\n"
            "feature_output_hook: mlp.hook_out\nscan: tiny-transcoders\n")
    return folder / f"layer_{layer}.safetensors"


def _circuit_tracer_cases() -> list[Case]:
    tc_in, tc_out = "blocks.6.ln2.hook_normalized", "blocks.6.hook_mlp_out"
    plain = dict(apply_b_dec_to_input=False, d_out=12)
    return [
        Case("circuit_tracer-relu", "circuit_tracer", random_sae("relu", **plain),
             lambda r, ref: write_circuit_tracer(r / "set", ref, n_layers=8), hook_name=tc_in, output_hook=tc_out),
        Case("circuit_tracer-jumprelu-no-config-folder", "circuit_tracer", random_sae("jumprelu", **plain),
             lambda r, ref: write_circuit_tracer(r / "set", ref, config=False).parent,
             hook_name=tc_in, output_hook=tc_out),
    ]


# --- the test matrix ---------------------------------------------------------------------------

@dataclass
class Case:
    """One SAE on disk: how to write it and what loading it must give."""

    id: str
    format: str
    ref: RefSAE
    write: Callable[[Path, RefSAE], Path]  # (tmp_path, ref) -> path to pass to load_sae
    hook_name: str = "blocks.6.hook_resid_post"
    output_hook: str | None = None
    oracle: bool = False  # SAELens can load it too
    load_kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, root: Path) -> Path:
        return self.write(root, self.ref)


def _saelens_cases() -> list[Case]:
    out = "blocks.6.hook_mlp_out"
    tc = "blocks.6.ln2.hook_normalized"
    rescaled = random_sae("topk", rescale_acts_by_decoder_norm=True)
    rescaled.W_dec = rescaled.W_dec * np.linspace(0.5, 2.0, D_SAE, dtype=np.float32)[:, None]
    cases = [Case(f"saelens-{arch}", "saelens", random_sae(arch), lambda r, ref: write_saelens(r / "sae", ref),
                  oracle=True) for arch in ("relu", "topk", "jumprelu", "gated")]
    batchtopk = random_sae("batchtopk", threshold=np.full(D_SAE, 0.3, np.float32))
    return [
        *cases,
        Case("saelens-batchtopk-training", "saelens", batchtopk, lambda r, ref: write_saelens(r / "sae", ref)),
        Case("saelens-topk-rescaled", "saelens", rescaled, lambda r, ref: write_saelens(r / "sae", ref), oracle=True),
        Case("saelens-relu-old-cfg", "saelens", random_sae("relu"),
             lambda r, ref: write_saelens(r / "sae", ref, style="old"), oracle=True),
        Case("saelens-topk-old-cfg", "saelens", random_sae("topk"),
             lambda r, ref: write_saelens(r / "sae", ref, style="old"), oracle=True),
        Case("saelens-relu-very-old-cfg", "saelens", random_sae("relu", apply_b_dec_to_input=False),
             lambda r, ref: write_saelens(r / "sae", ref, style="very_old"), oracle=True),
        Case("saelens-relu-constant-norm", "saelens", random_sae("relu", normalize_activations="constant_norm_rescale"),
             lambda r, ref: write_saelens(r / "sae", ref), oracle=True),
        Case("saelens-relu-layer-norm", "saelens", random_sae("relu", normalize_activations="layer_norm"),
             lambda r, ref: write_saelens(r / "sae", ref), oracle=True),
        Case("saelens-relu-expected-average", "saelens", random_sae(
            "relu", normalize_activations="expected_average_only_in", norm_scaling_factor=2.5), _saelens_with_scaler),
        Case("saelens-relu-transcoder", "saelens", random_sae("relu", d_out=12, apply_b_dec_to_input=False),
             lambda r, ref: write_saelens(r / "tc", ref, hook_name=tc, hook_name_out=out),
             hook_name=tc, output_hook=out, oracle=True),
        Case("saelens-jumprelu-transcoder", "saelens", random_sae("jumprelu", d_out=12, apply_b_dec_to_input=False),
             lambda r, ref: write_saelens(r / "tc", ref, hook_name=tc, hook_name_out=out),
             hook_name=tc, output_hook=out, oracle=True),
    ]


def _saelens_with_scaler(root: Path, ref: RefSAE) -> Path:
    """A SAELens checkpoint: unfolded weights + activation_scaler.json."""
    folder = write_saelens(root / "checkpoint", ref)
    _write_json(folder / "activation_scaler.json", {"scaling_factor": ref.norm_scaling_factor})
    ref.decoder_rows = ref.W_dec / ref.norm_scaling_factor
    return folder


def _dictionary_learning_cases() -> list[Case]:
    classes = {"AutoEncoder": "relu", "AutoEncoderNew": "relu", "AutoEncoderTopK": "topk",
               "BatchTopKSAE": "batchtopk", "JumpReluAutoEncoder": "jumprelu", "GatedAutoEncoder": "gated"}
    cases = []
    for dict_class, arch in classes.items():
        ref = random_sae(arch, apply_b_dec_to_input=dict_class not in ("AutoEncoderNew", "JumpReluAutoEncoder"))
        if arch == "batchtopk":
            ref.threshold = np.full(D_SAE, 0.3, dtype=np.float32)
        cases.append(Case(f"dictionary_learning-{dict_class}", "dictionary_learning", ref,
                          lambda r, ref, c=dict_class: write_dictionary_learning(r / "trainer_0", ref, c)))
    uncalibrated = random_sae("batchtopk", threshold=None)
    cases.append(Case("dictionary_learning-BatchTopKSAE-uncalibrated", "dictionary_learning", uncalibrated,
                      lambda r, ref: write_dictionary_learning(r / "trainer_1", ref, "BatchTopKSAE")))
    return cases


def _gemma_cases() -> list[Case]:
    jump = dict(apply_b_dec_to_input=False)
    tc_in, tc_out = "blocks.12.ln2.hook_normalized", "blocks.12.hook_mlp_out"
    gs2_cfg = {"architecture": "jump_relu", "model_name": "gemma-v3-1b-pt",
               "hf_hook_point_in": "model.layers.12.output"}
    tc_cfg = {"architecture": "jump_relu", "hf_hook_point_in": "model.layers.12.pre_feedforward_layernorm.output",
              "hf_hook_point_out": "model.layers.12.post_feedforward_layernorm.output", "affine_connection": False}
    return [
        Case("gemmascope-jumprelu", "gemmascope", random_sae("jumprelu", **jump),
             lambda r, ref: write_gemmascope(r / "gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82", ref),
             hook_name="blocks.12.hook_resid_post"),
        Case("gemmascope-jumprelu-lowercase-mlp", "gemmascope", random_sae("jumprelu", **jump),
             lambda r, ref: write_gemmascope(r / "gemma-scope-2b-pt-mlp/layer_3/width_16k/average_l0_50", ref,
                                             lower=True), hook_name="blocks.3.hook_mlp_out"),
        Case("gemmascope-jumprelu-transcoder", "gemmascope", random_sae("jumprelu", d_out=12, **jump),
             lambda r, ref: write_gemmascope(r / "gemma-scope-2b-pt-transcoders/layer_12/width_16k/average_l0_9", ref),
             hook_name=tc_in, output_hook=tc_out),
        Case("gemmascope2-jumprelu", "gemmascope2", random_sae("jumprelu", **jump),
             lambda r, ref: write_gemmascope2(r / "resid_post/layer_12_width_16k_l0_medium", ref, config=gs2_cfg),
             hook_name="blocks.12.hook_resid_post"),
        Case("gemmascope2-jumprelu-uppercase-no-config", "gemmascope2", random_sae("jumprelu", **jump),
             lambda r, ref: write_gemmascope2(r / "mlp_out/layer_12_width_16k_l0_small", ref, lower=False),
             hook_name="blocks.12.hook_mlp_out"),
        Case("gemmascope2-jumprelu-transcoder", "gemmascope2", random_sae("jumprelu", d_out=12, **jump),
             lambda r, ref: write_gemmascope2(r / "transcoder/layer_12_width_16k_l0_big", ref, config=tc_cfg),
             hook_name=tc_in, output_hook=tc_out),
    ]


def _sparsify_cases() -> list[Case]:
    return [
        Case("sparsify-topk", "sparsify", random_sae("topk"), lambda r, ref: write_sparsify(r / "run", ref)),
        Case("sparsify-topk-mlp-run-folder", "sparsify", random_sae("topk"),
             lambda r, ref: write_sparsify(r / "run", ref, hookpoint="layers.6.mlp").parent,
             hook_name="blocks.6.hook_mlp_out"),
        Case("sparsify-groupmax", "sparsify", random_sae("groupmax"), lambda r, ref: write_sparsify(r / "run", ref)),
        Case("sparsify-topk-transcoder", "sparsify", random_sae("topk", apply_b_dec_to_input=False),
             lambda r, ref: write_sparsify(r / "run", ref, hookpoint="layers.6.mlp", transcode=True),
             hook_name="blocks.6.ln2.hook_normalized", output_hook="blocks.6.hook_mlp_out"),
    ]


CASES: list[Case] = (_saelens_cases() + _sparsify_cases() + _dictionary_learning_cases() + _gemma_cases()
                     + _circuit_tracer_cases())
