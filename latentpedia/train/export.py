"""Trained SAEs written in SAELens format (`cfg.json` + `sae_weights.safetensors`).

The folder is written under a temporary name next to its destination and renamed into place,
so a reader never sees a half-written SAE. The input scale used in training is folded into the
weights (as SAELens' own trainer does when it saves), so the SAE reads raw activations; the
factor is recorded in `metadata.latentpedia`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from latentpedia.sources.base import layer_of
from latentpedia.sources.ids import hook_kind_short, source_id, width_label
from latentpedia.train.saes import TrainableSAE

CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"  # the cfg.json layout we write


def sae_name(hook: str, architecture: str, d_sae: int) -> str:
    """Folder and source name, e.g. "14-res-topk-4.5k"."""
    return source_id(layer_of(hook), hook_kind_short(hook), f"{architecture}-{width_label(d_sae)}")


def saelens_cfg(sae: TrainableSAE, hook: str, model_id: str, info: dict[str, Any]) -> dict[str, Any]:
    """cfg.json in the SAELens >= 6 layout; `info` (training summary) goes to metadata.latentpedia."""
    metadata = {
        "hook_name": hook, "model_name": model_id, "prepend_bos": True, "exclude_special_tokens": True,
        "sae_lens_version": SAELENS_FORMAT_VERSION, "sae_lens_training_version": SAELENS_FORMAT_VERSION,
        "latentpedia": {"trained_architecture": sae.name, **info},
    }  # fmt: skip
    return {
        "architecture": sae.saelens_architecture, "d_in": sae.settings.d_in, "d_sae": sae.settings.d_sae,
        "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
        "reshape_activations": "none", **sae.cfg_extra(), "metadata": metadata,
    }  # fmt: skip


def write_saelens(folder: Path, sae: TrainableSAE, *, hook: str, model_id: str, scale: float,
                  info: dict[str, Any]) -> Path:
    """Write `sae` to `folder` atomically (temp folder + rename); replaces an older folder."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(sae.export_tensors(scale), str(tmp / WEIGHTS_FILE))
        cfg = saelens_cfg(sae, hook, model_id, {"norm_scaling_factor_folded": scale, **info})
        (tmp / CFG_FILE).write_text(json.dumps(cfg, indent=2))
        _replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _replace_dir(src: Path, dest: Path) -> None:
    """Move `src` to `dest`; an existing `dest` is moved aside first and removed after."""
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        dest.rename(old)
    src.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
