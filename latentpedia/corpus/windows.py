"""Documents -> fixed-length token windows: BOS first, documents packed and separated."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from latentpedia.corpus.default import Document
from latentpedia.errors import InvalidInputError

Tokenize = Callable[[list[str]], list[list[int]]]
_BATCH_DOCS = 64


@dataclass
class TokenizedCorpus:
    """Windows of `window_len` token ids; column 0 is always the BOS id."""

    windows: np.ndarray  # [n_windows, window_len] int32
    composition: dict[str, Any]
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        """Tokens that statistics are taken over (BOS excluded)."""
        return int(self.windows.shape[0] * (self.windows.shape[1] - 1))

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.windows, dtype="<i4").tobytes())
        return digest.hexdigest()[:32]


def check_window_budget(window_len: int, max_tokens: int) -> None:
    """InvalidInputError unless `window_len` (BOS included) and the token budget make at least one window."""
    if isinstance(window_len, bool) or not isinstance(window_len, int) or window_len < 2:
        raise InvalidInputError(f"the window length must be an integer of at least 2 (BOS + 1 token), got {window_len!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < window_len - 1:
        raise InvalidInputError(
            f"a budget of {max_tokens!r} tokens does not fill one window of {window_len} ({window_len - 1} tokens after BOS); "
            f"ask for at least {window_len - 1} tokens or shorten the window"
        )


def _tokenized(docs: Iterable[Document], tokenize: Tokenize) -> Iterator[tuple[Document, list[int]]]:
    docs = iter(docs)
    while batch := list(islice(docs, _BATCH_DOCS)):
        yield from zip(batch, tokenize([d.text for d in batch]))


def pack_windows(
    docs: Iterable[Document],
    tokenize: Tokenize,
    *,
    bos_id: int,
    sep_id: int,
    window_len: int = 128,
    max_tokens: int,
    origin: str | Path | None = None,
) -> TokenizedCorpus:
    """Pack documents (each followed by `sep_id`) into windows of `[bos] + window_len - 1` tokens.

    Stops once `max_tokens` non-BOS tokens are gathered; a trailing partial window is dropped.
    InvalidInputError (naming `origin`, the corpus) when not even one window can be filled.
    """
    check_window_budget(window_len, max_tokens)
    body = window_len - 1
    n_windows = max_tokens // body
    buffer = np.empty(n_windows * body, dtype=np.int32)
    filled = 0
    tokens_by_kind: Counter[str] = Counter()
    docs_by_kind: Counter[str] = Counter()
    for doc, ids in _tokenized(docs, tokenize):
        take = min(len(ids) + 1, buffer.size - filled)
        buffer[filled : filled + take] = np.asarray([*ids, sep_id][:take], dtype=np.int32)
        filled += take
        tokens_by_kind[doc.kind] += take
        docs_by_kind[doc.kind] += 1
        if filled == buffer.size:
            break
    n_windows = filled // body
    if n_windows == 0:
        problem = f"the corpus holds {filled:,} tokens: fewer tokens than one window ({body} after BOS); add text or shorten the window"
        raise InvalidInputError(problem, origin)
    windows = np.empty((n_windows, window_len), dtype=np.int32)
    windows[:, 0] = bos_id
    windows[:, 1:] = buffer[: n_windows * body].reshape(n_windows, body)
    composition = {
        "documents": dict(docs_by_kind),
        "tokens": dict(tokens_by_kind),
        "n_windows": n_windows,
        "window_len": window_len,
        "n_tokens": n_windows * body,
    }
    return TokenizedCorpus(windows, composition)
