"""The game (store/game.py): campaigns, held-out sets per latent, plays, reports, hidden
explanations, invite codes, player preferences.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _created_at(name: str = "created_at", nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(column: str, target: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [target], ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "game_campaigns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("latents", sa.JSON(), nullable=True),
        sa.Column("order", sa.String(20), nullable=False),
        _created_at("starts_at", True),
        _created_at("ends_at", True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        _created_at(),
        _fk("source_id", "sources.id"),
        _fk("created_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "game_latents",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("latent_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holdout", sa.JSON(), nullable=False),
        sa.Column("baseline_score", sa.Float(), nullable=False),
        sa.Column("baseline", sa.JSON(), nullable=False),
        sa.Column("machine_explanation_id", sa.Integer(), nullable=True),
        sa.Column("machine_text", sa.Text(), nullable=False),
        sa.Column("machine_score", sa.Float(), nullable=True),
        _created_at(),
        _fk("source_id", "sources.id"),
        sa.PrimaryKeyConstraint("source_id", "latent_index"),
    )
    op.create_table(
        "game_plays",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("latent_index", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(12), nullable=False),
        sa.Column("explanation_id", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("daily", sa.String(10), nullable=True),
        _created_at(),
        _fk("user_id", "users.id"),
        _fk("campaign_id", "game_campaigns.id", "SET NULL"),
        _fk("source_id", "sources.id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_game_plays_user", "game_plays", ["user_id"])
    op.create_index("ix_game_plays_latent", "game_plays", ["source_id", "latent_index"])
    op.create_table(
        "game_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("explanation_id", sa.Integer(), nullable=False),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        _created_at(),
        _fk("reporter_id", "users.id"),
        _fk("resolved_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "game_hidden",
        sa.Column("explanation_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("latent_index", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("hidden_by", sa.Integer(), nullable=True),
        _created_at(),
        _fk("source_id", "sources.id"),
        _fk("author_id", "users.id", "SET NULL"),
        _fk("hidden_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("explanation_id"),
    )
    op.create_table(
        "game_invites",
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("used_by", sa.Integer(), nullable=True),
        _created_at(),
        _created_at("used_at", True),
        _fk("created_by", "users.id", "SET NULL"),
        _fk("used_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "game_prefs",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(10), nullable=False),
        sa.Column("tutorial_done", sa.Boolean(), nullable=False),
        _fk("user_id", "users.id"),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    for table in ("game_prefs", "game_invites", "game_hidden", "game_reports", "game_plays", "game_latents", "game_campaigns"):
        op.drop_table(table)
