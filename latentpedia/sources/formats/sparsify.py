"""EleutherAI sparsify: a run folder with one subfolder per hookpoint, each holding `cfg.json`
(`k`, `num_latents` or `expansion_factor`, `d_in`, `activation`, `transcode`, ...) and
`sae.safetensors` (`encoder.weight [d_sae, d_in]`, `encoder.bias`, `W_dec [d_sae, d_in]`, `b_dec`).

sparsify encodes `topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias))`; transcoders
(`transcode: true`) skip the `b_dec` subtraction. The hookpoint is the subfolder's name, a
module path ("layers.6" -> `blocks.6.hook_resid_post`, "layers.6.mlp" -> `blocks.6.hook_mlp_out`).
A skip connection (`W_skip`) only affects reconstructions and is not used here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.sources.formats.base import Format, RawSAE, as_int, take
from latentpedia.sources.hooknames import from_module_path
from latentpedia.sources.sae import SAEWeights
from latentpedia.sources.validate import BOOL, INT, STR, check_config_types, read_json, read_safetensors, require_key, require_tensor

CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae.safetensors"
CONFIG_TYPES = {"num_latents": INT, "d_in": INT, "expansion_factor": INT, "k": INT, "activation": STR, "transcode": BOOL}


def _is_hookpoint(folder: Path) -> bool:
    return (folder / WEIGHTS_FILE).is_file()


def _hookpoints(folder: Path) -> list[Path]:
    return sorted(sub for sub in folder.iterdir() if sub.is_dir() and _is_hookpoint(sub))


def _d_sae(cfg: dict[str, Any], cfg_path: Path) -> int:
    """`num_latents`, or `d_in * expansion_factor` when num_latents is 0 / absent."""
    if cfg.get("num_latents"):
        return int(cfg["num_latents"])
    return int(require_key(cfg, "d_in", cfg_path)) * int(require_key(cfg, "expansion_factor", cfg_path))


class SparsifyFormat(Format):
    """sparsify `SparseCoder.save_to_disk` output, or a run folder of them."""

    name = "sparsify"
    marker_files = (CFG_FILE, WEIGHTS_FILE)

    def detect(self, folder: Path) -> bool:
        return _is_hookpoint(folder) or (folder.is_dir() and bool(_hookpoints(folder)))

    def resolve(self, folder: Path) -> Path:
        """A run folder with a single hookpoint stands for it; with several, the caller picks."""
        if _is_hookpoint(folder):
            return folder
        subs = _hookpoints(folder)
        if len(subs) == 1:
            return subs[0]
        names = ", ".join(sub.name for sub in subs)
        raise InvalidInputError(
            f"sparsify run folder with {len(subs)} hookpoints ({names}); pass one of these subfolders", folder
        )

    def read(self, folder: Path, hook_name: str | None) -> RawSAE:
        cfg_path, weights_path = folder / CFG_FILE, folder / WEIGHTS_FILE
        cfg = read_json(cfg_path)
        check_config_types(cfg, CONFIG_TYPES, cfg_path)
        state = read_safetensors(weights_path)
        transcode = bool(cfg.get("transcode", False))
        origins: dict[str, tuple[str, bool]] = {}
        weights = _weights(state, cfg, transcode, weights_path, origins)
        hooks = from_module_path(folder.name, transcode=transcode)
        return RawSAE(
            weights=weights,
            weights_path=weights_path,
            cfg_path=cfg_path,
            hook_name=hook_name or (hooks[0] if hooks else None),
            output_hook=hooks[1] if hooks else None,
            hook_origin="argument" if hook_name else f"folder name {folder.name!r}",
            cfg={**cfg, "hookpoint": folder.name},
            origins=origins,
            declared={"d_in": cfg.get("d_in"), "d_sae": _d_sae(cfg, cfg_path)},
        )


def _weights(state: dict[str, torch.Tensor], cfg: dict[str, Any], transcode: bool, path: Path,
             origins: dict[str, tuple[str, bool]]) -> SAEWeights:
    """Canonical weights: nn.Linear encoder transposed; sparsify's W_dec already [d_sae, d_out]."""
    require_tensor(state, "encoder.weight", path)
    W_enc = take(state, "encoder.weight", origins, "W_enc", transpose=True)
    b_enc = take(state, "encoder.bias", origins, "b_enc")
    if b_enc is None:  # saved without a bias: all zeros, like a fresh SparseCoder
        b_enc = torch.zeros(W_enc.shape[1], dtype=W_enc.dtype)
    return SAEWeights(
        architecture=cfg.get("activation") or "topk",
        W_enc=W_enc,
        b_enc=b_enc,
        W_dec=require_tensor(state, "W_dec", path),
        b_dec=require_tensor(state, "b_dec", path),
        k=as_int(cfg.get("k", 32)),
        apply_b_dec_to_input=not transcode,
    )
