"""Gemma Scope 2 (Gemma 3): `params.safetensors` with lowercase `w_enc [d_in, d_sae]`,
`w_dec [d_sae, d_out]`, `b_enc`, `b_dec`, `threshold` (uppercase names accepted too), usually
next to a `config.json` (`architecture: "jump_relu"`, `hf_hook_point_in` such as
"model.layers.12.output", `hf_hook_point_out` for transcoders, `affine_connection`).

The hook comes from `hf_hook_point_in`/`_out`, else from the folder layout
(`resid_post/layer_12_width_16k_l0_medium/`, `mlp_out/`, `attn_out/`, `transcoder/`), else from
the `hook_name` argument. An affine skip connection only affects reconstructions: not used here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentpedia.sources.formats.base import Format, RawSAE
from latentpedia.sources.formats.gemmascope import jumprelu_weights, path_info
from latentpedia.sources.hooknames import Hooks, from_gemma_scope_path, from_hf_hook_point
from latentpedia.sources.validate import STR, check_config_types, read_json, read_safetensors

WEIGHTS_FILE, CFG_FILE = "params.safetensors", "config.json"
_ARCHITECTURES = {"jump_relu": "jumprelu", "jumprelu": "jumprelu"}
CONFIG_TYPES = {"architecture": STR, "hf_hook_point_in": STR, "hf_hook_point_out": STR}


def _config_hooks(cfg: dict[str, Any]) -> Hooks | None:
    """Hooks from the config's HF hook points (None if it has none we know)."""
    hook = from_hf_hook_point(cfg.get("hf_hook_point_in"))
    if hook is None:
        return None
    out = cfg.get("hf_hook_point_out")
    return hook, (from_hf_hook_point(out) or out) if out else None


class GemmaScope2Format(Format):
    """One Gemma Scope 2 SAE or transcoder folder."""

    name = "gemmascope2"
    marker_files = (WEIGHTS_FILE, CFG_FILE)

    def detect(self, folder: Path) -> bool:
        return (folder / WEIGHTS_FILE).is_file()

    def read(self, folder: Path, hook_name: str | None) -> RawSAE:
        weights_path, cfg_path = folder / WEIGHTS_FILE, folder / CFG_FILE
        cfg = read_json(cfg_path) if cfg_path.is_file() else {}
        check_config_types(cfg, CONFIG_TYPES, cfg_path)
        origins: dict[str, tuple[str, bool]] = {}
        weights = jumprelu_weights(read_safetensors(weights_path), weights_path, origins)
        stored = str(cfg.get("architecture", "jump_relu"))
        weights.architecture = _ARCHITECTURES.get(stored, f"Gemma Scope 2 {stored}")
        hooks, how = _config_hooks(cfg), f"{CFG_FILE} hf_hook_point_in"
        if hooks is None:
            hooks, how = from_gemma_scope_path(folder)
        return RawSAE(
            weights=weights,
            weights_path=weights_path,
            cfg_path=cfg_path if cfg else None,
            hook_name=hook_name or (hooks[0] if hooks else None),
            output_hook=hooks[1] if hooks else None,
            hook_origin="argument" if hook_name else how,
            cfg={**cfg, "path": path_info(folder)},
            origins=origins,
        )
