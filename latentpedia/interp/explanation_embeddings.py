"""Embedding explanations for search: each explanation's text once, with the offline MiniLM.

    embed_explanations(store)                       # every explanation without an embedding (backfill)
    embed_explanations(store, ids=[12, 13])         # just written ones (write paths)
    embed_explanations(store, embed=WorkerEmbedder(on_torch))   # the web: torch on the worker
    embed_query("python exceptions")                # [384] float32, unit norm

Vectors go to the store (store/explanation_search.py) as float32 blobs; the search index
(engine/explanation_index.py) is derived from them. Resumable by construction: only
explanations without a vector are embedded, in id order, one transaction per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from latentpedia.interp.embedding import MODEL_NAME, shared_embedder
from latentpedia.store.explanation_search import pending_explanations, put_embeddings

Embed = Callable[[list[str]], np.ndarray]
BATCH = 256


def embed_explanations(store: Any, embed: Embed | None = None, *, ids: Iterable[int] | None = None, after_id: int = 0,
                       limit: int | None = None, batch: int = BATCH,
                       progress: Callable[[int], None] | None = None) -> int:  # fmt: skip
    """Embed explanations that have no vector yet (all, those among `ids`, or above `after_id`),
    at most `limit`; returns how many were stored. `progress(n)` after each batch."""
    embed = embed or shared_embedder()
    wanted = None if ids is None else sorted({int(i) for i in ids})
    if wanted is not None and not wanted:
        return 0
    done = 0
    while limit is None or done < limit:
        size = batch if limit is None else min(batch, limit - done)
        rows = pending_explanations(store, after_id, size, wanted)
        if not rows:
            break
        vectors = embed([text for _, text in rows])
        done += put_embeddings(store, zip([i for i, _ in rows], vectors, strict=True), MODEL_NAME)
        after_id = rows[-1][0]
        if progress is not None:
            progress(len(rows))
    return done


def embed_query(text: str, embed: Embed | None = None) -> np.ndarray:
    """A search query's vector (unit norm), in the explanations' space."""
    return (embed or shared_embedder())([text])[0]
