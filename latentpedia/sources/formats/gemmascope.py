"""Gemma Scope (Gemma 2): `params.npz` with `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`,
`b_dec`, `threshold`; JumpReLU on `x @ W_enc + b_enc` (no b_dec subtraction).

There is no config file: the hook comes from the folder path as Google lays it out
(`gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz`; the release folder gives
the site, `layer_N` the layer, `width_16k` the width) or from the `hook_name` argument.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from latentpedia.sources.formats.base import Format, RawSAE, first_key
from latentpedia.sources.hooknames import from_gemma_scope_path
from latentpedia.sources.sae import SAEWeights
from latentpedia.sources.validate import read_npz, require_tensor

WEIGHTS_FILE = "params.npz"
_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


def jumprelu_weights(state: dict[str, torch.Tensor], path: Path,
                     origins: dict[str, tuple[str, bool]]) -> SAEWeights:
    """Google's JumpReLU parameters, named `W_enc` or `w_enc` (both spellings accepted)."""
    tensors = {}
    for name in _NAMES:
        key = first_key(state, name, name.lower()) or name
        tensors[name] = require_tensor(state, key, path)
        origins[name] = (key, False)
    return SAEWeights(architecture="jumprelu", **tensors, apply_b_dec_to_input=False)


def path_info(folder: Path) -> dict[str, object]:
    """What the folder names say (layer, width, l0), for the metadata."""
    info: dict[str, object] = {}
    for key, pattern in (("layer", r"layer_(\d+)"), ("width", r"width_(\d+[km]?)"),
                         ("l0", r"(?:average_l0|l0)_(\w+?)(?:_|$)")):
        if match := re.search(pattern, folder.as_posix()):
            info[key] = match.group(1)
    return info


class GemmaScopeFormat(Format):
    """One Gemma Scope SAE folder."""

    name = "gemmascope"
    marker_files = (WEIGHTS_FILE,)

    def detect(self, folder: Path) -> bool:
        return (folder / WEIGHTS_FILE).is_file()

    def read(self, folder: Path, hook_name: str | None) -> RawSAE:
        weights_path = folder / WEIGHTS_FILE
        origins: dict[str, tuple[str, bool]] = {}
        weights = jumprelu_weights(read_npz(weights_path), weights_path, origins)
        hooks, how = from_gemma_scope_path(folder)
        return RawSAE(
            weights=weights,
            weights_path=weights_path,
            hook_name=hook_name or (hooks[0] if hooks else None),
            output_hook=hooks[1] if hooks else None,
            hook_origin="argument" if hook_name else how,
            cfg={"path": path_info(folder)},
            origins=origins,
        )
