"""Jobs record the process running them: pid, host and a heartbeat, so that a build killed
with `kill -9` is shown as interrupted instead of running forever (store/jobs.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("pid", "host", "heartbeat_at")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("pid", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("host", sa.String(255), nullable=True))
    op.add_column("jobs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:  # SQLite drops columns by copying the table
        for column in reversed(COLUMNS):
            batch.drop_column(column)
