"""Encodings of stored values: little-endian array blobs and strict JSON.

Blobs: window tokens are int32, example values float16, all little-endian regardless of the
machine. Example positions (which tokens of the window hold a stored value) come in two forms,
told apart by the blob's length: an even length is the first form, one uint16 per position
(every store before the compact form, and still written when it is the smaller); an odd length
is a tag byte (`POSITIONS_BITMAP`) then a little-endian bit per window position, trailing zero
bytes cut (a dense example of a 128-token window: 17 bytes instead of 254). Both decode to the
same positions, so the values a page shows are unchanged. JSON: numpy scalars/arrays become
plain numbers and lists; NaN and infinities (invalid JSON, rejected by PostgreSQL) become null.
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


POSITIONS_BITMAP = 1  # tag byte of a positions bitmap blob (odd length)
_BLOB_BITS = 1 << 23  # bounds the scratch array of bits when packing bitmaps


def split_positions(positions: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """One positions blob per CSR row (see the module doc): a bitmap where it is smaller than
    the uint16 list, else the uint16 list. Positions of a row must be strictly increasing."""
    positions = np.asarray(positions, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    plain = split_blob(positions, POSITION_DTYPE, offsets)
    counts = np.diff(offsets)
    last = np.where(counts > 0, positions[np.maximum(offsets[1:] - 1, 0)] if len(positions) else 0, -1)
    n_bytes = (last + 8) // 8
    n_bytes += n_bytes % 2  # even, so tag + bitmap is odd: the uint16 form is always even
    entry_row = np.repeat(np.arange(len(counts)), counts)
    unordered = np.flatnonzero((np.diff(positions) <= 0) & (entry_row[1:] == entry_row[:-1]))
    bitmap = 1 + n_bytes < 2 * counts
    bitmap[entry_row[unordered]] = False  # a bitmap holds increasing positions only
    tag = bytes([POSITIONS_BITMAP])
    step = max(1, _BLOB_BITS // max(1, int(n_bytes[bitmap].max(initial=1)) * 8))
    for lo in range(0, len(counts), step):
        hi = min(lo + step, len(counts))
        rows = np.flatnonzero(bitmap[lo:hi]) + lo
        if not len(rows):
            continue
        rows_of, at = entry_row[offsets[lo] : offsets[hi]], positions[offsets[lo] : offsets[hi]]
        keep = bitmap[rows_of]
        bits = np.zeros((hi - lo, int(n_bytes[rows].max()) * 8), dtype=bool)
        bits[rows_of[keep] - lo, at[keep]] = True
        packed = np.packbits(bits, axis=1, bitorder="little")
        for row, size in zip(rows.tolist(), n_bytes[rows].tolist(), strict=True):
            plain[row] = tag + packed[row - lo, :size].tobytes()
    return plain


def decode_positions(blob: bytes) -> np.ndarray:
    """The positions (uint16, increasing) of an examples row's positions blob, either form."""
    if len(blob) % 2 == 0:
        return np.frombuffer(blob, dtype=POSITION_DTYPE).astype(np.uint16)
    if blob[0] != POSITIONS_BITMAP:
        raise ValueError(f"unknown positions encoding {blob[0]}")
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8, offset=1), bitorder="little")
    return np.flatnonzero(bits).astype(np.uint16)


_BITS = tuple(tuple(i for i in range(8) if byte >> i & 1) for byte in range(256))


def position_list(blob: bytes) -> list[int]:
    """`decode_positions` as a list of ints, without numpy for bitmaps (a page reads 32 of them)."""
    if len(blob) % 2 == 0:
        return np.frombuffer(blob, dtype=POSITION_DTYPE).tolist()
    if blob[0] != POSITIONS_BITMAP:
        raise ValueError(f"unknown positions encoding {blob[0]}")
    return [base + bit for base, byte in zip(range(0, 8 * len(blob), 8), blob[1:]) for bit in _BITS[byte]]


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
