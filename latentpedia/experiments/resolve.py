"""From an atlas' records to what experiments run on: a (model, source, index) -> a `Latent`,
stored means and corpus windows for mean and resample ablation. Sources themselves come from
`engine.resolve` (one loader, one cache)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from latentpedia.engine.resolve import load_source
from latentpedia.errors import NotFoundError
from latentpedia.experiments.common import Latent

if TYPE_CHECKING:
    from latentpedia.models.loader import LoadedModel
    from latentpedia.store.api import Store


def find_latent(store: Store, model: LoadedModel, source: str, index: int) -> Latent:
    """`Latent` for (model, source, index); NotFoundError if the atlas has no such latent."""
    src = load_source(store, model, source)
    if not 0 <= int(index) < src.d_sae:
        raise NotFoundError(f"latent {index} does not exist: {source} has latents 0..{src.d_sae - 1}")
    return Latent(src, int(index))


def stored_mean(store: Store, model_id: str, source: str, index: int) -> float | None:
    """The latent's mean activation over the atlas corpus, if the atlas has it."""
    record = store.get_source(model_id, source)
    stats = store.get_latent(record.id, int(index)) if record is not None else None
    value = None if stats is None else stats.get("mean_act")
    return None if value is None or not np.isfinite(value) else float(value)


def corpus_windows(store: Store, model_id: str, source: str | None = None, *, n: int = 8, seed: int = 0) -> torch.Tensor | None:
    """[n, T] random windows of the corpus the source was built on (else the model's latest)."""
    record = store.get_source(model_id, source) if source else None
    corpus_id = record.corpus_id if record is not None and record.corpus_id is not None else None
    if corpus_id is None:
        corpora = store.list_corpora(model_id)
        if not corpora:
            return None
        corpus_id = corpora[-1].id
    corpus = store.get_corpus(corpus_id)
    if corpus is None or corpus.n_windows == 0:
        return None
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(corpus.n_windows, size=min(n, corpus.n_windows), replace=False))
    return torch.as_tensor(np.asarray(store.get_windows(corpus_id, picks), dtype=np.int64))
