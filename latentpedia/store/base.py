"""Engine, sessions and row conversion shared by the parts of `Store`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from latentpedia.errors import InvalidInputError
from latentpedia.store import codec

R = TypeVar("R")

_SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL")


SUPPORTED_BACKENDS = ("sqlite", "postgresql")
URL_EXAMPLES = "sqlite:///path/to/atlas.db or postgresql://user@host:5432/db"


def printable_url(url: str | URL) -> str:
    """`url` as text with its password hidden (for messages); unparsable text as given."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return str(url)


def normalize_url(url: str | URL) -> URL:
    """`url` with PostgreSQL pinned to the psycopg 3 driver (`postgresql://` means psycopg2).
    InvalidInputError when it is not a SQLAlchemy URL of a backend latentpedia stores atlases in."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInputError(f"not a database URL: {str(url)!r}; expected {URL_EXAMPLES}") from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise InvalidInputError(f"unsupported database {parsed.get_backend_name()!r} in {printable_url(parsed)}; expected {URL_EXAMPLES}")
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory databases and other dialects)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL (readers never block the writer), enforced foreign keys, fsync at checkpoints."""
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def make_engine(url: str | URL) -> Engine:
    """An engine for `url`: creates a SQLite file's folder and sets its pragmas."""
    parsed = normalize_url(url)
    options: dict[str, Any] = {"json_serializer": codec.dumps}
    sqlite_file = _sqlite_file(parsed)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": 60}
    engine = create_engine(parsed, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def utc(value: datetime | None) -> datetime | None:
    """A datetime read back as timezone-aware UTC (SQLite returns naive datetimes)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def to_record(cls: type[R], row: Any) -> R:
    """A frozen record dataclass `cls` filled from the same-named attributes of an ORM row."""
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        value = getattr(row, f.name)
        values[f.name] = utc(value) if isinstance(value, datetime) else value
    return cls(**values)


class StoreBase:
    """Holds the engine and the session factory; subclasses add the table-specific methods."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @contextmanager
    def _begin(self) -> Iterator[Session]:
        """A session in one transaction: committed on exit, rolled back on an exception."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A session for reads (its transaction ends when the block does)."""
        with self._sessions() as session:
            yield session

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
