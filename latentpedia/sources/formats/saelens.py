"""SAELens folders: `cfg.json` + `sae_weights.safetensors` (optional `sparsity.safetensors`, ignored).

Reads both the SAELens >= 6 config (`architecture`, `metadata.hook_name`, `k`, ...) and the
older flat ones (`hook_name` / very old `hook_point` at the top level, `activation_fn_str`,
`activation_fn_kwargs.k`, boolean `normalize_activations`). Tensors keep SAELens' layout
(`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_out]`). A stored fine-tuning scaling factor (which
multiplies activations before decoding) is folded into the decoder rows; a checkpoint's
`activation_scaler.json` supplies the "expected_average_only_in" input scaling factor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.sources.base import layer_of
from latentpedia.sources.formats.base import Format, RawSAE, as_int, broadcast, first_key, take
from latentpedia.sources.hooknames import transcoder_hooks
from latentpedia.sources.sae import SAEWeights
from latentpedia.sources.validate import BOOL, INT, NUMBER, OBJECT, STR, check_config_types, read_json, read_safetensors, require_tensor

CFG_FILE, WEIGHTS_FILE, SCALER_FILE = "cfg.json", "sae_weights.safetensors", "activation_scaler.json"
# Every cfg.json field read here, with its type (old and new SAELens spellings).
CONFIG_TYPES = {
    "metadata": OBJECT, "activation_fn_kwargs": OBJECT, "architecture": STR, "activation_fn": STR,
    "activation_fn_str": STR, "d_in": INT, "d_sae": INT, "d_out": INT, "k": INT, "activation_fn_kwargs.k": INT,
    "hook_name": STR, "hook_point": STR, "hook_name_out": STR, "hook_head_index": INT, "metadata.hook_name": STR,
    "metadata.hook_name_out": STR, "metadata.hook_head_index": INT, "apply_b_dec_to_input": BOOL,
    "rescale_acts_by_decoder_norm": BOOL, "normalize_activations": (BOOL, STR), "norm_scaling_factor": NUMBER,
}  # fmt: skip

# SAELens architecture -> (our architecture, is a transcoder)
_ARCHITECTURES: dict[str, tuple[str, bool]] = {
    "standard": ("relu", False),
    "topk": ("topk", False),
    "jumprelu": ("jumprelu", False),
    "gated": ("gated", False),
    "batchtopk": ("batchtopk", False),
    "matryoshka_batchtopk": ("batchtopk", False),
    "transcoder": ("relu", True),
    "skip_transcoder": ("relu", True),
    "jumprelu_transcoder": ("jumprelu", True),
    "jumprelu_skip_transcoder": ("jumprelu", True),
    "topk_transcoder": ("topk", True),  # written by latentpedia train-transcoders
    "topk_skip_transcoder": ("topk", True),
}


def _architecture(cfg: dict[str, Any]) -> tuple[str, bool]:
    """(our architecture, transcoder?) from a new or old cfg; unknown names pass through."""
    name = cfg.get("architecture") or "standard"
    activation = cfg.get("activation_fn") or cfg.get("activation_fn_str") or "relu"
    if name == "standard" and activation == "topk":
        name = "topk"
    elif name == "standard" and activation != "relu":
        return f"standard with activation {activation!r}", False
    return _ARCHITECTURES.get(name, (name, False))


def _meta(cfg: dict[str, Any], key: str) -> Any:
    """`metadata.key` (SAELens >= 6) or the top-level `key` (older configs)."""
    return (cfg.get("metadata") or {}).get(key) or cfg.get(key)


def _normalization(cfg: dict[str, Any]) -> str:
    value = cfg.get("normalize_activations")
    if isinstance(value, bool):
        return "expected_average_only_in" if value else "none"
    return value or "none"


def _scaling_factor(folder: Path, cfg: dict[str, Any]) -> float | None:
    """The "expected_average_only_in" factor stored with a checkpoint, if any."""
    if (folder / SCALER_FILE).is_file():
        scaler = read_json(folder / SCALER_FILE)
        check_config_types(scaler, {"scaling_factor": NUMBER}, folder / SCALER_FILE)
        return scaler.get("scaling_factor")
    return cfg.get("norm_scaling_factor")


class SAELensFormat(Format):
    """SAELens `SAE.save_model` output (any version)."""

    name = "saelens"
    marker_files = (CFG_FILE, WEIGHTS_FILE)

    def detect(self, folder: Path) -> bool:
        return (folder / WEIGHTS_FILE).is_file()

    def read(self, folder: Path, hook_name: str | None) -> RawSAE:
        cfg_path, weights_path = folder / CFG_FILE, folder / WEIGHTS_FILE
        cfg = read_json(cfg_path)
        check_config_types(cfg, CONFIG_TYPES, cfg_path)
        state = read_safetensors(weights_path)
        architecture, transcoder = _architecture(cfg)
        origins: dict[str, tuple[str, bool]] = {}
        weights = _weights(state, cfg, architecture, transcoder, weights_path, origins)
        weights.norm_scaling_factor = _scaling_factor(folder, cfg)
        hook, output_hook = self._hooks(cfg, transcoder, hook_name, cfg_path)
        return RawSAE(
            weights=weights,
            weights_path=weights_path,
            cfg_path=cfg_path,
            hook_name=hook,
            output_hook=output_hook,
            hook_origin="argument" if hook_name else CFG_FILE,
            cfg=cfg,
            origins=origins,
            declared={"d_in": cfg.get("d_in"), "d_sae": cfg.get("d_sae"), "d_out": cfg.get("d_out")},
        )

    def _hooks(self, cfg: dict[str, Any], transcoder: bool, override: str | None,
               cfg_path: Path) -> tuple[str | None, str | None]:
        if _meta(cfg, "hook_head_index") is not None:
            raise InvalidInputError("SAEs on a single attention head (hook_head_index) are not supported", cfg_path)
        hook = override or _meta(cfg, "hook_name") or cfg.get("hook_point")
        if not transcoder:
            return hook, None
        out = _meta(cfg, "hook_name_out")
        if out is None and hook is not None:
            out = _default_output_hook(hook)
        if out is None:
            raise InvalidInputError("transcoder config has no 'hook_name_out' (where it writes)", cfg_path)
        return hook, out


def _weights(state: dict[str, torch.Tensor], cfg: dict[str, Any], architecture: str,
             transcoder: bool, path: Path, origins: dict[str, tuple[str, bool]]) -> SAEWeights:
    """Canonical weights from SAELens tensors (already in our layout) and cfg settings."""
    gated = architecture == "gated"
    W_enc = require_tensor(state, "W_enc", path)
    b_enc = require_tensor(state, "b_gate" if gated else "b_enc", path)
    origins["b_enc"] = ("b_gate" if gated else "b_enc", False)
    return SAEWeights(
        architecture=architecture,
        W_enc=W_enc,
        b_enc=b_enc,
        W_dec=_fold_finetuning_scale(require_tensor(state, "W_dec", path), state),
        b_dec=require_tensor(state, "b_dec", path),
        threshold=_threshold(state, origins, W_enc.shape[-1]),
        k=as_int((cfg.get("activation_fn_kwargs") or {}).get("k", cfg.get("k"))),
        r_mag=take(state, "r_mag", origins, "r_mag"),
        b_mag=take(state, "b_mag", origins, "b_mag"),
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", not transcoder)),
        normalize_activations=_normalization(cfg),
        rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)),
    )


def _threshold(state: dict[str, torch.Tensor], origins: dict[str, tuple[str, bool]],
               d_sae: int) -> torch.Tensor | None:
    """JumpReLU `threshold` (or training-time `log_threshold`), BatchTopK `topk_threshold`."""
    key = first_key(state, "threshold", "log_threshold", "topk_threshold")
    if key is None:
        return None
    origins["threshold"] = (key, False)
    value = state[key].exp() if key == "log_threshold" else state[key]
    return broadcast(value, d_sae)


def _fold_finetuning_scale(W_dec: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Decode multiplies activations by a stored per-latent factor: fold it into the rows."""
    key = first_key(state, "finetuning_scaling_factor", "scaling_factor")
    if key is None or W_dec.ndim != 2 or state[key].shape != W_dec.shape[:1]:
        return W_dec
    return W_dec * state[key].to(W_dec.dtype)[:, None]


def _default_output_hook(hook: str) -> str | None:
    """An MLP transcoder reading the MLP input writes the MLP output."""
    if hook.endswith(("ln2.hook_normalized", "hook_mlp_in")):
        return transcoder_hooks(layer_of(hook))[1]
    return None

