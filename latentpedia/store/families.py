"""Neighbours and matches between latents (migration 0007): what families are made of.

`latent_matches` holds, for each latent of a source, its best matches in one other source (or
in its own: the nearest neighbours) by one `method`:

- `decoder_cos`: cosine of decoder directions (Neuronpedia's `topkCosSimIndices` /
  `topkCosSimValues` are the source's own row, the latent itself first);
- `act_corr`: Pearson correlation of activations over the same corpus tokens.

`source_matches` holds one row per (source, other, method) pair that was computed: the settings,
timings and the distribution of best-match values (median, histogram: the universality report).
A pair's rows are replaced in one transaction, so a computation killed half way leaves the pair
absent and a rerun computes it again (resumable pair by pair). Writing a pair also stamps the
source's `meta["matches_at"]`, which keys the cached feature JSON. Functions take a `Store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, bindparam, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from latentpedia.store.records import _Record
from latentpedia.store.schema import Base, Source, utcnow

METHODS = ("decoder_cos", "act_corr")


class LatentMatch(Base):
    """One latent's best matches in another source (or its own), by one method."""

    __tablename__ = "latent_matches"
    __table_args__ = (Index("ix_latent_matches_other", "other_id"),)

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    other_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    method: Mapped[str] = mapped_column(String(20), primary_key=True)
    indices: Mapped[list[Any]] = mapped_column(JSON)  # other latents, best first
    values: Mapped[list[Any]] = mapped_column(JSON)  # their cosine / correlation


class SourceMatch(Base):
    """A computed (source, other, method) pair: settings, timing and best-match distribution."""

    __tablename__ = "source_matches"
    __table_args__ = (Index("ix_source_matches_other", "other_id"),)

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    method: Mapped[str] = mapped_column(String(20), primary_key=True)
    k: Mapped[int] = mapped_column(Integer)
    median: Mapped[float | None] = mapped_column(Float)  # median best match over live latents
    meta: Mapped[dict[str, Any]]  # histogram, n_tokens, seconds, ...
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class PairRecord(_Record):
    source_id: int
    source: str
    other_id: int
    other: str
    method: str
    k: int
    median: float | None
    meta: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class MatchRow(_Record):
    """A latent's matches in `other` (a source name) by `method`."""

    other_id: int
    other: str
    layer: int | None
    hook_name: str
    method: str
    indices: list[int]
    values: list[float]


LATENT_MATCHES = (
    select(LatentMatch.other_id, Source.name, Source.layer, Source.hook_name, LatentMatch.method, LatentMatch.indices,
           LatentMatch.values)
    .join(Source, Source.id == LatentMatch.other_id)
    .where(LatentMatch.source_id == bindparam("sid"), LatentMatch.idx == bindparam("idx"))
    .order_by(Source.layer, Source.d_sae, Source.name, LatentMatch.method)
)


def match_rows(rows: Any) -> list[MatchRow]:
    """Rows of `LATENT_MATCHES` as records."""
    return [MatchRow(int(o), name, layer, hook, method, [int(i) for i in idx], [float(v) for v in val])
            for o, name, layer, hook, method, idx, val in rows]  # fmt: skip


def write_pair(store: Any, source_id: int, other_id: int, method: str, indices: np.ndarray, values: np.ndarray,
               *, median: float | None, meta: dict[str, Any]) -> None:
    """Replace the (source, other, method) matches: row i of `indices` / `values` [d, k] is latent
    i's best matches, best first. One transaction."""
    if method not in METHODS:
        raise ValueError(f"unknown match method {method!r}")
    rows = [
        {"source_id": source_id, "idx": i, "other_id": other_id, "method": method,
         "indices": [int(j) for j in idx], "values": [round(float(v), 5) for v in val]}
        for i, (idx, val) in enumerate(zip(indices.tolist(), values.tolist(), strict=True))
    ]  # fmt: skip
    pair = (SourceMatch.source_id == source_id) & (SourceMatch.other_id == other_id) & (SourceMatch.method == method)
    with store._begin() as session:
        session.execute(delete(LatentMatch).where(
            LatentMatch.source_id == source_id, LatentMatch.other_id == other_id, LatentMatch.method == method))
        session.execute(delete(SourceMatch).where(pair))
        for start in range(0, len(rows), 5000):
            session.execute(insert(LatentMatch), rows[start : start + 5000])
        session.add(SourceMatch(source_id=source_id, other_id=other_id, method=method, k=int(indices.shape[1]),
                                median=None if median is None else float(median), meta=meta))
        row = session.get(Source, source_id)
        row.meta = {**(row.meta or {}), "matches_at": utcnow().isoformat()}


