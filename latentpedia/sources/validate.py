"""Reading SAE files defensively, and checking what was read.

Every problem becomes `InvalidInputError(problem, path)` naming the file at fault and what is
wrong with it: a missing file or key (named), a shape (expected vs got, in the file's own
layout), a config value of the wrong type (which field), NaN/Inf values (which tensor, how
many), an unknown architecture, no latents, k out of range, an input width that is not the model
hook's. Nothing here writes to disk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentpedia.errors import InvalidInputError
from latentpedia.sources.architectures import ARCHITECTURES, get_architecture
from latentpedia.sources.formats.base import RawSAE
from latentpedia.sources.sae import NORMALIZERS


def require_file(path: Path, what: str = "file") -> Path:
    """`path` if it is an existing file, else InvalidInputError("missing ...")."""
    if not path.is_file():
        raise InvalidInputError(f"missing {what} {path.name!r} in {path.parent}", path)
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; missing or unreadable files name the problem."""
    require_file(path, "config file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"unreadable JSON: {exc}", path) from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"expected a JSON object, got {type(data).__name__}", path)
    return data


# What a config value must be, by name (used in messages): format loaders declare, for every
# config field they read, one of these (or a tuple of them) in a `CONFIG_TYPES` table.
INT, NUMBER, STR, BOOL, OBJECT = "an integer", "a number", "a string", "true or false", "a JSON object"
_IS: dict[str, Any] = {
    INT: lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    STR: lambda v: isinstance(v, str),
    BOOL: lambda v: isinstance(v, bool),
    OBJECT: lambda v: isinstance(v, dict),
}


def _lookup(cfg: Mapping[str, Any], dotted: str) -> Any:
    """`cfg["a"]["b"]` for "a.b" (None when a part is missing or not an object)."""
    value: Any = cfg
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def check_config_types(cfg: Mapping[str, Any], types: Mapping[str, str | tuple[str, ...]], path: Path) -> None:
    """InvalidInputError naming `path` and the field for the first value of the wrong type.

    `types` maps dotted field names ("metadata.hook_name") to INT, NUMBER, STR, BOOL, OBJECT or
    a tuple of them; list parents before their fields. Null counts as absent (the checks that
    need a value report it missing)."""
    for field, kinds in types.items():
        value = _lookup(cfg, field)
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        if value is not None and not any(_IS[kind](value) for kind in kinds):
            raise InvalidInputError(f"config field {field!r} must be {' or '.join(kinds)}, got {json.dumps(value)}", path)


def require_key(mapping: Mapping[str, Any], key: str, path: Path, what: str = "key",
                label: str | None = None) -> Any:
    """`mapping[key]`, else InvalidInputError naming the missing key (as `label`) and the file."""
    if key not in mapping or mapping[key] is None:
        present = ", ".join(sorted(map(str, mapping))[:20]) or "nothing"
        raise InvalidInputError(f"missing {what} {label or repr(key)} (present: {present})", path)
    return mapping[key]


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file (on CPU)."""
    from safetensors.torch import load_file

    require_file(path, "weights file")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises several unrelated types
        raise InvalidInputError(f"unreadable safetensors file: {exc}", path) from exc


def read_npz(path: Path) -> dict[str, torch.Tensor]:
    """All arrays of a .npz file, as tensors (pickled objects refused)."""
    require_file(path, "weights file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: torch.from_numpy(np.array(data[key])) for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"unreadable .npz file: {exc}", path) from exc


def read_torch_state(path: Path) -> dict[str, torch.Tensor]:
    """A torch state dict, loaded with `weights_only=True` (no code from the file runs)."""
    require_file(path, "weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip / unsafe-global errors
        raise InvalidInputError(f"unreadable torch file: {exc}", path) from exc
    if not isinstance(state, Mapping):
        raise InvalidInputError(f"expected a state dict, got {type(state).__name__}", path)
    return {str(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}


def require_tensor(state: Mapping[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    """`state[key]`, else InvalidInputError("missing tensor 'key'")."""
    return require_key(state, key, path, what="tensor")


def check_sae(raw: RawSAE, expected_d_in: int | None = None) -> None:
    """Raise InvalidInputError for the first problem found in a freshly read SAE."""
    _check_architecture(raw)
    dims = _dims(raw)
    _check_shapes(raw, dims)
    _check_finite(raw)
    _check_settings(raw, dims)
    if expected_d_in is not None and dims["d_in"] != expected_d_in:
        raise InvalidInputError(
            f"SAE input width d_in={dims['d_in']} does not match the model hook's width "
            f"{expected_d_in}{_hook_note(raw)}",
            raw.weights_path,
        )


def _hook_note(raw: RawSAE) -> str:
    return f" (hook {raw.hook_name})" if raw.hook_name else ""


def _check_architecture(raw: RawSAE) -> None:
    w = raw.weights
    arch = get_architecture(w.architecture)
    if arch is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise InvalidInputError(f"unknown SAE architecture {w.architecture!r} (known: {known})", raw.config_file)
    for name in arch.required:
        if getattr(w, name) is None:
            key = raw.origins.get(name, (name, False))[0]
            where = raw.config_file if name == "k" else raw.weights_path
            what = "setting" if name == "k" else "tensor"
            raise InvalidInputError(f"missing {what} {key!r} needed by the {arch.name} architecture", where)


def _dims(raw: RawSAE) -> dict[str, int]:
    """d_in, d_sae, d_out from the encoder and decoder, checked against what the cfg declares."""
    w = raw.weights
    for name in ("W_enc", "W_dec"):
        tensor = getattr(w, name)
        if tensor.ndim != 2:
            raise InvalidInputError(
                f"tensor {_label(raw, name)} must be 2-D, got shape {_shape(raw, name, tensor.shape)}",
                raw.weights_path,
            )
    dims = {"d_in": w.d_in, "d_sae": w.d_sae, "d_out": w.d_out}
    for name, value in dims.items():
        if value < 1:
            tensor = "W_dec" if name == "d_out" else "W_enc"
            raise InvalidInputError(
                f"{name}={value}: an SAE needs at least one {'latent' if name == 'd_sae' else 'dimension'} "
                f"({_label(raw, tensor)} has shape {_shape(raw, tensor, getattr(w, tensor).shape)})",
                raw.weights_path,
            )
    for name, declared in raw.declared.items():
        if declared is not None and int(declared) != dims[name]:
            raise InvalidInputError(
                f"config says {name}={declared} but the weights have {name}={dims[name]} "
                f"({_label(raw, 'W_enc' if name != 'd_out' else 'W_dec')} in {raw.weights_path.name})",
                raw.config_file,
            )
    return dims


def _expected_shapes(dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Canonical shapes of every tensor but W_enc (which defines d_in and d_sae)."""
    d_sae, d_out = dims["d_sae"], dims["d_out"]
    vector = (d_sae,)
    return {"b_enc": vector, "W_dec": (d_sae, d_out), "b_dec": (d_out,), "threshold": vector,
            "r_mag": vector, "b_mag": vector}


def _check_shapes(raw: RawSAE, dims: dict[str, int]) -> None:
    tensors = raw.weights.tensors()
    for name, expected in _expected_shapes(dims).items():
        if name in tensors and tuple(tensors[name].shape) != expected:
            raise InvalidInputError(
                f"tensor {_label(raw, name)} has shape {_shape(raw, name, tensors[name].shape)}, "
                f"expected {_shape(raw, name, expected)} ({_dims_note(dims)})",
                raw.weights_path,
            )


def _check_finite(raw: RawSAE) -> None:
    for name, tensor in raw.weights.tensors().items():
        if not tensor.is_floating_point():
            problem = f"tensor {_label(raw, name)} is not floating point ({tensor.dtype})"
            raise InvalidInputError(problem, raw.weights_path)
        nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        if nan or inf:
            raise InvalidInputError(
                f"tensor {_label(raw, name)} contains {nan} NaN and {inf} Inf values (of {tensor.numel()})",
                raw.weights_path,
            )
    factor = raw.weights.norm_scaling_factor
    if factor is not None and not (np.isfinite(factor) and factor > 0):
        raise InvalidInputError(f"activation scaling factor must be a positive number, got {factor}", raw.config_file)


def _check_settings(raw: RawSAE, dims: dict[str, int]) -> None:
    w = raw.weights
    if w.k is not None and not 0 < w.k <= dims["d_sae"]:
        raise InvalidInputError(f"k={w.k} must be between 1 and d_sae={dims['d_sae']}", raw.config_file)
    if w.architecture == "groupmax" and dims["d_sae"] % int(w.k or 1):
        raise InvalidInputError(f"groupmax needs d_sae={dims['d_sae']} divisible by k={w.k}", raw.config_file)
    if w.normalize_activations not in NORMALIZERS:
        known = ", ".join(NORMALIZERS)
        raise InvalidInputError(
            f"unsupported normalize_activations {w.normalize_activations!r} (supported: {known})", raw.config_file
        )
    if w.apply_b_dec_to_input and dims["d_out"] != dims["d_in"]:
        raise InvalidInputError(
            f"apply_b_dec_to_input needs b_dec of the input width {dims['d_in']}, got {dims['d_out']}",
            raw.config_file,
        )


def _label(raw: RawSAE, name: str) -> str:
    key, transposed = raw.origins.get(name, (name, False))
    return repr(key) if key == name else f"{key!r} (our {name}{', transposed' if transposed else ''})"


def _shape(raw: RawSAE, name: str, shape: tuple[int, ...] | torch.Size) -> str:
    """A shape as the file stores it (reversed for tensors the loader transposed)."""
    dims = list(shape)
    if raw.origins.get(name, (name, False))[1]:
        dims.reverse()
    return "[" + ", ".join(map(str, dims)) + "]"


def _dims_note(dims: dict[str, int]) -> str:
    return ", ".join(f"{key}={value}" for key, value in dims.items())
