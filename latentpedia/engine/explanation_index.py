"""The vector index of explanation embeddings, and hybrid (semantic + full-text) search.

    index = explanation_index(store)                     # one per open Store, kept in sync
    hits, total = search_explanations(store, "python exceptions", vector, filters, mode="hybrid")

The embeddings are durable in the store (store/explanation_search.py, float32 blobs); an index
is derived data, rebuilt or caught up from them:

- below `BRUTE_FORCE_MAX` vectors (100k) an exact numpy matrix (a product of the query with
  every row: ~20 ms at 100k);
- above it an HNSW graph (usearch, cosine, f16 vectors, M=16, ef 80 to build, ≥128 to search), persisted beside the data dir
  (`<data dir>/search-index/<store fingerprint>.usearch`) so a server start reloads it in
  seconds instead of rebuilding it; a stored index whose first and last vectors do not match the
  store's any more (the database was replaced) is rebuilt;
- on a PostgreSQL server with the `vector` extension, pgvector (`PgvectorIndex`).

New explanations reach the index through a watermark: every search first adds the embeddings
whose explanation id is above the highest one indexed (one indexed range query). Deleted
explanations leave the store's embeddings by cascade and the index lazily, when a search meets
their id. Searches with filters ask the index for more candidates until enough pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from latentpedia.store.explanation_search import (
    DIM,
    ExplanationFilter,
    ExplanationHit,
    embeddings_after,
    existing_ids,
    filtered_rows,
    has_pgvector,
    text_search,
)

BRUTE_FORCE_MAX = 100_000
SYNC_BATCH = 50_000
RRF_K = 60  # reciprocal rank fusion: score = sum over lists of 1 / (RRF_K + rank)
Mode = Literal["hybrid", "semantic", "text"]


class VectorIndex(Protocol):
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: Sequence[int]) -> None: ...
    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...  # ids, cosines (best first)
    def __len__(self) -> int: ...


class ExactIndex:
    """Every vector in one float32 matrix; a search is one matrix-vector product."""

    kind = "exact"

    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, DIM), dtype=np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        self.matrix = np.concatenate([self.matrix, vectors.astype(np.float32)])

    def remove(self, ids: Sequence[int]) -> None:
        keep = ~np.isin(self.ids, np.asarray(list(ids), dtype=np.int64))
        self.ids, self.matrix = self.ids[keep], self.matrix[keep]

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not len(self.ids) or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        sims = self.matrix @ vector.astype(np.float32)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.lexsort((self.ids[top], -sims[top]))]
        return self.ids[top], sims[top]

    def __len__(self) -> int:
        return len(self.ids)


class HnswIndex:
    """An approximate HNSW index (usearch; cosine over f16 vectors), keys = explanation ids."""

    kind = "hnsw"

    def __init__(self, connectivity: int = 16, expansion_add: int = 80, expansion_search: int = 128):
        from usearch.index import Index

        self.index = Index(ndim=DIM, metric="cos", dtype="f16", connectivity=connectivity,
                           expansion_add=expansion_add, expansion_search=expansion_search)  # fmt: skip

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add(ids.astype(np.uint64), vectors.astype(np.float32), threads=os.cpu_count() or 1)

    def remove(self, ids: Sequence[int]) -> None:
        for i in ids:
            self.index.remove(int(i))

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.index) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        self.index.expansion_search = max(128, k)
        found = self.index.search(vector.astype(np.float32), min(k, len(self.index)))
        return found.keys.astype(np.int64), (1.0 - found.distances).astype(np.float32)

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    def load(self, path: Path) -> None:
        self.index.load(str(path))

    def __len__(self) -> int:
        return len(self.index)


class PgvectorIndex:
    """The vectors in a pgvector column of the PostgreSQL server (used only when the server has
    the extension): `explanation_pgvectors`, HNSW-indexed, filled from the float32 blobs."""

    kind = "pgvector"

    def __init__(self, store: Any):
        from sqlalchemy import text

        self.store, self.text = store, text
        with store.engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            conn.execute(text(f"CREATE TABLE IF NOT EXISTS explanation_pgvectors (explanation_id integer PRIMARY KEY "
                              f"REFERENCES explanations(id) ON DELETE CASCADE, embedding vector({DIM}) NOT NULL)"))  # fmt: skip
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_explanation_pgvectors_hnsw ON explanation_pgvectors "
                              "USING hnsw (embedding vector_cosine_ops)"))  # fmt: skip
            self.count = conn.execute(text("SELECT count(*) FROM explanation_pgvectors")).scalar() or 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        rows = [{"i": int(i), "v": _pg_vector(v)} for i, v in zip(ids, vectors, strict=True)]
        if rows:
            with self.store.engine.begin() as conn:
                conn.execute(self.text("INSERT INTO explanation_pgvectors VALUES (:i, CAST(:v AS vector)) ON CONFLICT DO NOTHING"), rows)
            self.count += len(rows)

    def remove(self, ids: Sequence[int]) -> None:  # rows leave by ON DELETE CASCADE
        pass

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        query = self.text("SELECT explanation_id, 1 - (embedding <=> CAST(:q AS vector)) FROM explanation_pgvectors "
                          "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k")  # fmt: skip
        with self.store.engine.connect() as conn:
            rows = conn.execute(query, {"q": _pg_vector(vector), "k": int(k)}).all()
        return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float32)

    def max_id(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(self.text("SELECT coalesce(max(explanation_id), 0) FROM explanation_pgvectors")).scalar())

    def __len__(self) -> int:
        return int(self.count)


def _pg_vector(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32)) + "]"


def backend_for(store: Any) -> str:
    """"pgvector" when the PostgreSQL server has the extension, else "local" (exact / HNSW)."""
    return "pgvector" if has_pgvector(store) else "local"


class ExplanationIndex:
    """The search index of one store: caught up from the store on every search."""

    def __init__(self, store: Any, *, brute_force_max: int = BRUTE_FORCE_MAX, persist_dir: Path | None = None,
                 backend: str | None = None):  # fmt: skip
        self.store = store
        self.brute_force_max = brute_force_max
        self.persist_dir = persist_dir
        self.backend = backend or backend_for(store)
        self.lock = threading.RLock()
        self.watermark = 0
        self.index: Any = PgvectorIndex(store) if self.backend == "pgvector" else ExactIndex()
        if self.backend == "pgvector":
            self.watermark = self.index.max_id()
        elif persist_dir is not None:
            self._load()

    @property
    def kind(self) -> str:
        return self.index.kind

    def sync(self) -> int:
        """Add every embedding above the watermark; returns how many were added."""
        added = 0
        with self.lock:
            while True:
                ids, vectors = embeddings_after(self.store, self.watermark, SYNC_BATCH)
                if not len(ids):
                    break
                self._add(ids, vectors)
                self.watermark = int(ids[-1])
                added += len(ids)
            if added and self.kind == "hnsw" and added >= 1000:
                self._save()
        return added

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if isinstance(self.index, ExactIndex) and len(self.index) + len(ids) > self.brute_force_max:
            exact, self.index = self.index, HnswIndex()
            self.index.add(exact.ids, exact.matrix)
        self.index.add(ids, vectors)

    def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` nearest explanation ids and their cosine similarity (after a sync)."""
        self.sync()
        with self.lock:
            return self.index.search(vector, k)

    def forget(self, ids: Sequence[int]) -> None:
        """Drop ids whose explanations are gone."""
        gone = set(map(int, ids)) - existing_ids(self.store, ids)
        if gone:
            with self.lock:
                self.index.remove(sorted(gone))

    # persistence of a large HNSW index (small indexes are rebuilt from the store in well under a second)

    def _paths(self) -> tuple[Path, Path]:
        assert self.persist_dir is not None
        url = self.store.engine.url.render_as_string(hide_password=True)
        name = hashlib.sha256(url.encode()).hexdigest()[:16]
        return self.persist_dir / f"{name}.usearch", self.persist_dir / f"{name}.json"

    def _fingerprint(self) -> dict[str, Any]:
        """The first and last indexed embeddings' hash: a replaced database does not match."""
        first_ids, first = embeddings_after(self.store, 0, 1)
        last_ids, last = embeddings_after(self.store, self.watermark - 1, 1)
        digest = hashlib.sha256(first.tobytes() + last.tobytes()).hexdigest()
        return {"watermark": self.watermark, "first": first_ids.tolist(), "last": last_ids.tolist(), "digest": digest}

    def _save(self) -> None:
        if self.persist_dir is None:
            return
        index_path, meta_path = self._paths()
        index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_path.with_suffix(f".tmp{os.getpid()}")
        self.index.save(tmp)
        os.replace(tmp, index_path)
        meta_path.write_text(json.dumps(self._fingerprint()))

    def _load(self) -> None:
        index_path, meta_path = self._paths()
        if not (index_path.exists() and meta_path.exists()):
            return
        try:
            meta = json.loads(meta_path.read_text())
            self.watermark = int(meta["watermark"])
            if self._fingerprint() != meta:
                self.watermark = 0
                return
            hnsw = HnswIndex()
            hnsw.load(index_path)
            self.index = hnsw
        except (OSError, ValueError, KeyError, RuntimeError):
            self.watermark, self.index = 0, ExactIndex()


