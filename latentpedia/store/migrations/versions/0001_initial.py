"""Initial atlas schema: models, vocab, corpora, windows, sources, latents, examples, jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def _fk(column: str, target: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [target], ondelete=ondelete)


def _create_model_tables() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("family", sa.String(100), nullable=False),
        sa.Column("n_layers", sa.Integer(), nullable=False),
        sa.Column("d_model", sa.Integer(), nullable=False),
        sa.Column("d_mlp", sa.Integer(), nullable=False),
        sa.Column("vocab_size", sa.Integer(), nullable=False),
        sa.Column("bos_id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "vocab",
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("tokens", sa.JSON(), nullable=False),
        _fk("model_id", "models.id"),
        sa.PrimaryKeyConstraint("model_id"),
    )


def _create_corpus_tables() -> None:
    op.create_table(
        "corpora",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("window_len", sa.Integer(), nullable=False),
        sa.Column("n_windows", sa.Integer(), nullable=False),
        sa.Column("n_tokens", sa.BigInteger(), nullable=False),
        sa.Column("composition", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=False),
        _created_at(),
        _fk("model_id", "models.id"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "content_hash", name="uq_corpora_model_hash"),
    )
    op.create_table(
        "windows",
        sa.Column("corpus_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tokens", sa.LargeBinary(), nullable=False),
        _fk("corpus_id", "corpora.id"),
        sa.PrimaryKeyConstraint("corpus_id", "idx"),
    )


def _create_source_table() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("hook_name", sa.String(200), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=True),
        sa.Column("d_in", sa.Integer(), nullable=False),
        sa.Column("d_sae", sa.Integer(), nullable=False),
        sa.Column("corpus_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("n_tokens", sa.BigInteger(), nullable=True),
        sa.Column("format", sa.String(50), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        _created_at(),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=True),
        _fk("corpus_id", "corpora.id", ondelete="SET NULL"),
        _fk("model_id", "models.id"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "name", name="uq_sources_model_name"),
    )


def _create_result_tables() -> None:
    op.create_table(
        "latents",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("max_act", sa.Float(), nullable=True),
        sa.Column("frac_nonzero", sa.Float(), nullable=True),
        sa.Column("mean_act", sa.Float(), nullable=True),
        sa.Column("hist", sa.JSON(), nullable=False),
        sa.Column("logits", sa.JSON(), nullable=False),
        sa.Column("aligned", sa.JSON(), nullable=False),
        sa.Column("correlated", sa.JSON(), nullable=False),
        _fk("source_id", "sources.id"),
        sa.PrimaryKeyConstraint("source_id", "idx"),
    )
    for column in ("max_act", "frac_nonzero", "mean_act"):
        op.create_index(f"ix_latents_source_{column}", "latents", ["source_id", column])
    op.create_table(
        "examples",
        sa.Column("source_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("latent", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("group", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("rank", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("max_value", sa.Float(), nullable=True),
        sa.Column("max_pos", sa.Integer(), nullable=False),
        sa.Column("positions", sa.LargeBinary(), nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("source_id", "latent", "kind", "group", "rank"),
    )


def _create_job_table() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        _created_at(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def upgrade() -> None:
    _create_model_tables()
    _create_corpus_tables()
    _create_source_table()
    _create_result_tables()
    _create_job_table()


def downgrade() -> None:
    for table in ("jobs", "examples", "latents", "sources", "windows", "corpora", "vocab", "models"):
        op.drop_table(table)
