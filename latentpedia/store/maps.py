"""Latent maps in the store (migration 0006_latent_maps): a 2-D position and a cluster per latent.

A source's map is the UMAP of its decoder directions (dashboards/maps.py computes it); each
latent gets one `latent_maps` row (x, y, cluster), written for the whole source in one
transaction, so a map is either complete or absent. How it was made (UMAP parameters, seconds)
is kept in the source's `meta["map"]`. Deleting a source deletes its map (foreign key cascade).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Float, ForeignKey, Integer, SmallInteger, bindparam, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from latentpedia import security
from latentpedia.store.base import StoreBase
from latentpedia.store.bulk import bulk_insert
from latentpedia.store.accounts import CommunityError
from latentpedia.store.community import check_text
from latentpedia.store.community_schema import Explanation, ExplanationScore, LatentList, ListItem
from latentpedia.store.schema import Base, Source

MAX_LIST_ITEMS = 100_000  # a lasso over the largest map still fits


class LatentMap(Base):
    """Where one latent sits on its source's map, and its cluster there."""

    __tablename__ = "latent_maps"

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    cluster: Mapped[int] = mapped_column(SmallInteger)  # -1: no cluster


MAP_COLUMNS = ("source_id", "idx", "x", "y", "cluster")
# one latent's position: the feature page and its JSON read it on their own connection
MAP_POSITION = select(LatentMap.x, LatentMap.y, LatentMap.cluster).where(
    LatentMap.source_id == bindparam("sid"), LatentMap.idx == bindparam("idx"))


@dataclass(frozen=True)
class SourceMap:
    """A whole map: arrays in latent-index order (`index[i]` is latent i's index)."""

    index: np.ndarray  # int64 [n]
    x: np.ndarray  # float32 [n]
    y: np.ndarray  # float32 [n]
    cluster: np.ndarray  # int16 [n]


class MapMethods(StoreBase):
    """Latent maps; each write is one transaction. Mixed into `Store`."""

    def write_map(self, source_id: int, xy: np.ndarray, cluster: np.ndarray, info: dict) -> None:
        """Replace the map of `source_id` by `xy` [d_sae, 2] and `cluster` [d_sae] (one row per
        latent, in index order) and set `meta["map"] = info`, in ONE transaction."""
        xy, cluster = np.asarray(xy, dtype=np.float64), np.asarray(cluster, dtype=np.int64)
        with self._begin() as session:
            source = session.get(Source, source_id)
            if source is None:
                raise KeyError(f"no source {source_id}")
            if xy.shape != (source.d_sae, 2) or cluster.shape != (source.d_sae,) or not np.isfinite(xy).all():
                raise ValueError(f"source {source.name!r} has {source.d_sae} latents; map shapes {xy.shape}, {cluster.shape}")
            session.execute(delete(LatentMap).where(LatentMap.source_id == source_id))
            rows = ((source_id, i, float(x), float(y), int(c)) for i, ((x, y), c) in enumerate(zip(xy.tolist(), cluster.tolist())))
            bulk_insert(session.connection(), LatentMap.__table__, MAP_COLUMNS, rows)
            source.meta = {**source.meta, "map": info}

    def has_map(self, source_id: int) -> bool:
        with self._read() as session:
            return session.scalar(select(func.count()).select_from(LatentMap).where(LatentMap.source_id == source_id)) > 0

    def get_map(self, source_id: int) -> SourceMap | None:
        """The source's map, or None if it has none."""
        query = select(LatentMap.idx, LatentMap.x, LatentMap.y, LatentMap.cluster).where(
            LatentMap.source_id == source_id).order_by(LatentMap.idx)
        with self._read() as session:
            rows = session.execute(query).all()
        if not rows:
            return None
        idx, x, y, cluster = zip(*rows)
        return SourceMap(np.asarray(idx, np.int64), np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(cluster, np.int16))

    def map_position(self, source_id: int, index: int) -> tuple[float, float, int] | None:
        with self._read() as session:
            row = session.execute(MAP_POSITION, {"sid": source_id, "idx": int(index)}).first()
        return None if row is None else (float(row.x), float(row.y), int(row.cluster))

    def best_scored_explanations(self, source_id: int) -> dict[int, tuple[str, float | None]]:
        """Each explained latent's explanation with the highest score (text, score; score None
        when none is scored; among equals the newest)."""
        best_score = (select(ExplanationScore.explanation_id, func.max(ExplanationScore.score).label("score"))
                      .where(ExplanationScore.status == "ok").group_by(ExplanationScore.explanation_id).subquery())
        query = (select(Explanation.latent_index, Explanation.text, best_score.c.score)
                 .outerjoin(best_score, best_score.c.explanation_id == Explanation.id)
                 .where(Explanation.source_id == source_id).order_by(Explanation.id))
        best: dict[int, tuple[str, float | None]] = {}
        with self._read() as session:
            for index, text, score in session.execute(query):
                held = best.get(index)
                if held is None or (score is not None and (held[1] is None or score >= held[1])) or (score is None and held[1] is None):
                    best[index] = (text, None if score is None else float(score))
        return best

    def create_list_with_items(self, owner_id: int, name: str, source_id: int, indices: Sequence[int],
                               description: str = "") -> int:
        """A new list holding these latents of `source_id`, in ONE transaction (nothing written
        on bad input: an empty or too long name, no latent, an index the source lacks). Its id."""
        name = check_text("list name", name)
        description = check_text("description", description, empty_ok=True)
        wanted = sorted({int(i) for i in indices})
        if not wanted or len(wanted) > MAX_LIST_ITEMS:
            raise CommunityError(f"a list from the map needs 1 to {MAX_LIST_ITEMS:,} latents, got {len(wanted):,}")
        with self._begin() as session:
            source = session.get(Source, source_id)
            if source is None or wanted[0] < 0 or wanted[-1] >= source.d_sae:
                raise CommunityError(f"latent indices must be in [0, {source.d_sae if source else 0}) of the source")
            row = LatentList(owner_id=owner_id, name=name, description=description, public=False,
                             share_token=security.new_token(18))
            session.add(row)
            session.flush()
            session.add_all([ListItem(list_id=row.id, source_id=source_id, latent_index=i, note="") for i in wanted])
            return row.id
