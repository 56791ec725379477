"""Explanation search in the store (migration 0005): embeddings and full-text search.

    put_embeddings(store, [(explanation_id, vector)], embedder)   # float32 blobs, durable
    embeddings_after(store, after_id, limit)   # (ids, [n, dim] float32): what an index catches up on
    pending_explanations(store, after_id, limit)   # explanations with no embedding yet (backfill)
    text_search(store, "python exceptions", ExplanationFilter(...), limit)   # [(id, rank score)]
    filtered_rows(store, ids, ExplanationFilter(...))   # hits with latent stats, filters applied

Full text: SQLite an FTS5 table `explanations_fts` over `explanations.text` (external content,
kept in sync by triggers, porter stemming); PostgreSQL a GIN index over
`to_tsvector('english', text)`. Both are made by migration 0005 and are not SQLAlchemy models:
`UNMANAGED_NAMES` tells the migration check to leave them out. The vector index itself lives in
engine/explanation_index.py; the store only keeps the vectors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, String, and_, exists, func, literal_column, select, text
from sqlalchemy.orm import Mapped, mapped_column

from latentpedia.store.community_schema import Explanation, ExplanationScore, User
from latentpedia.store.schema import Base, Latent, Source

DIM = 384  # all-MiniLM-L6-v2
FTS_TABLE = "explanations_fts"
PG_FTS_INDEX = "ix_explanations_text_fts"
# made by migration 0005 with raw SQL (FTS5 table and its shadow tables, the GIN expression index)
UNMANAGED_NAMES = frozenset({FTS_TABLE, *(f"{FTS_TABLE}_{s}" for s in ("data", "idx", "content", "docsize", "config")), PG_FTS_INDEX})
MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)


class ExplanationEmbedding(Base):
    """The embedding of one explanation's text (float32, unit norm), written once."""

    __tablename__ = "explanation_embeddings"

    explanation_id: Mapped[int] = mapped_column(ForeignKey("explanations.id", ondelete="CASCADE"), primary_key=True,
                                                autoincrement=False)  # fmt: skip
    embedder: Mapped[str] = mapped_column(String(100))
    vector: Mapped[bytes] = mapped_column(LargeBinary)


@dataclass(frozen=True)
class ExplanationFilter:
    """What a search keeps: all given conditions hold (sources are names within `model`)."""

    model: str | None = None
    sources: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()  # explanation type (`explanations.method`)
    author: str | None = None  # a username, or "auto" for automatic explanations
    min_score: float | None = None  # some ok score of the explanation >= this
    min_density: float | None = None
    max_density: float | None = None

    def conditions(self) -> list[Any]:
        """SQL conditions over Explanation, Source (joined) and Latent (outer-joined)."""
        where: list[Any] = []
        if self.model is not None:
            where.append(Source.model_id == self.model)
        if self.sources:
            where.append(Source.name.in_(self.sources))
        if self.methods:
            where.append(Explanation.method.in_(self.methods))
        if self.author == "auto":
            where.append(Explanation.author_id.is_(None))
        elif self.author is not None:
            where.append(Explanation.author_id.in_(select(User.id).where(User.username == self.author)))
        if self.min_score is not None:
            where.append(exists().where(ExplanationScore.explanation_id == Explanation.id, ExplanationScore.status == "ok",
                                        ExplanationScore.score >= self.min_score))  # fmt: skip
        if self.min_density is not None:
            where.append(Latent.frac_nonzero >= self.min_density)
        if self.max_density is not None:
            where.append(Latent.frac_nonzero <= self.max_density)
        return where

    @property
    def empty(self) -> bool:
        return not self.conditions()


