"""SQLAlchemy models of an atlas database (SQLite or PostgreSQL).

Layout: a model has one vocabulary, corpora of fixed-length token windows (tokens stored
once, as little-endian int32 blobs), and sources (sets of latents at one hook point) built
over one corpus. A built source has one `latents` row per latent (dashboard statistics)
and `examples` rows that point into the corpus windows (window index + non-zero
activations as uint16 positions / float16 values blobs). `jobs` records builds.

The migration `migrations/versions/0001_initial.py` must create exactly this metadata
(a test compares them); change both together.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SOURCE_PENDING = "pending"
SOURCE_READY = "ready"
# PostgreSQL: `examples` is partitioned by HASH(source_id) into this many tables, examples_p0...
# (migration 0011, docs/scaling.md); the migration check leaves the partitions out
EXAMPLE_PARTITIONS = 16
UNMANAGED_NAMES = frozenset(f"examples_p{i}" for i in range(EXAMPLE_PARTITIONS))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (column defaults)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the atlas tables; `Base.metadata` is what migrations create."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Model(Base):
    """A language model the atlas describes (`id` like "smollm2-135m")."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    family: Mapped[str] = mapped_column(String(100))
    n_layers: Mapped[int] = mapped_column(Integer)
    d_model: Mapped[int] = mapped_column(Integer)
    d_mlp: Mapped[int] = mapped_column(Integer)
    vocab_size: Mapped[int] = mapped_column(Integer)
    bos_id: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Vocab(Base):
    """A model's token strings, stored once (`tokens[i]` is the string of token id i)."""

    __tablename__ = "vocab"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    tokens: Mapped[list[Any]]


class Corpus(Base):
    """A tokenized corpus cut into `n_windows` windows of `window_len` tokens (BOS first)."""

    __tablename__ = "corpora"
    __table_args__ = (UniqueConstraint("model_id", "content_hash", name="uq_corpora_model_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    window_len: Mapped[int] = mapped_column(Integer)
    n_windows: Mapped[int] = mapped_column(Integer)
    n_tokens: Mapped[int] = mapped_column(BigInteger)
    composition: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Window(Base):
    """One corpus window: `tokens` is `window_len` int32 little-endian token ids."""

    __tablename__ = "windows"

    corpus_id: Mapped[int] = mapped_column(
        ForeignKey("corpora.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tokens: Mapped[bytes] = mapped_column(LargeBinary)


class Source(Base):
    """A set of latents read at one hook point (`name` like "6-mlp", unique per model)."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_sources_model_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(50))
    hook_name: Mapped[str] = mapped_column(String(200))
    layer: Mapped[int | None] = mapped_column(Integer)
    d_in: Mapped[int] = mapped_column(Integer)
    d_sae: Mapped[int] = mapped_column(Integer)
    corpus_id: Mapped[int | None] = mapped_column(ForeignKey("corpora.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default=SOURCE_PENDING)
    n_tokens: Mapped[int | None] = mapped_column(BigInteger)
    format: Mapped[str | None] = mapped_column(String(50))
    path: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    built_at: Mapped[datetime | None]


class Latent(Base):
    """Dashboard statistics of one latent of a built source (JSON panels as in records.py)."""

    __tablename__ = "latents"
    __table_args__ = (
        Index("ix_latents_source_max_act", "source_id", "max_act"),
        Index("ix_latents_source_frac_nonzero", "source_id", "frac_nonzero"),
        Index("ix_latents_source_mean_act", "source_id", "mean_act"),
    )

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    max_act: Mapped[float | None] = mapped_column(Float)
    frac_nonzero: Mapped[float | None] = mapped_column(Float)
    mean_act: Mapped[float | None] = mapped_column(Float)
    hist: Mapped[dict[str, Any]]
    logits: Mapped[dict[str, Any]]
    aligned: Mapped[list[Any]]
    correlated: Mapped[list[Any]]


class Example(Base):
    """One stored example window of one latent (see records.ExampleBatch for kind/group/rank).

    No foreign key on `source_id`, on purpose: PostgreSQL checks one per inserted row,
    which made writing 500k examples ~2.5 s slower; the store deletes a source's examples
    itself (results.py, api.delete_source).
    """

    __tablename__ = "examples"

    source_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    latent: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    group: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    window: Mapped[int] = mapped_column(Integer)
    max_value: Mapped[float | None] = mapped_column(Float)
    max_pos: Mapped[int] = mapped_column(Integer)
    positions: Mapped[bytes] = mapped_column(LargeBinary)  # uint16 little-endian
    values: Mapped[bytes] = mapped_column(LargeBinary)  # float16 little-endian


class Job(Base):
    """A long-running task (a build) and its progress, for the home page. `pid`, `host` and
    `heartbeat_at` (migration 0003) tell whether the process running it is still alive."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None]
