"""Reading back what automatic interpretation stored, for resuming and for baselines.

Writes go through the store's API (`add_explanations_bulk`, `add_scores_bulk`); this module only
answers "which latents of a source already have an explanation by this method, version and
model, and which scorers already scored it" in one query per source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from latentpedia.store.api import Store
from latentpedia.store.community_schema import Explanation, ExplanationScore
from latentpedia.store.explanation_search import ExplanationEmbedding, decode_vectors


@dataclass
class StoredExplanation:
    id: int
    latent_index: int
    text: str
    scorers: set[str] = field(default_factory=set)  # scorers with an "ok" or "error" row


def stored_explanations(
    store: Store, source_id: int, method: str, prompt_version: str | None, explainer_model: str | None
) -> dict[int, StoredExplanation]:
    """The newest automatic explanation per latent with this method/version/model, with the
    scorers that scored it."""
    query = (
        select(Explanation.id, Explanation.latent_index, Explanation.text)
        .where(Explanation.source_id == source_id, Explanation.method == method, Explanation.author_id.is_(None))
        .order_by(Explanation.id)
    )
    query = query.where(Explanation.prompt_version.is_(None) if prompt_version is None else Explanation.prompt_version == prompt_version)
    query = query.where(Explanation.explainer_model.is_(None) if explainer_model is None else Explanation.explainer_model == explainer_model)
    out: dict[int, StoredExplanation] = {}
    with store._read() as session:
        for eid, index, text in session.execute(query):
            out[index] = StoredExplanation(eid, index, text)  # later rows win: the newest
        ids = {e.id: e for e in out.values()}
        if ids:
            scored = select(ExplanationScore.explanation_id, ExplanationScore.scorer).join(
                Explanation, Explanation.id == ExplanationScore.explanation_id
            ).where(Explanation.source_id == source_id, Explanation.method == method)
            for eid, scorer in session.execute(scored):
                if eid in ids:
                    ids[eid].scorers.add(scorer)
    return out


def stored_vectors(store: Store, ids: list[int], embedder: str = "all-MiniLM-L6-v2") -> dict[int, np.ndarray]:
    """{explanation id: search vector} of those among `ids` embedded by `embedder`."""
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(ids), 4096):
        part = [int(i) for i in ids[start : start + 4096]]
        query = select(ExplanationEmbedding.explanation_id, ExplanationEmbedding.vector).where(
            ExplanationEmbedding.explanation_id.in_(part), ExplanationEmbedding.embedder == embedder)
        with store._read() as session:
            rows = session.execute(query).all()
        if rows:
            out.update(zip([r[0] for r in rows], decode_vectors([r[1] for r in rows]), strict=True))
    return out
