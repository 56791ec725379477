"""On PostgreSQL, the examples table partitioned by HASH(source_id) into `EXAMPLE_PARTITIONS`
tables (docs/scaling.md): a source's examples live in one partition, so a 1M-latent atlas's
~80M example rows are spread over tables that are vacuumed, indexed and scanned on their own,
and a read by (source, latent) is pruned to one partition. Existing rows are copied over. SQLite
is unchanged (one writer, one file: nothing to spread).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

EXAMPLE_PARTITIONS = 16  # schema.EXAMPLE_PARTITIONS when this was written; a migration keeps its own

_COLUMNS = (
    'source_id INTEGER NOT NULL, latent INTEGER NOT NULL, kind SMALLINT NOT NULL, "group" SMALLINT NOT NULL, '
    'rank SMALLINT NOT NULL, "window" INTEGER NOT NULL, max_value FLOAT, max_pos INTEGER NOT NULL, '
    'positions BYTEA NOT NULL, "values" BYTEA NOT NULL'
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE examples RENAME TO examples_unpartitioned")
    op.execute("ALTER TABLE examples_unpartitioned RENAME CONSTRAINT examples_pkey TO examples_unpartitioned_pkey")
    op.execute(f'CREATE TABLE examples ({_COLUMNS}, CONSTRAINT examples_pkey PRIMARY KEY (source_id, latent, kind, "group", rank)) PARTITION BY HASH (source_id)')
    for i in range(EXAMPLE_PARTITIONS):
        op.execute(f"CREATE TABLE examples_p{i} PARTITION OF examples FOR VALUES WITH (MODULUS {EXAMPLE_PARTITIONS}, REMAINDER {i})")
    op.execute("INSERT INTO examples SELECT * FROM examples_unpartitioned")
    op.execute("DROP TABLE examples_unpartitioned")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f'CREATE TABLE examples_unpartitioned ({_COLUMNS}, CONSTRAINT examples_unpartitioned_pkey PRIMARY KEY (source_id, latent, kind, "group", rank))')
    op.execute("INSERT INTO examples_unpartitioned SELECT * FROM examples")
    op.execute("DROP TABLE examples")
    op.execute("ALTER TABLE examples_unpartitioned RENAME TO examples")
    op.execute("ALTER TABLE examples RENAME CONSTRAINT examples_unpartitioned_pkey TO examples_pkey")
