"""SQLAlchemy models of accounts and community data (migration 0002_community).

users, sessions and api_keys hold accounts (secrets only as hashes); explanations and their
explanation_scores describe latents (written by people or by automatic interpretation);
votes, comments, lists and list_items are what users add. Imported at the end of schema.py
so that `Base.metadata` holds these tables too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from latentpedia.store.schema import Base, utcnow

ROLE_ADMIN = "admin"
ROLE_USER = "user"


def _fk(target: str, ondelete: str = "CASCADE") -> ForeignKey:
    return ForeignKey(target, ondelete=ondelete)


class User(Base):
    """A local account; `role` is "admin" or "user". `password_hash` never leaves the store."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=ROLE_USER)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class UserSession(Base):
    """A browser login; `id` is the SHA-256 of the cookie's token."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class ApiKey(Base):
    """An API key (sent as `x-api-key`); only its SHA-256 and first 8 characters are kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Explanation(Base):
    """A description of latent (`source_id`, `latent_index`); `author_id` NULL = automatic."""

    __tablename__ = "explanations"
    __table_args__ = (Index("ix_explanations_source_latent", "source_id", "latent_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(_fk("sources.id"))
    latent_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(50))
    explainer_model: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(50))
    author_id: Mapped[int | None] = mapped_column(_fk("users.id", "SET NULL"))
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExplanationScore(Base):
    """One scorer's verdict on an explanation, with the baseline it is compared to."""

    __tablename__ = "explanation_scores"
    __table_args__ = (Index("ix_explanation_scores_explanation", "explanation_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    explanation_id: Mapped[int] = mapped_column(_fk("explanations.id"))
    scorer: Mapped[str] = mapped_column(String(50))
    scorer_model: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))
    score: Mapped[float | None] = mapped_column(Float)
    baseline_score: Mapped[float | None] = mapped_column(Float)
    baseline_explanation_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Vote(Base):
    """One user's +1 / -1 on one explanation."""

    __tablename__ = "votes"
    __table_args__ = (Index("ix_votes_explanation", "explanation_id"),)  # an explanation's vote sum (migration 0012)

    user_id: Mapped[int] = mapped_column(_fk("users.id"), primary_key=True)
    explanation_id: Mapped[int] = mapped_column(_fk("explanations.id"), primary_key=True)
    value: Mapped[int] = mapped_column(SmallInteger)


class Comment(Base):
    """A user's comment on a latent."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_source_latent", "source_id", "latent_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(_fk("sources.id"))
    latent_index: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(_fk("users.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LatentList(Base):
    """A user's named list of latents; readable by anyone if `public`, else via `share_token`."""

    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(_fk("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    share_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ListItem(Base):
    """A latent on a list, with the owner's note."""

    __tablename__ = "list_items"

    list_id: Mapped[int] = mapped_column(_fk("lists.id"), primary_key=True)
    source_id: Mapped[int] = mapped_column(_fk("sources.id"), primary_key=True)
    latent_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(Text, default="")
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
