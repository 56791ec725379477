"""What explainers and scorers read: a latent's examples split into an explain and a score set.

`AtlasText` loads one source's corpus once (all windows as one token array, unigram counts, the
model's decoded vocabulary); `load_latents` reads a batch of latents' stored examples and
statistics in two queries (`read_latents`: the rows as stored, small and picklable, for a Ray
worker to decode with `decode_latents`); `load_latent` reads one.

The split is fixed and recorded with every result: explainers see the top examples of even rank
and the first sample of each quantile interval; scorers only use the others (odd-rank top
examples, the remaining quantile samples) plus random corpus windows. So an explanation is never
scored on an example its explainer saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sqlalchemy import select

from latentpedia.engine.tokens import TokenText
from latentpedia.errors import LatentpediaError
from latentpedia.store import codec
from latentpedia.store.api import Store
from latentpedia.store.schema import Example as ExampleRow
from latentpedia.store.schema import Latent

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
        self.store: Store | None = store
        self.source = store.get_source_by_id(source_id)
        if self.source is None:
            raise LatentpediaError(f"no source with id {source_id}")
        if self.source.corpus_id is None or self.source.status != "ready":
            raise LatentpediaError(f"source {self.source.name!r} is not built yet")
        corpus = store.get_corpus(self.source.corpus_id)
        self.corpus_key = (corpus.model_id, corpus.content_hash)  # chunk embeddings are shared per corpus
        self.text = TokenText(store.get_vocab(self.source.model_id))
        windows = list(store.iter_windows(self.source.corpus_id))
        self.windows = np.stack(windows) if windows else np.zeros((0, 1), dtype=np.int32)
        size = max(len(self.text.texts), int(self.windows.max(initial=0)) + 1)
        self.unigram = np.bincount(self.windows[:, 1:].ravel(), minlength=size).astype(np.float64)
        self.n_tokens = float(self.unigram.sum())

    def detached(self) -> AtlasText:
        """A copy without the store (picklable: what a Ray worker gets)."""
        copy = object.__new__(AtlasText)
        copy.__dict__.update(self.__dict__, store=None)
        return copy

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


@dataclass
class LatentRows:
    """A batch of latents as the store holds them: (idx, max_act, frac_nonzero, logits) and the
    examples' columns with their blobs undecoded (EXAMPLE_COLUMNS order)."""

    source_id: int
    latents: list[tuple[Any, ...]]
    examples: list[tuple[Any, ...]]


_EXAMPLE_COLUMNS = (ExampleRow.latent, ExampleRow.kind, ExampleRow.group, ExampleRow.rank, ExampleRow.window,
                    ExampleRow.max_value, ExampleRow.max_pos, ExampleRow.positions, ExampleRow.values)  # fmt: skip


def read_latents(store: Store, source_id: int, indices: list[int]) -> LatentRows:
    """The stored rows of these latents, in two queries (missing latents are left out)."""
    wanted = sorted({int(i) for i in indices})
    with store._read() as session:
        latents = session.execute(
            select(Latent.idx, Latent.max_act, Latent.frac_nonzero, Latent.logits)
            .where(Latent.source_id == source_id, Latent.idx.in_(wanted))
        ).all()  # fmt: skip
        examples = session.execute(
            select(*_EXAMPLE_COLUMNS).where(ExampleRow.source_id == source_id, ExampleRow.latent.in_(wanted))
            .order_by(ExampleRow.latent, ExampleRow.kind, ExampleRow.group, ExampleRow.rank)
        ).all()  # fmt: skip
    return LatentRows(source_id, [tuple(r) for r in latents], [tuple(r) for r in examples])


def decode_latents(atlas: AtlasText, rows: LatentRows) -> dict[int, LatentData]:
    """{index: LatentData} of the rows (examples split, per-token values dense)."""
    split: dict[int, tuple[list[Example], list[Example]]] = {int(r[0]): ([], []) for r in rows.latents}
    length = atlas.window_len
    for latent, kind, group, rank, window, max_value, max_pos, positions, values in rows.examples:
        if latent not in split:
            continue
        dense = np.zeros(length, dtype=np.float32)
        at = codec.decode_positions(positions).astype(np.int64)
        keep = at < length
        dense[at[keep]] = codec.decode_array(values, codec.VALUE_DTYPE).astype(np.float32)[keep]
        example = Example(kind=kind, group=group, rank=rank, window=window, tokens=atlas.windows[window], values=dense,
                          max_pos=int(max_pos), max_value=float(max_value or 0.0))  # fmt: skip
        split[latent][0 if is_explain_example(kind, rank) else 1].append(example)
    out = {}
    for idx, max_act, frac_nonzero, logits in rows.latents:
        logits = logits or {}
        explain, score = split[int(idx)]
        out[int(idx)] = LatentData(
            source_id=rows.source_id, index=int(idx), max_act=float(max_act or 0.0), frac_nonzero=float(frac_nonzero or 0.0),
            explain=explain, score=score, promotes=[(int(t), float(v)) for t, v in logits.get("pos") or []],
            suppresses=[(int(t), float(v)) for t, v in logits.get("neg") or []],
        )  # fmt: skip
    return out


def load_latents(atlas: AtlasText, indices: list[int]) -> dict[int, LatentData]:
    """{index: LatentData} of these latents; LatentpediaError naming the first one not built."""
    assert atlas.store is not None, "a detached AtlasText cannot read the store"
    out = decode_latents(atlas, read_latents(atlas.store, atlas.source.id, indices))
    missing = [i for i in indices if i not in out]
    if missing:
        raise LatentpediaError(f"source {atlas.source.name!r} has no built latent {missing[0]}")
    return out


def load_latent(atlas: AtlasText, index: int) -> LatentData:
    """The latent's stored examples (split) and logit effects; LatentpediaError if not built."""
    return load_latents(atlas, [index])[index]


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
