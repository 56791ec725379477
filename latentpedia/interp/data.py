"""What explainers and scorers read: a latent's examples split into an explain and a score set.

`AtlasText` loads one source's corpus once (all windows as one token array, unigram counts, the
model's decoded vocabulary); `load_latent` reads one latent's stored examples and statistics.

The split is fixed and recorded with every result: explainers see the top examples of even rank
and the first sample of each quantile interval; scorers only use the others (odd-rank top
examples, the remaining quantile samples) plus random corpus windows. So an explanation is never
scored on an example its explainer saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentpedia.errors import LatentpediaError
from latentpedia.store.api import Store
from latentpedia.engine.tokens import TokenText

SPLIT_RULE = "explain: top examples of even rank + quantile rank 0; score: the others + random windows"
TOP, QUANTILE = 0, 1


@dataclass
class Example:
    """One stored example window with dense per-token values (index 0 = BOS)."""

    kind: int
    group: int
    rank: int
    window: int
    tokens: np.ndarray  # [T] int32
    values: np.ndarray  # [T] float32, 0 where nothing was stored
    max_pos: int
    max_value: float

    def ref(self) -> list[int]:
        """[kind, group, rank, window]: how results refer to this example."""
        return [self.kind, self.group, self.rank, self.window]


@dataclass
class LatentData:
    source_id: int
    index: int
    max_act: float
    frac_nonzero: float
    explain: list[Example]
    score: list[Example]
    promotes: list[tuple[int, float]] = field(default_factory=list)
    suppresses: list[tuple[int, float]] = field(default_factory=list)

    @property
    def explain_top(self) -> list[Example]:
        return [e for e in self.explain if e.kind == TOP]

    @property
    def score_top(self) -> list[Example]:
        return [e for e in self.score if e.kind == TOP]

    def explain_refs(self) -> list[list[int]]:
        return [e.ref() for e in self.explain]


def is_explain_example(kind: int, rank: int) -> bool:
    """The split rule (see module doc)."""
    return rank % 2 == 0 if kind == TOP else rank == 0


class AtlasText:
    """One source's corpus and vocabulary, loaded once: windows, unigram counts, token text."""

    def __init__(self, store: Store, source_id: int):
        self.store = store
        self.source = store.get_source_by_id(source_id)
        if self.source is None:
            raise LatentpediaError(f"no source with id {source_id}")
        if self.source.corpus_id is None or self.source.status != "ready":
            raise LatentpediaError(f"source {self.source.name!r} is not built yet")
        self.text = TokenText(store.get_vocab(self.source.model_id))
        windows = list(store.iter_windows(self.source.corpus_id))
        self.windows = np.stack(windows) if windows else np.zeros((0, 1), dtype=np.int32)
        size = max(len(self.text.texts), int(self.windows.max(initial=0)) + 1)
        self.unigram = np.bincount(self.windows[:, 1:].ravel(), minlength=size).astype(np.float64)
        self.n_tokens = float(self.unigram.sum())

    @property
    def window_len(self) -> int:
        return int(self.windows.shape[1])

    def decode(self, token_ids: Any) -> str:
        return "".join(self.text.many([int(t) for t in token_ids]))

    def token(self, token_id: int) -> str:
        return self.text(int(token_id))

    def corpus_share(self, token_ids: np.ndarray) -> np.ndarray:
        """Smoothed corpus frequency of each token id."""
        return (self.unigram[token_ids] + 1.0) / (self.n_tokens + len(self.unigram))

    def random_positions(self, n: int, seed: int) -> list[tuple[int, int]]:
        """`n` random (window, position) pairs (position ≥ 1), reproducible from `seed`."""
        rng = np.random.default_rng(seed)
        w = rng.integers(0, len(self.windows), size=n)
        p = rng.integers(1, self.window_len, size=n)
        return [(int(a), int(b)) for a, b in zip(w, p, strict=True)]


def _dense(example: dict[str, Any], length: int) -> np.ndarray:
    values = np.zeros(length, dtype=np.float32)
    positions = np.asarray(example["positions"], dtype=np.int64)
    keep = positions < length
    values[positions[keep]] = np.asarray(example["values"], dtype=np.float32)[keep]
    return values


def load_latent(atlas: AtlasText, index: int) -> LatentData:
    """The latent's stored examples (split) and logit effects; LatentpediaError if not built."""
    source = atlas.source
    latent = atlas.store.get_latent(source.id, index)
    if latent is None:
        raise LatentpediaError(f"source {source.name!r} has no built latent {index}")
    explain, score = [], []
    for row in atlas.store.get_examples(source.id, index):
        tokens = atlas.windows[row["window"]]
        example = Example(
            kind=row["kind"], group=row["group"], rank=row["rank"], window=row["window"], tokens=tokens,
            values=_dense(row, len(tokens)), max_pos=int(row["max_pos"]), max_value=float(row["max_value"] or 0.0),
        )  # fmt: skip
        (explain if is_explain_example(example.kind, example.rank) else score).append(example)
    logits = latent.get("logits") or {}
    return LatentData(
        source_id=source.id, index=index, max_act=float(latent["max_act"] or 0.0),
        frac_nonzero=float(latent["frac_nonzero"] or 0.0), explain=explain, score=score,
        promotes=[(int(t), float(v)) for t, v in logits.get("pos") or []],
        suppresses=[(int(t), float(v)) for t, v in logits.get("neg") or []],
    )  # fmt: skip


def show_token(text: str) -> str:
    """A token's text for a label: whitespace made visible, quotes kept out."""
    stripped = text.strip()
    if stripped:
        return stripped.replace('"', "'")
    if "\n" in text:
        return "\\n"
    if "\t" in text:
        return "\\t"
    return "␣" if text else "∅"
