"""Plain records passed between the build and the store (no SQLAlchemy here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LatentStats:
    """Per-latent dashboard statistics of one source, columnar (row i = latent i)."""

    max_act: np.ndarray  # [d] float32, max over tokens (BOS excluded)
    frac_nonzero: np.ndarray  # [d] float32, fraction of tokens with activation > 0
    mean_act: np.ndarray  # [d] float32, mean over all tokens
    hist: list[dict[str, Any]]  # per latent: {"edges": [51 floats], "counts": [50 ints]} of values > 0
    logits: list[dict[str, Any]]  # per latent: {"pos": [[token_id, value]...], "neg": [...],
    #                                 "hist": {"edges", "counts"}, "basis": "final_norm*W_U" | "W_U"}
    aligned: list[list[list[float]]]  # per latent: [[dim_index, value], ...] top |decoder entries|
    correlated: list[list[list[float]]]  # per latent: [[other_index, pearson], ...]


@dataclass
class ExampleBatch:
    """Stored examples of one source, columnar (row j = one example).

    `kind` 0 = top example (group = -1, rank = 0..k-1 by max descending),
    1 = quantile sample (group = interval 0..9 of (0, max], rank = 0..4).
    `positions`/`values` hold the example's non-zero per-token activations: positions are
    offsets into the window (uint16), values float16, one entry of `offsets` per example
    delimiting its slice (CSR layout: example j owns positions[offsets[j]:offsets[j+1]]).
    """

    latent: np.ndarray  # [n] int32
    kind: np.ndarray  # [n] int8
    group: np.ndarray  # [n] int8
    rank: np.ndarray  # [n] int16
    window: np.ndarray  # [n] int32, window index within the source's corpus
    max_value: np.ndarray  # [n] float32
    max_pos: np.ndarray  # [n] int16, offset of the max within the window
    offsets: np.ndarray  # [n + 1] int64
    positions: np.ndarray  # [nnz] uint16
    values: np.ndarray  # [nnz] float16


@dataclass
class SourceResults:
    stats: LatentStats
    examples: ExampleBatch
    n_tokens: int  # tokens seen (BOS excluded)
    meta: dict[str, Any] = field(default_factory=dict)  # build settings, timings, approximations
