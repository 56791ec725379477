"""Neighbours, matches and families (store/families.py): latent_matches, source_matches.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _fks() -> list[sa.ForeignKeyConstraint]:
    return [sa.ForeignKeyConstraint([column], ["sources.id"], ondelete="CASCADE") for column in ("source_id", "other_id")]


def upgrade() -> None:
    op.create_table(
        "latent_matches",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("other_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("indices", sa.JSON(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        *_fks(),
        sa.PrimaryKeyConstraint("source_id", "idx", "other_id", "method"),
    )
    op.create_index("ix_latent_matches_other", "latent_matches", ["other_id"])
    op.create_table(
        "source_matches",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("other_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("median", sa.Float(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *_fks(),
        sa.PrimaryKeyConstraint("source_id", "other_id", "method"),
    )
    op.create_index("ix_source_matches_other", "source_matches", ["other_id"])


def downgrade() -> None:
    op.drop_table("source_matches")
    op.drop_table("latent_matches")
