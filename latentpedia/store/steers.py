"""Shared steering results (migration 0010_shared_steers): every steering answer of the web app
is kept under a random public id, so `/steer/{id}` shows it again (Neuronpedia's share links).

Functions of a `Store` rather than methods, so the Store class needs no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from latentpedia import security
from latentpedia.errors import NotFoundError
from latentpedia.store.records import _Record
from latentpedia.store.schema import Base, utcnow

KINDS = ("completion", "chat")


class SteerOutput(Base):
    """One steering answer: the request's settings and both outputs, whole, in `data`."""

    __tablename__ = "steer_outputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    model_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # "completion" | "chat"
    data: Mapped[dict[str, Any]]
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class SteerRecord(_Record):
    public_id: str
    model_id: str
    kind: str
    data: dict[str, Any]
    owner_id: int | None
    created_at: datetime


def save_steer(store: Any, model_id: str, kind: str, data: dict[str, Any], owner_id: int | None = None) -> str:
    """Keep a steering answer; returns its public id."""
    if kind not in KINDS:
        raise ValueError(f"kind is one of {KINDS}, not {kind!r}")
    with store._begin() as session:
        row = SteerOutput(public_id=security.new_token(12), model_id=model_id[:200], kind=kind, data=data, owner_id=owner_id)
        session.add(row)
        session.flush()
        return row.public_id


def get_steer(store: Any, public_id: str) -> SteerRecord:
    """The steering answer with `public_id`; NotFoundError if there is none."""
    with store._read() as session:
        row = session.scalar(select(SteerOutput).where(SteerOutput.public_id == public_id[:32]))
        if row is None:
            raise NotFoundError(f"no steering result {public_id!r}")
        return SteerRecord(row.public_id, row.model_id, row.kind, row.data, row.owner_id, row.created_at)
