"""Attribution graphs in the store (migration 0004_graphs): one row per saved graph.

A graph is the Neuronpedia graph JSON document (`metadata`, `qParams`, `nodes`, `links`) kept
whole in `data`, under a random public id that its page `/graph/{public_id}` and JSON twin use.
Saving a subgraph (pinned nodes, supernodes) stores a new graph whose `parent_id` is the graph
it was made from, so a shared link never changes under its reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from latentpedia import security
from latentpedia.errors import NotFoundError
from latentpedia.store.records import _Record
from latentpedia.store.schema import Base, utcnow

MAX_TITLE = 200


class Graph(Base):
    """A saved attribution graph (its whole JSON document in `data`)."""

    __tablename__ = "graphs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    model_id: Mapped[str] = mapped_column(String(200))  # the graph's `metadata.scan`; may be a model not in the atlas
    title: Mapped[str] = mapped_column(String(MAX_TITLE))
    prompt: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]
    origin: Mapped[str] = mapped_column(String(20))  # "generated" | "uploaded" | "subgraph"
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("graphs.id", ondelete="SET NULL"), nullable=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class GraphRecord(_Record):
    id: int
    public_id: str
    model_id: str
    title: str
    prompt: str
    data: dict[str, Any]
    origin: str
    parent_id: int | None
    owner_id: int | None
    created_at: datetime


def _record(row: Graph) -> GraphRecord:
    return GraphRecord(row.id, row.public_id, row.model_id, row.title, row.prompt, row.data, row.origin,
                       row.parent_id, row.owner_id, row.created_at)


class GraphMethods:
    """Saved attribution graphs; each write is one transaction. Mixed into `Store`."""

    def add_graph(self, data: dict[str, Any], *, origin: str, owner_id: int | None = None,
                  parent_id: int | None = None, title: str | None = None) -> GraphRecord:
        """Store a checked graph document (see experiments.graph.schema.parse_graph)."""
        metadata = data.get("metadata") or {}
        prompt = str(metadata.get("prompt") or "".join(metadata.get("prompt_tokens") or []))
        name = (title or metadata.get("slug") or prompt or "graph")[:MAX_TITLE]
        with self._begin() as session:
            row = Graph(public_id=security.new_token(12), model_id=str(metadata.get("scan") or "unknown")[:200],
                        title=name, prompt=prompt, data=data, origin=origin, parent_id=parent_id, owner_id=owner_id)
            session.add(row)
            session.flush()
            return _record(row)

    def get_graph(self, public_id: str) -> GraphRecord:
        """The graph with `public_id`; NotFoundError if there is none."""
        with self._read() as session:
            row = session.scalar(select(Graph).where(Graph.public_id == public_id))
            if row is None:
                raise NotFoundError(f"no graph {public_id!r}")
            return _record(row)

    def graph_public_id(self, row_id: int) -> str | None:
        """The public id of the graph with row id `row_id` (a subgraph's parent), if it exists."""
        with self._read() as session:
            return session.scalar(select(Graph.public_id).where(Graph.id == row_id))

    def list_graphs(self, *, model_id: str | None = None, limit: int = 50) -> list[GraphRecord]:
        """The newest graphs first (of one model if given)."""
        query = select(Graph).order_by(Graph.id.desc()).limit(limit)
        if model_id is not None:
            query = query.where(Graph.model_id == model_id)
        with self._read() as session:
            return [_record(row) for row in session.scalars(query)]
