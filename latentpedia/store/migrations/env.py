"""Alembic environment of the atlas database.

Runs on the connection that `latentpedia.store.migrate.upgrade` puts in
`config.attributes["connection"]`; from the alembic CLI, on `-x url=...` or `sqlalchemy.url`.
Logging is left to the application (no fileConfig).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from latentpedia.store.metadata import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    """Configure the context on `connection` and run the pending migrations."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate the given connection, else a connection to the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no database: pass -x url=<sqlalchemy url>")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
