"""circuit-tracer per-layer transcoders: a folder of `layer_{i}.safetensors`, usually with a
`config.yaml` (`model_kind: transcoder_set`, `feature_input_hook`, `feature_output_hook`,
optionally `transcoders:` a list of per-layer files, `scan`).

Each file holds `W_enc [d_transcoder, d_model]` (one row per latent, like nn.Linear), `W_dec
[d_transcoder, d_model]`, `b_enc`, `b_dec`, and optionally `activation_function.threshold`
(JumpReLU; without it the activation is a ReLU) and `W_skip [d_out, d_in]` (the skip adds
`x @ W_skip.T`). The encoder reads the MLP's normalized input (`mlp.hook_in` or
`ln2.hook_normalized`) with no `b_dec` subtraction.

A set holds every layer: pass one `layer_N.safetensors` file (or a folder holding one layer).
Without a config the file is taken to be an MLP transcoder of layer N.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.sources.formats.base import Format, RawSAE, take
from latentpedia.sources.hooknames import transcoder_hooks
from latentpedia.sources.sae import SAEWeights
from latentpedia.sources.validate import STR, check_config_types, read_safetensors, require_tensor

CFG_FILE = "config.yaml"
LAYER_FILE = re.compile(r"^layer_(\d+)\.safetensors$")
THRESHOLD = "activation_function.threshold"
CONFIG_TYPES = {"model_kind": STR, "feature_input_hook": STR, "feature_output_hook": STR}
# circuit-tracer's hook names (relative to blocks.L) -> ours
_INPUT_HOOKS = {"mlp.hook_in": "ln2.hook_normalized", "ln2.hook_normalized": "ln2.hook_normalized",
                "hook_resid_mid": "hook_resid_mid"}
_OUTPUT_HOOKS = {"mlp.hook_out": "hook_mlp_out", "hook_mlp_out": "hook_mlp_out"}


def _layer_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if LAYER_FILE.match(p.name)), key=lambda p: _layer(p))


def _layer(path: Path) -> int:
    return int(LAYER_FILE.match(path.name).group(1))


def read_config(folder: Path) -> dict[str, Any]:
    """The set's config.yaml ({} when absent); InvalidInputError when unreadable."""
    import yaml

    path = folder / CFG_FILE
    if not path.is_file():
        return {}
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"unreadable YAML: {exc}", path) from exc
    if not isinstance(cfg, dict):
        raise InvalidInputError("config.yaml must be a mapping", path)
    check_config_types(cfg, CONFIG_TYPES, path)
    kind = cfg.get("model_kind", "transcoder_set")
    if kind != "transcoder_set":
        raise InvalidInputError(f"model_kind {kind!r}: only per-layer transcoder sets (transcoder_set) load", path)
    return cfg


def _hooks(cfg: dict[str, Any], layer: int, cfg_path: Path) -> tuple[str, str]:
    """Our (input hook, output hook) of layer `layer` from the config's relative hook names."""
    if not cfg:
        return transcoder_hooks(layer)
    names = []
    for key, table in (("feature_input_hook", _INPUT_HOOKS), ("feature_output_hook", _OUTPUT_HOOKS)):
        stored = cfg.get(key, "mlp.hook_in" if key == "feature_input_hook" else "mlp.hook_out")
        if stored not in table:
            raise InvalidInputError(f"{key} {stored!r} is not one we know ({', '.join(table)})", cfg_path)
        names.append(f"blocks.{layer}.{table[stored]}")
    return names[0], names[1]


class CircuitTracerFormat(Format):
    """One transcoder of a circuit-tracer transcoder set."""

    name = "circuit_tracer"
    marker_files = ("layer_N.safetensors", CFG_FILE)

    def detect(self, folder: Path) -> bool:
        return bool(_layer_files(folder))

    def select(self, folder: Path, path: Path) -> Path:
        if LAYER_FILE.match(path.name) and path.is_file():
            return path
        files = _layer_files(folder)
        if len(files) == 1:
            return files[0]
        names = ", ".join(p.name for p in files[:4]) + (", ..." if len(files) > 4 else "")
        raise InvalidInputError(
            f"circuit-tracer transcoder set with {len(files)} layers ({names}); pass one of the layer files", folder
        )

    def read(self, folder: Path, hook_name: str | None) -> RawSAE:
        weights_path = folder if folder.is_file() else self.select(folder, folder)
        cfg_path = weights_path.parent / CFG_FILE
        cfg = read_config(weights_path.parent)
        layer = _layer(weights_path)
        state = read_safetensors(weights_path)
        origins: dict[str, tuple[str, bool]] = {}
        weights = _weights(state, weights_path, origins)
        hook_in, hook_out = _hooks(cfg, layer, cfg_path)
        skip = _skip(state, weights, weights_path)
        how = f"{CFG_FILE} feature hooks, layer from {weights_path.name}" if cfg else \
            f"file name {weights_path.name} (no {CFG_FILE}: MLP input -> MLP output assumed)"
        return RawSAE(
            weights=weights,
            weights_path=weights_path,
            cfg_path=cfg_path if cfg else None,
            hook_name=hook_name or hook_in,
            output_hook=hook_out,
            hook_origin="argument" if hook_name else how,
            cfg={**{k: v for k, v in cfg.items() if k != "transcoders"}, "layer": layer, "file": weights_path.name},
            origins=origins,
            skip=skip,
        )


def _weights(state: dict, path: Path, origins: dict[str, tuple[str, bool]]) -> SAEWeights:
    """Canonical weights: W_enc transposed to [d_in, d_sae]; W_dec already [d_sae, d_out]."""
    for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
        require_tensor(state, key, path)
    threshold = take(state, THRESHOLD, origins, "threshold")
    return SAEWeights(
        architecture="jumprelu" if threshold is not None else "relu",
        W_enc=take(state, "W_enc", origins, "W_enc", transpose=True),
        b_enc=take(state, "b_enc", origins, "b_enc"),
        W_dec=take(state, "W_dec", origins, "W_dec"),
        b_dec=take(state, "b_dec", origins, "b_dec"),
        threshold=threshold,
        apply_b_dec_to_input=False,
    )


def _skip(state: dict, weights: SAEWeights, path: Path) -> torch.Tensor | None:
    """`W_skip [d_out, d_in]` as our skip matrix `[d_in, d_out]` (None when absent)."""
    if "W_skip" not in state:
        return None
    skip = state["W_skip"]
    expected = (weights.b_dec.shape[0], weights.W_enc.shape[0])
    if tuple(skip.shape) != expected:
        raise InvalidInputError(f"tensor 'W_skip' has shape {tuple(skip.shape)}, expected [d_out, d_in] = {expected}", path)
    return skip.T.float().contiguous()
