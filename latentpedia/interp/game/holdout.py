"""A latent's held-out scoring set, fixed the first time it is played, and scoring on it.

The split is the atlas's own (interp/data.py): players see the explain set as clues (top
examples of even rank, the first sample of each quantile interval); the held-out positives are
the rest (top examples of odd rank and the other quantile samples). The negatives are
N_NEGATIVES random chunks of windows that hold none of the latent's stored examples, drawn with
a seed made of the source and the latent, so the set is the same on every server and never
changes once stored (game_latents.holdout). A player never sees a held-out example.

The score is the embedding scorer's (all-MiniLM-L6-v2): ROC-AUC of the cosine between the
explanation and each held-out chunk, positives against negatives (0.5 = chance). Beside it:
the random-explanation baseline and the machine's own explanation (the atlas's offline
explanation). The baseline is what a text unrelated to the latent does not reach by luck: the
higher of chance and the mean score of BASELINE_DRAWS random other latents' explanations on the
same set, plus one standard error of the AUC on that many examples (a latent with few held-out
examples scores noisily, so its bar is higher).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from latentpedia.interp import offline
from latentpedia.interp.data import QUANTILE, AtlasText, LatentData, load_latent
from latentpedia.interp.embedding import _CHUNKS, CHUNK, MODEL_NAME, chunk_start
from latentpedia.interp.metrics import roc_auc

Embed = Callable[[list[str]], np.ndarray]  # texts -> [n, 384] unit vectors
N_NEGATIVES = 32
CHANCE = 0.5
BASELINE_RULE = "max(chance, mean score of random other latents' explanations) + one standard error of the AUC under chance"
BASELINE_DRAWS = 5
RULE = "positives: the score split (top examples of odd rank, quantile samples of rank > 0); negatives: random chunks of windows holding no stored example"


def auc_standard_error(positives: int, negatives: int) -> float:
    """The standard error of a ROC-AUC of 0.5 on this many examples (Hanley & McNeil 1982): how
    far a text unrelated to the latent lands from chance by luck alone."""
    if positives < 1 or negatives < 1:
        return 0.5
    return math.sqrt((positives + negatives + 1) / (12 * positives * negatives))


def make_holdout(atlas: AtlasText, latent: LatentData) -> dict[str, Any]:
    """The held-out set of `latent`: [window, chunk start, kind, rank] positives, [window, start] negatives."""
    positives = [[e.window, chunk_start(e.max_pos, atlas.window_len), e.kind, e.rank] for e in latent.score]
    seen = {e.window for e in latent.explain + latent.score}
    free = np.array([w for w in range(len(atlas.windows)) if w not in seen], dtype=np.int64)
    rng = np.random.default_rng([atlas.source.id, latent.index, 12])
    negatives: list[list[int]] = []
    if len(free):
        windows = rng.choice(free, size=min(N_NEGATIVES, len(free)), replace=False)
        for w in sorted(int(x) for x in windows):
            position = int(rng.integers(1, atlas.window_len))
            negatives.append([w, chunk_start(position, atlas.window_len)])
    return {"positives": positives, "negatives": negatives, "chunk_tokens": CHUNK, "rule": RULE}


class HoldoutScorer:
    """Scores texts on stored held-out sets of one source (chunk embeddings cached per corpus)."""

    name = "embedding"
    model_name = MODEL_NAME

    def __init__(self, atlas: AtlasText, embed: Embed, cache_key: str = "shared"):
        self.atlas = atlas
        self.embed = embed
        corpus = atlas.store.get_corpus(atlas.source.corpus_id)
        self._chunks = _CHUNKS.setdefault((corpus.model_id, corpus.content_hash, cache_key), {})

    def _chunk_vectors(self, keys: list[tuple[int, int]]) -> np.ndarray:
        missing = sorted({k for k in keys if k not in self._chunks})
        if missing:
            w = self.atlas.windows
            snippets = [self.atlas.decode(w[win, s : s + CHUNK]) for win, s in missing]
            for key, vec in zip(missing, self.embed(snippets), strict=True):
                self._chunks[key] = vec
        return np.stack([self._chunks[k] for k in keys])

    def score_vectors(self, text_vectors: np.ndarray, holdout: dict[str, Any]) -> list[float | None]:
        """ROC-AUC of each text vector on the held-out set (None: the set has one class only)."""
        keys = [(p[0], p[1]) for p in holdout["positives"]] + [(n[0], n[1]) for n in holdout["negatives"]]
        labels = [1] * len(holdout["positives"]) + [0] * len(holdout["negatives"])
        if not keys:
            return [None] * len(text_vectors)
        sims = self._chunk_vectors(keys) @ np.asarray(text_vectors).T  # [examples, texts]
        return [roc_auc(sims[:, j].tolist(), labels) for j in range(sims.shape[1])]

    def score(self, texts: list[str], holdout: dict[str, Any]) -> list[float | None]:
        return self.score_vectors(self.embed(list(texts)), holdout) if texts else []


def reference_scores(atlas: AtlasText, latent: LatentData, scorer: HoldoutScorer, holdout: dict[str, Any],
                     machine: tuple[int | None, str] | None, others: dict[int, tuple[int, str]]) -> dict[str, Any]:  # fmt: skip
    """The baseline (mean over BASELINE_DRAWS random other latents' explanations: `others` maps
    latent -> (explanation id, text); missing ones are explained offline on the spot) and the
    machine explanation's score on `holdout`: the game_latents row's values."""
    rng = np.random.default_rng([atlas.source.id, latent.index, 34])
    d = atlas.source.d_sae
    draws = [int((latent.index + 1 + rng.integers(d - 1)) % d) for _ in range(BASELINE_DRAWS)] if d > 1 else []
    baseline_texts = [others[j][1] if j in others else offline.explain_offline(atlas, load_latent(atlas, j))["text"] for j in draws]
    if machine is None:
        machine = (None, offline.explain_offline(atlas, latent)["text"])
    scores = scorer.score(baseline_texts + [machine[1]], holdout)
    base = [s for s in scores[:-1] if s is not None]
    pool = float(np.mean(base)) if base else CHANCE
    error = auc_standard_error(len(holdout["positives"]), len(holdout["negatives"]))
    return {
        "baseline_score": max(CHANCE, pool) + error,
        "baseline": {"draws": [{"latent_index": j, "text": t, "score": s} for j, t, s in zip(draws, baseline_texts, scores, strict=False)],
                     "pool_mean": pool, "chance": CHANCE, "standard_error": error, "rule": BASELINE_RULE},
        "machine_explanation_id": machine[0],
        "machine_text": machine[1],
        "machine_score": scores[-1],
    }


def is_clue(kind: int, rank: int) -> bool:
    """Whether a stored example is shown to players (the explain split)."""
    from latentpedia.interp.data import is_explain_example

    return is_explain_example(kind, rank)


__all__ = ["HoldoutScorer", "QUANTILE", "is_clue", "make_holdout", "reference_scores"]
