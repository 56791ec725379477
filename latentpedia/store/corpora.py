"""Corpora: tokenized windows stored once per (model, content hash)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from latentpedia.store import codec
from latentpedia.store.base import StoreBase, to_record
from latentpedia.store.bulk import bulk_insert
from latentpedia.store.records import CorpusRecord
from latentpedia.store.schema import Corpus, Window

_IN_CHUNK = 500  # ids per IN (...) query
_PAGE = 1024  # windows per page of iter_windows


def _checked_windows(windows: np.ndarray, window_len: int) -> np.ndarray:
    """`windows` as a [n, window_len] little-endian int32 array, or ValueError."""
    array = np.asarray(windows)
    if array.ndim != 2 or array.shape[1] != window_len:
        raise ValueError(f"windows must have shape [n, {window_len}], got {list(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"windows must hold integer token ids, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int32).max):
        raise ValueError("token ids must be in [0, 2**31)")
    return np.ascontiguousarray(array, dtype=codec.TOKEN_DTYPE)


class CorpusMethods(StoreBase):
    """Adding and reading corpora and their windows."""

    def add_corpus(
        self,
        model_id: str,
        name: str,
        spec: dict[str, Any],
        window_len: int,
        windows: np.ndarray,
        composition: dict[str, Any],
        content_hash: str,
        n_tokens: int | None = None,
    ) -> int:
        """Store a corpus of `windows` ([n, window_len] token ids) in one transaction; its id.

        If the model already has a corpus with `content_hash`, return that id and write
        nothing. `n_tokens` defaults to n * window_len.
        """
        existing = self.find_corpus(model_id, content_hash)
        if existing is not None:
            return existing.id
        tokens = _checked_windows(windows, window_len)
        try:
            return self._insert_corpus(
                Corpus(
                    model_id=model_id,
                    name=name,
                    spec=spec,
                    window_len=window_len,
                    n_windows=len(tokens),
                    n_tokens=int(tokens.size if n_tokens is None else n_tokens),
                    composition=composition,
                    content_hash=content_hash,
                ),
                tokens,
            )
        except IntegrityError:
            existing = self.find_corpus(model_id, content_hash)  # a concurrent writer won
            if existing is None:
                raise
            return existing.id

    def _insert_corpus(self, corpus: Corpus, tokens: np.ndarray) -> int:
        """Insert the corpus row and its windows in one transaction; the new id."""
        with self._begin() as session:
            session.add(corpus)
            session.flush()
            rows = ((corpus.id, i, tokens[i].tobytes()) for i in range(len(tokens)))
            bulk_insert(session.connection(), Window.__table__, ("corpus_id", "idx", "tokens"), rows)
            return corpus.id

    def get_corpus(self, corpus_id: int) -> CorpusRecord | None:
        """The corpus with this id, or None."""
        with self._read() as session:
            row = session.get(Corpus, corpus_id)
            return None if row is None else to_record(CorpusRecord, row)

    def find_corpus(self, model_id: str, content_hash: str) -> CorpusRecord | None:
        """The model's corpus with this content hash, or None."""
        query = select(Corpus).where(Corpus.model_id == model_id, Corpus.content_hash == content_hash)
        with self._read() as session:
            row = session.scalars(query).first()
            return None if row is None else to_record(CorpusRecord, row)

    def list_corpora(self, model_id: str | None = None) -> list[CorpusRecord]:
        """All corpora (of one model if given), oldest first."""
        query = select(Corpus).order_by(Corpus.id)
        if model_id is not None:
            query = query.where(Corpus.model_id == model_id)
        with self._read() as session:
            return [to_record(CorpusRecord, row) for row in session.scalars(query)]

    def get_windows(self, corpus_id: int, idxs: Sequence[int] | np.ndarray) -> np.ndarray:
        """Token ids of windows `idxs` (any order, repeats allowed) as [len(idxs), T] int32.

        KeyError if the corpus or one of the windows does not exist.
        """
        corpus = self.get_corpus(corpus_id)
        if corpus is None:
            raise KeyError(f"no corpus {corpus_id}")
        wanted = [int(i) for i in np.asarray(idxs, dtype=np.int64).reshape(-1)]
        blobs: dict[int, bytes] = {}
        unique = sorted(set(wanted))
        with self._read() as session:
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                query = select(Window.idx, Window.tokens).where(
                    Window.corpus_id == corpus_id, Window.idx.in_(chunk)
                )
                blobs.update((idx, blob) for idx, blob in session.execute(query))
        missing = [i for i in unique if i not in blobs]
        if missing:
            raise KeyError(f"corpus {corpus_id} has no windows {missing[:10]}")
        out = np.empty((len(wanted), corpus.window_len), dtype=np.int32)
        for row, idx in enumerate(wanted):
            out[row] = np.frombuffer(blobs[idx], dtype=codec.TOKEN_DTYPE)
        return out

    def iter_windows(self, corpus_id: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Token ids ([T] int32) of windows start, start+1, ... < stop, in order.

        Reads pages of windows in short transactions, so a long iteration holds no lock.
        """
        cursor = start
        while stop is None or cursor < stop:
            limit = _PAGE if stop is None else min(_PAGE, stop - cursor)
            query = (
                select(Window.idx, Window.tokens)
                .where(Window.corpus_id == corpus_id, Window.idx >= cursor)
                .order_by(Window.idx)
                .limit(limit)
            )
            with self._read() as session:
                page = session.execute(query).all()
            if not page:
                return
            for _idx, blob in page:
                yield codec.decode_array(blob, codec.TOKEN_DTYPE).astype(np.int32, copy=False)
            cursor = page[-1][0] + 1
