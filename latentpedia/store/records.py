"""Plain records passed between the build and the store (no SQLAlchemy here)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
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


# Rows the store returns: frozen snapshots, read as attributes (`rec.id`) or as a read-only
# mapping (`rec["id"]`, `dict(rec)`); datetimes are timezone-aware UTC.


class _Record(Mapping[str, Any]):
    """Mapping access to a dataclass record's fields."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return dict(self)


@dataclass(frozen=True)
class ModelRecord(_Record):
    id: str
    family: str
    n_layers: int
    d_model: int
    d_mlp: int
    vocab_size: int
    bos_id: int
    spec: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class CorpusRecord(_Record):
    id: int
    model_id: str
    name: str
    spec: dict[str, Any]
    window_len: int
    n_windows: int
    n_tokens: int
    composition: dict[str, Any]
    content_hash: str
    created_at: datetime


@dataclass(frozen=True)
class SourceRecord(_Record):
    id: int
    model_id: str
    name: str
    kind: str
    hook_name: str
    layer: int | None
    d_in: int
    d_sae: int
    corpus_id: int | None
    status: str  # "pending" | "ready"
    n_tokens: int | None
    format: str | None
    path: str | None
    meta: dict[str, Any]
    created_at: datetime
    built_at: datetime | None


@dataclass(frozen=True)
class JobRecord(_Record):
    id: int
    kind: str
    target: str
    status: str  # as stored: "running" | "done" | "failed" | "interrupted" | "resumed" (jobs.job_state: as shown)
    progress: float  # 0..1
    message: str
    created_at: datetime
    updated_at: datetime
    pid: int | None  # the process running the job, on `host`
    host: str | None
    heartbeat_at: datetime | None  # last sign of life of that process
