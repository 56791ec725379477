"""Encodings of stored values: little-endian array blobs and strict JSON.

Blobs: window tokens are int32, example positions uint16, example values float16, all
little-endian regardless of the machine. JSON: numpy scalars/arrays become plain numbers
and lists; NaN and infinities (invalid JSON, rejected by PostgreSQL) become null.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

TOKEN_DTYPE = np.dtype("<i4")
POSITION_DTYPE = np.dtype("<u2")
VALUE_DTYPE = np.dtype("<f2")


def encode_array(values: np.ndarray | list[Any], dtype: np.dtype) -> bytes:
    """`values` as a little-endian blob of `dtype`."""
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def decode_array(blob: bytes, dtype: np.dtype) -> np.ndarray:
    """A blob written by `encode_array` as a native-endian array (a copy, writable)."""
    return np.frombuffer(blob, dtype=dtype).astype(dtype.newbyteorder("="))


def split_blob(values: np.ndarray, dtype: np.dtype, offsets: np.ndarray) -> list[bytes]:
    """One blob per CSR row: row j is `values[offsets[j]:offsets[j+1]]` as `dtype` bytes."""
    data = encode_array(values, dtype)
    bounds = (np.asarray(offsets, dtype=np.int64) * dtype.itemsize).tolist()
    return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _plain(obj: Any) -> Any:
    """`json.dumps` fallback for numpy values."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """A copy of a JSON-able structure with non-finite floats replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray | np.generic):
        return _finite(_plain(obj))
    return obj


def dumps(obj: Any) -> str:
    """Compact strict JSON of `obj` (numpy accepted, non-finite floats as null)."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_plain)
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False, default=_plain)


def finite_or_none(value: float) -> float | None:
    """A float column value: NaN/inf stored as NULL (SQLite would do so silently)."""
    return value if math.isfinite(value) else None