def has_pair(store: Any, source_id: int, other_id: int, method: str) -> bool:
    query = select(SourceMatch.k).where(SourceMatch.source_id == source_id, SourceMatch.other_id == other_id,
                                        SourceMatch.method == method)  # fmt: skip
    with store._read() as session:
        return session.scalar(query) is not None


def list_pairs(store: Any, source_id: int | None = None) -> list[PairRecord]:
    """Computed pairs (of one source if given), by source then other."""
    other = Source.__table__.alias("other")
    query = (
        select(SourceMatch, Source.name, other.c.name)
        .join(Source, Source.id == SourceMatch.source_id)
        .join(other, other.c.id == SourceMatch.other_id)
        .order_by(SourceMatch.source_id, other.c.layer, other.c.d_sae, SourceMatch.method)
    )
    if source_id is not None:
        query = query.where(SourceMatch.source_id == source_id)
    with store._read() as session:
        return [
            PairRecord(m.source_id, name, m.other_id, other_name, m.method, m.k, m.median, m.meta or {}, m.created_at)
            for m, name, other_name in session.execute(query)
        ]


def latent_matches(store: Any, source_id: int, index: int) -> list[MatchRow]:
    """Every stored match row of one latent."""
    with store.engine.connect() as conn:
        return match_rows(conn.execute(LATENT_MATCHES, {"sid": source_id, "idx": int(index)}))


def best_matches(store: Any, source_id: int, other_id: int, method: str, indices: list[int]) -> dict[int, tuple[list[int], list[float]]]:
    """{latent: (matched indices, values)} of these latents of `source_id` in `other_id`."""
    if not indices:
        return {}
    query = select(LatentMatch.idx, LatentMatch.indices, LatentMatch.values).where(
        LatentMatch.source_id == source_id, LatentMatch.other_id == other_id, LatentMatch.method == method,
        LatentMatch.idx.in_([int(i) for i in indices]))  # fmt: skip
    with store._read() as session:
        return {int(i): ([int(j) for j in idx], [float(v) for v in val]) for i, idx, val in session.execute(query)}


def pair_rows(store: Any, source_id: int, other_id: int, method: str) -> dict[int, tuple[list[int], list[float]]]:
    """{latent: (matched indices, values)} of every latent of `source_id` in `other_id` ({} if the
    pair was not computed)."""
    query = select(LatentMatch.idx, LatentMatch.indices, LatentMatch.values).where(
        LatentMatch.source_id == source_id, LatentMatch.other_id == other_id, LatentMatch.method == method)  # fmt: skip
    with store._read() as session:
        return {int(i): ([int(j) for j in idx], [float(v) for v in val]) for i, idx, val in session.execute(query)}


@dataclass(frozen=True)
class BestExplanation(_Record):
    """A latent's best explanation: best voted, then newest; its first ok score, if any."""

    text: str
    score: float | None
    scorer: str | None