_INDEXES: weakref.WeakKeyDictionary[Any, ExplanationIndex] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def default_persist_dir() -> Path:
    from latentpedia.config import data_dir

    return data_dir() / "search-index"


def explanation_index(store: Any) -> ExplanationIndex:
    """The index of this open store (made on first use, kept while the store is open)."""
    with _INDEXES_LOCK:
        if store not in _INDEXES:
            _INDEXES[store] = ExplanationIndex(store, persist_dir=default_persist_dir())
        return _INDEXES[store]


@dataclass(frozen=True)
class RankedHit:
    hit: ExplanationHit
    rrf: float
    cosine_similarity: float | None
    text_rank: int | None  # 1-based rank in the full-text list


def semantic_candidates(store: Any, vector: np.ndarray, filters: ExplanationFilter, want: int) -> list[tuple[ExplanationHit, float]]:
    """The `want` nearest explanations passing `filters`, best first, with their cosine."""
    index = explanation_index(store)
    k = max(want * 4, 64)
    while True:
        ids, sims = index.nearest(vector, k)
        rows = filtered_rows(store, ids.tolist(), filters)
        missing = [int(i) for i in ids if int(i) not in rows]
        if missing and filters.empty:
            index.forget(missing)
        found = [(rows[int(i)], float(s)) for i, s in zip(ids, sims, strict=True) if int(i) in rows]
        if len(found) >= want or len(ids) < k or k >= len(index.index):
            return found[:want]
        k *= 4


