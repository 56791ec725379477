"""An atlas read as plain tables with no database ids: the canonical form every export is made
from and the round-trip tests compare.

Tables (one dict per row; sources are named by `model` + `source`, latents by `index`,
explanations by their `ordinal` among the latent's explanations, oldest first):

| table | one row per | fields |
|---|---|---|
| models | model | model, family, n_layers, d_model, d_mlp, vocab_size, bos_id, spec, vocab_sha256 |
| sources | built source | model, source, kind, hook_name, layer, d_in, d_sae, n_tokens, format, path, meta |
| latents | latent | model, source, index, max_act, frac_nonzero, mean_act, hist, logits, aligned, correlated |
| examples | stored example | model, source, index, kind, group, rank, window, max_value, max_pos, token_ids, tokens, values |
| explanations | explanation | model, source, index, ordinal, text, method, explainer_model, prompt_version, author, details |
| scores | score | model, source, index, ordinal, scorer, scorer_model, prompt_version, status, score, baseline_score, baseline, details, error |
| votes | vote | model, source, index, ordinal, user, value |

`tokens` are display text (decoded from the stored vocabulary), `values` are dense over the
window (0 where the latent is off). Keys an import adds to a source's meta (IMPORT_META_KEYS)
are left out, so an atlas and its re-import read the same.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select, tuple_

from latentpedia.engine.tokens import TokenText
from latentpedia.store import codec
from latentpedia.store.api import Store
from latentpedia.store.community_schema import Explanation, ExplanationScore, User, Vote
from latentpedia.store.records import SourceRecord
from latentpedia.store.results import LATENT_COLUMNS
from latentpedia.store.schema import SOURCE_READY, Example, Latent

TABLES = ("models", "sources", "latents", "examples", "explanations", "scores", "votes")
IMPORT_META_KEYS = ("import", "static")  # what import-neuronpedia adds to a source's meta
_PAGE = 2000  # examples per read


@dataclass
class ExplanationRows:
    """A source's explanations with their scores and votes (canonical rows)."""

    explanations: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)


def vocab_sha256(vocab: list[str]) -> str:
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()


class AtlasReader:
    """Reads the canonical tables of a store, source by source (memory bounded by a page)."""

    def __init__(self, store: Store):
        self.store = store
        self._texts: dict[str, TokenText] = {}

    def token_text(self, model_id: str) -> TokenText:
        if model_id not in self._texts:
            self._texts[model_id] = TokenText(self.store.get_vocab(model_id))
        return self._texts[model_id]

    def selected_sources(self, models: list[str] | None = None, sources: list[str] | None = None) -> list[SourceRecord]:
        """Built sources, of the given models / with the given names if given."""
        found = [s for s in self.store.list_sources() if s.status == SOURCE_READY]
        if models:
            found = [s for s in found if s.model_id in models]
        if sources:
            found = [s for s in found if s.name in sources]
        return found

    def model_row(self, model_id: str) -> dict[str, Any]:
        model = self.store.get_model(model_id)
        assert model is not None, model_id
        return {
            "model": model.id, "family": model.family, "n_layers": model.n_layers, "d_model": model.d_model,
            "d_mlp": model.d_mlp, "vocab_size": model.vocab_size, "bos_id": model.bos_id, "spec": model.spec,
            "vocab_sha256": vocab_sha256(self.store.get_vocab(model_id)),
        }  # fmt: skip

    @staticmethod
    def source_row(source: SourceRecord) -> dict[str, Any]:
        meta = {k: v for k, v in source.meta.items() if k not in IMPORT_META_KEYS}
        return {
            "model": source.model_id, "source": source.name, "kind": source.kind, "hook_name": source.hook_name,
            "layer": source.layer, "d_in": source.d_in, "d_sae": source.d_sae, "n_tokens": source.n_tokens,
            "format": source.format, "path": source.path, "meta": meta,
        }  # fmt: skip

    def latents(self, source: SourceRecord) -> Iterator[dict[str, Any]]:
        query = select(Latent).where(Latent.source_id == source.id).order_by(Latent.idx)
        with self.store._read() as session:
            rows = [{name: getattr(row, name) for name in LATENT_COLUMNS[1:]} for row in session.scalars(query)]
        for row in rows:
            yield {"model": source.model_id, "source": source.name, "index": row.pop("idx"), **row}

    def examples(self, source: SourceRecord) -> Iterator[dict[str, Any]]:
        """Examples by (index, kind, group, rank), with the window's token ids and text."""
        text = np.array([*self.token_text(source.model_id).texts, ""], dtype=object)  # "" last: see _texts
        after: tuple[int, int, int, int] = (-1, -1, -1, -1)
        while True:
            page = self._example_page(source.id, after)
            if not page:
                return
            windows = self._windows(source, page)
            for row in page:
                yield _example_row(source, row, windows[row.window], text)
            last = page[-1]
            after = (last.latent, last.kind, last.group, last.rank)

    def _example_page(self, source_id: int, after: tuple[int, int, int, int]) -> list[Any]:
        """Rows (not ORM objects: 2x faster) of the next page of examples after key `after`."""
        key = (Example.latent, Example.kind, Example.group, Example.rank)
        columns = (*key, Example.window, Example.max_value, Example.max_pos, Example.positions, Example.values)
        query = (
            select(*columns).where(Example.source_id == source_id, tuple_(*key) > after)
            .order_by(*key).limit(_PAGE)
        )  # fmt: skip
        with self.store._read() as session:
            return list(session.execute(query))

    def _windows(self, source: SourceRecord, page: list[Any]) -> dict[int, list[int]]:
        wanted = sorted({row.window for row in page})
        if source.corpus_id is None:
            raise ValueError(f"source {source.name!r} has examples but no corpus")
        tokens = self.store.get_windows(source.corpus_id, wanted)
        return {idx: tokens[i].tolist() for i, idx in enumerate(wanted)}

    def explanations(self, source: SourceRecord) -> ExplanationRows:
        """The source's explanations (oldest first per latent), their scores and votes."""
        with self.store._read() as session:
            rows = session.execute(
                select(Explanation, User.username).outerjoin(User, User.id == Explanation.author_id)
                .where(Explanation.source_id == source.id).order_by(Explanation.latent_index, Explanation.id)
            ).all()  # fmt: skip
            ids = [row.id for row, _ in rows]
            scores = list(session.scalars(
                select(ExplanationScore).where(ExplanationScore.explanation_id.in_(ids)).order_by(ExplanationScore.id)
            )) if ids else []  # fmt: skip
            votes = session.execute(
                select(Vote.explanation_id, User.username, Vote.value).join(User, User.id == Vote.user_id)
                .where(Vote.explanation_id.in_(ids)).order_by(Vote.explanation_id, User.username)
            ).all() if ids else []  # fmt: skip
        return _explanation_tables(source, rows, scores, votes)


