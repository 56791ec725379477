"""saprmarks/dictionary_learning: `ae.pt` (a torch state dict) + `config.json` (`trainer.dict_class`,
`activation_dim`, `dict_size`, `k`, `layer`, `lm_name`, `submodule_name`).

nn.Linear layout (`encoder.weight [d_sae, d_in]`, `decoder.weight [d_in, d_sae]`), transposed
here. Per class:
- AutoEncoder: relu(encoder(x - bias)); `bias` is b_dec.
- AutoEncoderNew: relu(encoder(x)); b_dec is `decoder.bias`.
- AutoEncoderTopK: per-token top-k of relu(encoder(x - b_dec)).
- BatchTopKSAE / MatryoshkaBatchTopKSAE: relu(pre) where relu(pre) > `threshold` (scalar buffer;
  -1 means never calibrated: top-k per token instead).
- JumpReluAutoEncoder: `W_enc`/`W_dec` already ours, no b_dec subtraction.
- GatedAutoEncoder: gate/magnitude on encoder(x - decoder_bias).
The file is read with `torch.load(weights_only=True)`. The hook comes from `submodule_name`
("resid_post_layer_3"), else from the folder names ("resid_out_layer3/10_32768/ae.pt").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentpedia.sources.formats.base import Format, RawSAE, as_int, broadcast, take
from latentpedia.sources.hooknames import from_module_path, from_submodule_name
from latentpedia.sources.sae import SAEWeights
from latentpedia.sources.validate import INT, OBJECT, STR, check_config_types, read_json, read_torch_state, require_key, require_tensor

CFG_FILE, WEIGHTS_FILE = "config.json", "ae.pt"
CONFIG_TYPES = {"trainer": OBJECT, "trainer.dict_class": STR, "trainer.submodule_name": STR,
                "trainer.activation_dim": INT, "trainer.dict_size": INT, "trainer.k": INT}


@dataclass(frozen=True)
class _Layout:
    """Where one dict_class keeps each canonical tensor: (key, transposed)."""

    architecture: str
    keys: dict[str, tuple[str, bool]]
    subtract_b_dec: bool


_LINEAR = {"W_enc": ("encoder.weight", True), "b_enc": ("encoder.bias", False), "W_dec": ("decoder.weight", True)}
_TOPK = {**_LINEAR, "b_dec": ("b_dec", False)}
_LAYOUTS: dict[str, _Layout] = {
    "AutoEncoder": _Layout("relu", {**_LINEAR, "b_dec": ("bias", False)}, True),
    "AutoEncoderNew": _Layout("relu", {**_LINEAR, "b_dec": ("decoder.bias", False)}, False),
    "AutoEncoderTopK": _Layout("topk", _TOPK, True),
    "BatchTopKSAE": _Layout("batchtopk", _TOPK, True),
    "MatryoshkaBatchTopKSAE": _Layout("batchtopk", _TOPK, True),
    "JumpReluAutoEncoder": _Layout(
        "jumprelu",
        {name: (name, False) for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")},
        False,
    ),
    "GatedAutoEncoder": _Layout(
        "gated",
        {"W_enc": ("encoder.weight", True), "b_enc": ("gate_bias", False), "W_dec": ("decoder.weight", True),
         "b_dec": ("decoder_bias", False), "r_mag": ("r_mag", False), "b_mag": ("mag_bias", False)},
        True,
    ),
}
_LAYOUTS["TopKSAE"] = _LAYOUTS["AutoEncoderTopK"]


class DictionaryLearningFormat(Format):
    """dictionary_learning trainer output: one `trainer_N/` folder."""

    name = "dictionary_learning"
    marker_files = (WEIGHTS_FILE, CFG_FILE)

    def detect(self, folder: Path) -> bool:
        return (folder / WEIGHTS_FILE).is_file()

    def read(self, folder: Path, hook_name: str | None) -> RawSAE:
        cfg_path, weights_path = folder / CFG_FILE, folder / WEIGHTS_FILE
        cfg = read_json(cfg_path)
        check_config_types(cfg, CONFIG_TYPES, cfg_path)
        trainer = require_key(cfg, "trainer", cfg_path)
        dict_class = str(require_key(trainer, "dict_class", cfg_path, label="'trainer.dict_class'"))
        state = read_torch_state(weights_path)
        origins: dict[str, tuple[str, bool]] = {}
        weights = _weights(state, trainer, dict_class, weights_path, origins)
        hooks = _hooks(str(trainer.get("submodule_name") or ""), folder)
        return RawSAE(
            weights=weights,
            weights_path=weights_path,
            cfg_path=cfg_path,
            hook_name=hook_name or (hooks[0] if hooks else None),
            hook_origin="argument" if hook_name else "trainer.submodule_name / folder names",
            cfg=cfg,
            origins=origins,
            declared={"d_in": trainer.get("activation_dim"), "d_sae": trainer.get("dict_size")},
        )


def _weights(state: dict[str, torch.Tensor], trainer: dict[str, Any], dict_class: str, path: Path,
             origins: dict[str, tuple[str, bool]]) -> SAEWeights:
    layout = _LAYOUTS.get(dict_class)
    if layout is None:  # validation reports it as an unknown architecture, naming the class
        layout = _Layout(f"dictionary_learning {dict_class}", {**_LINEAR, "b_dec": ("bias", False)}, True)
    tensors = {name: _tensor(state, key, name, transposed, path, origins)
               for name, (key, transposed) in layout.keys.items()}
    if tensors["b_enc"] is None:  # an encoder saved without bias
        tensors["b_enc"] = torch.zeros(tensors["W_enc"].shape[1], dtype=tensors["W_enc"].dtype)
    tensors["threshold"] = _threshold(state, tensors, layout, origins)
    return SAEWeights(
        architecture=layout.architecture,
        **tensors,
        k=as_int(state.get("k")) or as_int(trainer.get("k")),
        apply_b_dec_to_input=layout.subtract_b_dec,
    )


def _tensor(state: dict[str, torch.Tensor], key: str, name: str, transposed: bool, path: Path,
            origins: dict[str, tuple[str, bool]]) -> torch.Tensor | None:
    """A required tensor (only an nn.Linear encoder bias may be absent)."""
    if key != "encoder.bias":
        require_tensor(state, key, path)
    return take(state, key, origins, name, transpose=transposed)


def _threshold(state: dict[str, torch.Tensor], tensors: dict[str, Any], layout: _Layout,
               origins: dict[str, tuple[str, bool]]) -> torch.Tensor | None:
    """JumpReLU's per-latent threshold; BatchTopK's calibrated scalar (None while still -1)."""
    if tensors.get("threshold") is not None:
        return tensors["threshold"]
    if layout.architecture != "batchtopk" or "threshold" not in state:
        return None
    value = state["threshold"]
    if value.numel() == 1 and float(value) < 0:
        return None
    origins["threshold"] = ("threshold", False)
    return broadcast(value, tensors["W_enc"].shape[1])


def _hooks(submodule_name: str, folder: Path) -> tuple[str, str | None] | None:
    """From the trainer's submodule name, else the folder names (innermost first)."""
    return from_submodule_name([submodule_name, *reversed(folder.parts)]) or from_module_path(submodule_name)
