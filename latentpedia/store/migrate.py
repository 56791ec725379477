"""Schema migrations, run programmatically with alembic's command API.

The scripts live inside the package (`latentpedia/store/migrations`), so this works from an
installed wheel. `upgrade(url)` brings a database to the newest revision; `schema_diff(url)`
lists differences between the database and `schema.py` (empty when they agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text

from latentpedia.store.metadata import UNMANAGED_NAMES, Base

_INI = Path(__file__).with_name("alembic.ini")
_PG_LOCK_KEY = 0x6C617465  # advisory lock: concurrent first opens migrate one at a time


def alembic_config(connection: Connection | None = None) -> Config:
    """The packaged alembic configuration, optionally bound to an open connection."""
    cfg = Config(str(_INI))
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision id shipped with the package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None if never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(db: str | Engine, revision: str = "head") -> None:
    """Migrate the database at `db` (URL or engine) to `revision`, in one transaction."""
    engine = create_engine(db) if isinstance(db, str) else db
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            if revision == "head" and current_revision(conn) == head_revision():
                return
            command.upgrade(alembic_config(conn), revision)
    finally:
        if isinstance(db, str):
            engine.dispose()


def schema_diff(db: str | Engine) -> list[Any]:
    """Alembic's autogenerate diff between the database and `schema.Base.metadata`."""
    engine = create_engine(db) if isinstance(db, str) else db
    try:
        with engine.connect() as conn:
            opts = {"compare_type": True, "include_name": lambda name, _type, _parent: name not in UNMANAGED_NAMES}
            ctx = MigrationContext.configure(conn, opts=opts)
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        if isinstance(db, str):
            engine.dispose()
