"""Explanation search (store/explanation_search.py): embeddings as float32 blobs and full text.

SQLite: an FTS5 table over explanations.text (external content, porter stemming) kept in sync
by triggers and filled from the explanations already there. PostgreSQL: a GIN index over
to_tsvector('english', text). Neither is a SQLAlchemy model (see UNMANAGED_NAMES).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FTS = "explanations_fts"
SQLITE_FTS = (
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(text, content='explanations', content_rowid='id', tokenize='porter unicode61')",
    f"CREATE TRIGGER {FTS}_ai AFTER INSERT ON explanations BEGIN "
    f"INSERT INTO {FTS}(rowid, text) VALUES (new.id, new.text); END",
    f"CREATE TRIGGER {FTS}_ad AFTER DELETE ON explanations BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, text) VALUES ('delete', old.id, old.text); END",
    f"CREATE TRIGGER {FTS}_au AFTER UPDATE OF text ON explanations BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, text) VALUES ('delete', old.id, old.text); "
    f"INSERT INTO {FTS}(rowid, text) VALUES (new.id, new.text); END",
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
)


def upgrade() -> None:
    op.create_table(
        "explanation_embeddings",
        sa.Column("explanation_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("embedder", sa.String(100), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["explanation_id"], ["explanations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("explanation_id"),
    )
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute("CREATE INDEX ix_explanations_text_fts ON explanations USING gin (to_tsvector('english', text))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for suffix in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS {FTS}_{suffix}")
        op.execute(f"DROP TABLE IF EXISTS {FTS}")
    else:
        op.execute("DROP INDEX IF EXISTS ix_explanations_text_fts")
    op.drop_table("explanation_embeddings")
