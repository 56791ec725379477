"""An index on votes.explanation_id: an explanation's vote sum (every puzzle and feature page
lists explanations with theirs) no longer scans every vote; the primary key (user, explanation)
only serves one user's votes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_votes_explanation", "votes", ["explanation_id"])


def downgrade() -> None:
    op.drop_index("ix_votes_explanation", table_name="votes")