@dataclass(frozen=True)
class ExplanationHit:
    """One explanation with what a result row shows."""

    id: int
    model_id: str
    source: str
    source_id: int
    latent_index: int
    text: str
    method: str
    explainer_model: str | None
    author: str | None
    frac_nonzero: float | None
    max_act: float | None
    score: float | None = None  # the best ok score of the explanation
    scorer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vectors(blobs: Sequence[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float32, copy=False)


def put_embeddings(store: Any, rows: Iterable[tuple[int, np.ndarray]], embedder: str) -> int:
    """Store the vectors of these explanations (one transaction; an id already embedded, or
    deleted meanwhile, is skipped). Returns how many were written."""
    rows = list(rows)
    if not rows:
        return 0
    ids = [int(i) for i, _ in rows]
    with store._begin() as session:
        present = set(session.scalars(select(Explanation.id).where(Explanation.id.in_(ids))))
        done = set(session.scalars(select(ExplanationEmbedding.explanation_id).where(ExplanationEmbedding.explanation_id.in_(ids))))
        new = [ExplanationEmbedding(explanation_id=i, embedder=embedder, vector=encode_vector(v))
               for i, v in zip(ids, (v for _, v in rows), strict=True) if i in present and i not in done]  # fmt: skip
        session.add_all(new)
        return len(new)


def embeddings_after(store: Any, after_id: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The next `limit` embeddings by explanation id above `after_id`: (ids int64, [n, DIM] float32)."""
    query = (select(ExplanationEmbedding.explanation_id, ExplanationEmbedding.vector)
             .where(ExplanationEmbedding.explanation_id > after_id)
             .order_by(ExplanationEmbedding.explanation_id).limit(limit))  # fmt: skip
    with store._read() as session:
        rows = session.execute(query).all()
    return np.array([r[0] for r in rows], dtype=np.int64), decode_vectors([r[1] for r in rows])


def existing_ids(store: Any, ids: Iterable[int]) -> set[int]:
    """Which of these explanation ids still have an embedding (the rest were deleted)."""
    wanted = [int(i) for i in ids]
    if not wanted:
        return set()
    with store._read() as session:
        return set(session.scalars(select(ExplanationEmbedding.explanation_id).where(ExplanationEmbedding.explanation_id.in_(wanted))))


def pending_explanations(store: Any, after_id: int = 0, limit: int = 1000, ids: Iterable[int] | None = None) -> list[tuple[int, str]]:
    """Explanations (id, text) with no embedding, by id above `after_id` (or among `ids`)."""
    query = (select(Explanation.id, Explanation.text)
             .where(~exists().where(ExplanationEmbedding.explanation_id == Explanation.id), Explanation.id > after_id)
             .order_by(Explanation.id).limit(limit))  # fmt: skip
    if ids is not None:
        query = query.where(Explanation.id.in_([int(i) for i in ids]))
    with store._read() as session:
        return [(i, t) for i, t in session.execute(query)]


def count_embedding_state(store: Any) -> tuple[int, int]:
    """(explanations, embedded explanations)."""
    with store._read() as session:
        total = session.scalar(select(func.count()).select_from(Explanation)) or 0
        done = session.scalar(select(func.count()).select_from(ExplanationEmbedding)) or 0
    return int(total), int(done)


def query_terms(query: str) -> list[str]:
    """The words of a user's query (letters, digits, underscores), lower case, at most MAX_TERMS."""
    return [w.lower() for w in _WORD.findall(query)][:MAX_TERMS]


def _filtered(query: Any, filters: ExplanationFilter) -> Any:
    query = query.join(Source, Source.id == Explanation.source_id)
    query = query.outerjoin(Latent, and_(Latent.source_id == Explanation.source_id, Latent.idx == Explanation.latent_index))
    return query.where(*filters.conditions())


def text_search(store: Any, query: str, filters: ExplanationFilter, limit: int) -> list[tuple[int, float]]:
    """Explanations matching any word of `query`, best first: (id, relevance); SQLite bm25
    (FTS5), PostgreSQL ts_rank over the GIN-indexed tsvector. Words are matched as words
    (stemmed), never as query syntax."""
    terms = query_terms(query)
    if not terms:
        return []
    if store.dialect == "sqlite":
        match = " OR ".join(f'"{t}"' for t in terms)
        cap = limit if filters.empty else max(50 * limit, 1000)  # filters drop matches after this step
        fts = text(f"SELECT rowid AS id, bm25({FTS_TABLE}) AS rank FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :match "
                   "ORDER BY rank LIMIT :n").bindparams(match=match, n=cap)  # fmt: skip
        ranked = fts.columns(id=Integer, rank=Float).subquery()
        rel = (-ranked.c.rank).label("rel")
        base = select(Explanation.id, rel).join(ranked, ranked.c.id == Explanation.id)
    else:
        english = literal_column("'english'::regconfig")  # a literal: the GIN index's expression must match
        tsquery = func.to_tsquery(english, " | ".join(terms))
        vector = func.to_tsvector(english, Explanation.text)
        rel = func.ts_rank(vector, tsquery).label("rel")
        base = select(Explanation.id, rel).where(vector.op("@@")(tsquery))
    stmt = _filtered(base, filters).order_by(rel.desc(), Explanation.id).limit(limit)
    with store._read() as session:
        return [(int(i), float(r)) for i, r in session.execute(stmt)]


def filtered_rows(store: Any, ids: Iterable[int], filters: ExplanationFilter) -> dict[int, ExplanationHit]:
    """The explanations among `ids` that pass `filters`, with source, author, density and
    their best ok score."""
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    query = select(Explanation, Source.model_id, Source.name, User.username, Latent.frac_nonzero, Latent.max_act)
    query = _filtered(query.outerjoin(User, User.id == Explanation.author_id), filters)
    out: dict[int, ExplanationHit] = {}
    with store._read() as session:
        for chunk in range(0, len(wanted), 5000):
            part = query.where(Explanation.id.in_(wanted[chunk : chunk + 5000]))
            for e, model_id, name, username, density, max_act in session.execute(part):
                out[e.id] = ExplanationHit(e.id, model_id, name, e.source_id, e.latent_index, e.text, e.method,
                                           e.explainer_model, username, density, max_act)  # fmt: skip
        if out:
            best = (select(ExplanationScore.explanation_id, ExplanationScore.scorer, ExplanationScore.score)
                    .where(ExplanationScore.explanation_id.in_(list(out)), ExplanationScore.status == "ok")
                    .order_by(ExplanationScore.explanation_id, ExplanationScore.score))  # fmt: skip
            for eid, scorer, score in session.execute(best):  # ascending: the last one is the best
                out[eid] = _with_score(out[eid], scorer, score)
    return out


def _with_score(hit: ExplanationHit, scorer: str, score: float | None) -> ExplanationHit:
    return replace(hit, scorer=scorer, score=score)


def has_pgvector(store: Any) -> bool:
    """Whether the PostgreSQL server offers the `vector` extension (never on SQLite)."""
    if store.dialect != "postgresql":
        return False
    with store._read() as session:
        return bool(session.scalar(text("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")))


def vectors_of(store: Any, ids: Iterable[int]) -> dict[int, np.ndarray]:
    """The stored embeddings of these explanations (those that have one)."""
    wanted = [int(i) for i in ids]
    if not wanted:
        return {}
    query = select(ExplanationEmbedding.explanation_id, ExplanationEmbedding.vector).where(ExplanationEmbedding.explanation_id.in_(wanted))
    with store._read() as session:
        rows = session.execute(query).all()
    return {i: v for (i, _), v in zip(rows, decode_vectors([r[1] for r in rows]), strict=True)}


def max_embedded_id(store: Any) -> int:
    """The highest explanation id with an embedding (0 if none)."""
    with store._read() as session:
        return int(session.scalar(select(func.max(ExplanationEmbedding.explanation_id))) or 0)


def explanation_methods(store: Any) -> list[str]:
    """The explanation types present (`explanations.method`), sorted."""
    with store._read() as session:
        return sorted(session.scalars(select(Explanation.method).distinct()))