def best_explanations(store: Any, wanted: dict[int, set[int]], *, conn: Any = None) -> dict[tuple[int, int], BestExplanation]:
    """{(source id, latent index): its best explanation} of the latents `wanted` ({source id:
    indices}) that have one: three indexed queries (explanations, their votes, their ok scores)
    whatever the number of latents, on `conn` if given."""
    from contextlib import nullcontext

    from sqlalchemy import and_, func, or_

    from latentpedia.store.community_schema import Explanation, ExplanationScore, Vote

    wanted = {int(s): sorted({int(i) for i in idx}) for s, idx in wanted.items() if idx}
    if not wanted:
        return {}
    where = or_(*(and_(Explanation.source_id == s, Explanation.latent_index.in_(idx)) for s, idx in wanted.items()))
    with store.engine.connect() if conn is None else nullcontext(conn) as c:
        rows = c.execute(select(Explanation.id, Explanation.source_id, Explanation.latent_index, Explanation.text).where(where)).all()
        ids = [r[0] for r in rows]
        if not ids:
            return {}
        votes = dict(c.execute(select(Vote.explanation_id, func.sum(Vote.value)).where(Vote.explanation_id.in_(ids))
                               .group_by(Vote.explanation_id)).all())  # fmt: skip
        scores: dict[int, tuple[float, str]] = {}
        for eid, score, scorer in c.execute(select(ExplanationScore.explanation_id, ExplanationScore.score, ExplanationScore.scorer)
                                            .where(ExplanationScore.explanation_id.in_(ids), ExplanationScore.status == "ok")
                                            .order_by(ExplanationScore.id)):  # fmt: skip
            scores.setdefault(eid, (score, scorer))
    best: dict[tuple[int, int], BestExplanation] = {}
    for eid, sid, idx, text in sorted(rows, key=lambda r: (-(votes.get(r[0]) or 0), -r[0])):
        if (sid, idx) not in best:
            score, scorer = scores.get(eid, (None, None))
            best[(int(sid), int(idx))] = BestExplanation(text, None if score is None else float(score), scorer)
    return best


# ---------------------------------------------------------------- ways in: random and recent latents


def random_latent(store: Any, *, explained: bool, model_id: str | None = None, seed: int | None = None) -> tuple[str, str, int] | None:
    """(model, source, index) of a random latent of a built source, one with an explanation if
    `explained`; None if there is none. One count and one offset query (no full scan sort)."""
    import random

    from sqlalchemy import func

    from latentpedia.store.community_schema import Explanation
    from latentpedia.store.schema import Latent

    rng = random.Random(seed)
    if explained:
        query = select(Source.model_id, Source.name, Explanation.latent_index).join(Source, Source.id == Explanation.source_id)
        count = select(func.count()).select_from(Explanation).join(Source, Source.id == Explanation.source_id)
        order = Explanation.id
    else:
        query = select(Source.model_id, Source.name, Latent.idx).join(Source, Source.id == Latent.source_id)
        count = select(func.count()).select_from(Latent).join(Source, Source.id == Latent.source_id)
        order = (Latent.source_id, Latent.idx)
    if model_id is not None:
        query, count = query.where(Source.model_id == model_id), count.where(Source.model_id == model_id)
    with store._read() as session:
        total = session.scalar(count) or 0
        if not total:
            return None
        order = order if isinstance(order, tuple) else (order,)
        row = session.execute(query.order_by(*order).offset(rng.randrange(total)).limit(1)).first()
    return (row[0], row[1], int(row[2])) if row else None


def recent_explanations(store: Any, limit: int = 8) -> list[dict[str, Any]]:
    """The newest explanations or newly voted ones first: model, source, index, text, author,
    first ok score, when."""
    from sqlalchemy import func

    from latentpedia.store.community_schema import Explanation, ExplanationScore, User, Vote

    voted = select(Vote.explanation_id, func.count().label("n")).group_by(Vote.explanation_id).subquery()
    score = (select(ExplanationScore.score).where(ExplanationScore.explanation_id == Explanation.id, ExplanationScore.status == "ok")
             .order_by(ExplanationScore.id).limit(1).scalar_subquery())  # fmt: skip
    query = (
        select(Source.model_id, Source.name, Explanation.latent_index, Explanation.text, User.username, score, Explanation.created_at)
        .join(Source, Source.id == Explanation.source_id)
        .outerjoin(User, User.id == Explanation.author_id)
        .outerjoin(voted, voted.c.explanation_id == Explanation.id)
        .order_by((voted.c.n.is_(None)), Explanation.id.desc())
        .limit(limit)
    )
    with store._read() as session:
        return [
            {"model": m, "source": s, "index": int(i), "text": t, "author": a, "score": sc, "created_at": c}
            for m, s, i, t, a, sc, c in session.execute(query)
        ]