def search_explanations(store: Any, query: str, vector: np.ndarray | None, filters: ExplanationFilter, *,
                        mode: Mode = "hybrid", offset: int = 0, limit: int = 20) -> list[RankedHit]:  # fmt: skip
    """One ranked list: the semantic list (needs `vector`) and the full-text list of `query`,
    merged by reciprocal rank fusion (or one of them alone, `mode`); rows offset..offset+limit."""
    want = offset + limit
    semantic = semantic_candidates(store, vector, filters, want) if mode != "text" and vector is not None else []
    textual = text_search(store, query, filters, want) if mode != "semantic" else []
    fused: dict[int, dict[str, Any]] = {}
    for rank, (hit, cosine) in enumerate(semantic, 1):
        fused[hit.id] = {"hit": hit, "rrf": 1.0 / (RRF_K + rank), "cos": cosine, "text": None}
    text_hits = filtered_rows(store, [i for i, _ in textual if i not in fused], filters)
    for rank, (eid, _rel) in enumerate(textual, 1):
        entry = fused.get(eid) or fused.setdefault(eid, {"hit": text_hits.get(eid), "rrf": 0.0, "cos": None, "text": None})
        entry["rrf"] += 1.0 / (RRF_K + rank)
        entry["text"] = rank
    ranked = sorted((e for e in fused.values() if e["hit"] is not None), key=lambda e: (-e["rrf"], e["hit"].id))
    return [RankedHit(e["hit"], e["rrf"], e["cos"], e["text"]) for e in ranked[offset:want]]


def with_cosines(store: Any, hits: list[RankedHit], vector: np.ndarray | None) -> list[RankedHit]:
    """Fill the cosine of full-text-only hits from their stored embeddings (for display)."""
    missing = [h.hit.id for h in hits if h.cosine_similarity is None]
    if vector is None or not missing:
        return hits
    from latentpedia.store.explanation_search import vectors_of

    vectors = vectors_of(store, missing)
    return [replace(h, cosine_similarity=float(vectors[h.hit.id] @ vector)) if h.hit.id in vectors else h for h in hits]