def _example_row(source: SourceRecord, row: Any, token_ids: list[int], text: np.ndarray) -> dict[str, Any]:
    positions = codec.decode_positions(row.positions)
    values = np.zeros(len(token_ids), dtype=np.float32)
    values[positions] = codec.decode_array(row.values, codec.VALUE_DTYPE).astype(np.float32)
    return {
        "model": source.model_id, "source": source.name, "index": row.latent, "kind": row.kind,
        "group": row.group, "rank": row.rank, "window": row.window, "max_value": row.max_value,
        "max_pos": row.max_pos, "token_ids": token_ids, "tokens": _texts(text, token_ids), "values": values.tolist(),
    }  # fmt: skip


def _texts(text: np.ndarray, token_ids: list[int]) -> list[str]:
    """Display texts of ids; "" (the last entry of `text`) for an id outside the vocabulary."""
    ids = np.asarray(token_ids, dtype=np.int64)
    return text[np.where((ids >= 0) & (ids < len(text) - 1), ids, len(text) - 1)].tolist()


def _explanation_tables(source: SourceRecord, rows: list[Any], scores: list[ExplanationScore],
                        votes: list[Any]) -> ExplanationRows:  # fmt: skip
    out = ExplanationRows()
    ref: dict[int, tuple[int, int]] = {}  # explanation id -> (index, ordinal)
    ordinals: dict[int, int] = defaultdict(int)
    base = {"model": source.model_id, "source": source.name}
    for explanation, author in rows:
        ordinal = ordinals[explanation.latent_index]
        ordinals[explanation.latent_index] += 1
        ref[explanation.id] = (explanation.latent_index, ordinal)
        out.explanations.append({
            **base, "index": explanation.latent_index, "ordinal": ordinal, "text": explanation.text,
            "method": explanation.method, "explainer_model": explanation.explainer_model,
            "prompt_version": explanation.prompt_version, "author": author, "details": explanation.details or {},
        })  # fmt: skip
    for score in scores:
        index, ordinal = ref[score.explanation_id]
        baseline = ref.get(score.baseline_explanation_id) if score.baseline_explanation_id is not None else None
        out.scores.append({
            **base, "index": index, "ordinal": ordinal, "scorer": score.scorer, "scorer_model": score.scorer_model,
            "prompt_version": score.prompt_version, "status": score.status, "score": score.score,
            "baseline_score": score.baseline_score, "baseline": None if baseline is None else list(baseline),
            "details": score.details or {}, "error": score.error,
        })  # fmt: skip
    for explanation_id, username, value in votes:
        index, ordinal = ref[explanation_id]
        out.votes.append({**base, "index": index, "ordinal": ordinal, "user": username, "value": value})
    return out
