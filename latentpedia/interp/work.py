"""What explaining and scoring compute, apart from the store: the same in this process and on a Ray worker.

The pipeline (the driver) reads latents from the store (`data.read_latents`: rows as stored),
hands them here in batches, and writes what comes back; a `Work` never touches the store. Each
call is a pure function of its arguments and of what the Work was built with, and every batch
the driver plans has the same content however the batches are spread, so a run on Ray workers
(ray_explain.py) writes exactly what a run in one process writes.

    work = Work(request)                               # loads the explainer, LLM clients, the embedder lazily
    work.explain(atlas, rows)                          # [(index, row | error, search vector | None)]
    work.embed(texts)                                  # [n, 384] MiniLM vectors, in the order given
    work.embed_chunks(atlas, keys)                     # the corpus chunks' vectors (embedding scorer)
    work.score(atlas, "embedding", rows, items, vectors)   # explanation_scores rows
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latentpedia.interp import registry
from latentpedia.interp.data import AtlasText, LatentRows, decode_latents
from latentpedia.interp.llm.client import LLMClient
from latentpedia.interp.registry import ScorerContext
from latentpedia.interp.scoring import score_with_baseline

# (explanation id, text, (baseline id, baseline text, baseline latent) | None) per latent to score
ScoreItem = tuple[int, str, "tuple[int | None, str, int] | None"]


class Work:
    """The explainer and scorers of one run (LLM clients shared by every source)."""

    def __init__(self, request: Any):
        self.request = request
        self.client = LLMClient(request.llm) if request.llm else None
        scorer_config = request.scorer_llm or request.llm
        self.scorer_backend = request.scorer_backend or (
            (self.client if scorer_config is request.llm else LLMClient(scorer_config)) if scorer_config else None
        )
        self.kind = registry.explainer(request.explainer)
        stored = self.kind.stored_as(request.variant)
        self.method, self.version = stored.method, stored.version
        self.model_name = request.llm.model if self.kind.needs_llm and request.llm else None
        self._explain = self.kind.build(self.client, request.variant)  # (atlas, latents) -> [row | error message]
        self._scorers: dict[tuple[int, str], Any] = {}

    def embedder(self) -> Any:
        from latentpedia.interp.embedding import WorkerEmbedder, shared_embedder

        return WorkerEmbedder(self.request.on_torch) if self.request.on_torch else shared_embedder()

    def embed(self, texts: list[str]) -> np.ndarray:
        """MiniLM vectors of `texts` (the explanation search's and the embedding scorer's space)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return self.embedder()(list(texts))

    def explain(self, atlas: AtlasText, rows: LatentRows, embed: bool = True) -> list[tuple[int, Any, np.ndarray | None]]:
        """Per latent of `rows` (LLM explainers: the live ones): its index, the explanation row
        (or an error message) and, with `embed`, the text's search vector."""
        latents = list(decode_latents(atlas, rows).values())
        if self.kind.needs_llm:
            latents = [lat for lat in latents if lat.max_act > 0]  # nothing to show an LLM
        results = self._explain(atlas, latents)
        texts = sorted({r["text"] for r in results if not isinstance(r, str)})
        vectors = dict(zip(texts, self.embed(texts), strict=True)) if embed else {}
        return [(lat.index, r, None if isinstance(r, str) else vectors.get(r["text"])) for lat, r in zip(latents, results, strict=True)]

    def embed_chunks(self, atlas: AtlasText, keys: list[tuple[int, int]]) -> np.ndarray:
        """Vectors of the corpus chunks (window, start), in the order given."""
        from latentpedia.interp.embedding import CHUNK

        return self.embed([atlas.decode(atlas.windows[w, s : s + CHUNK]) for w, s in keys])

    def scorer(self, atlas: AtlasText, name: str) -> Any:
        key = (atlas.source.id, name)
        if key not in self._scorers:
            context = ScorerContext(atlas, self.scorer_backend, self.request.seed, self.request.on_torch)
            self._scorers[key] = registry.SCORERS[name].build(context)
        return self._scorers[key]

    def score(self, atlas: AtlasText, name: str, rows: LatentRows, items: dict[int, ScoreItem],
              vectors: tuple[dict, dict] | None = None) -> list[tuple[int, dict[str, Any]]]:  # fmt: skip
        """(latent, explanation_scores row) for each latent of `items` (in index order), each
        scored beside its baseline. `vectors`: (chunk vectors, text vectors) the embedding scorer
        is given instead of embedding them itself."""
        latents = decode_latents(atlas, rows)
        scorer = self.scorer(atlas, name)
        if vectors is not None and hasattr(scorer, "provide"):
            scorer.provide(*vectors)
        wanted = sorted(items)
        if hasattr(scorer, "prepare"):
            texts = [items[i][1] for i in wanted] + [items[i][2][1] for i in wanted if items[i][2]]
            scorer.prepare([latents[i] for i in wanted], texts)
        return [(i, score_with_baseline(scorer, items[i][0], items[i][1], latents[i], items[i][2])) for i in wanted]

    def usage(self) -> Any:
        return self.client.usage if self.client is not None else None

    def close(self) -> None:
        for client in {id(c): c for c in (self.client, self.scorer_backend) if isinstance(c, LLMClient)}.values():
            client.close()
