"""Fast bulk inserts of already-encoded rows, inside the caller's transaction.

Rows are tuples of DBAPI-ready values (ints, floats, str for JSON columns, bytes for
blobs), written on the raw driver connection under the SQLAlchemy connection, so they
share its transaction: a failure rolls back with everything else.

PostgreSQL uses binary COPY (psycopg 3); other databases use the driver's `executemany`
(SQLite's is a tight C loop over one prepared statement).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Float,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

Row = tuple[Any, ...]
CHUNK_ROWS = 20_000

_PLACEHOLDERS: dict[str, Callable[[int], str]] = {
    "qmark": lambda i: "?",
    "format": lambda i: "%s",
    "pyformat": lambda i: "%s",
    "numeric": lambda i: f":{i + 1}",
}


def _column_list(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """`(a, "group", ...)` quoted for the connection's dialect."""
    quote = conn.dialect.identifier_preparer.quote
    return "(" + ", ".join(quote(table.c[name].name) for name in columns) + ")"


def _table_name(conn: Connection, table: Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _chunks(rows: Iterable[Row], size: int) -> Iterable[list[Row]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def executemany_insert(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Row]) -> int:
    """Insert with the DBAPI's `executemany`, in chunks; returns the row count."""
    style = _PLACEHOLDERS[conn.dialect.paramstyle]
    marks = ", ".join(style(i) for i in range(len(columns)))
    sql = f"INSERT INTO {_table_name(conn, table)} {_column_list(conn, table, columns)} VALUES ({marks})"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    count = 0
    try:
        for chunk in _chunks(rows, CHUNK_ROWS):
            cursor.executemany(sql, chunk)
            count += len(chunk)
    finally:
        cursor.close()
    return count


_PG_BINARY_TYPES: dict[type[TypeEngine[Any]], str] = {
    SmallInteger: "int2",
    Integer: "int4",
    BigInteger: "int8",
    Float: "float8",
    LargeBinary: "bytea",
    JSON: "text",  # json's binary wire format is its text; psycopg's "json" would re-encode str
    String: "text",
    Text: "text",
}


def _pg_binary_types(table: Table, columns: Sequence[str]) -> list[str] | None:
    """psycopg type names for a binary COPY of `columns`, or None if one is not mapped."""
    names = [_PG_BINARY_TYPES.get(type(table.c[name].type)) for name in columns]
    return None if None in names else names  # type: ignore[return-value]


def copy_insert(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Row]) -> int:
    """Insert with PostgreSQL's COPY FROM STDIN (psycopg 3, binary format when every column
    type is mapped; JSON columns take encoded str); returns the row count."""
    types = _pg_binary_types(table, columns)
    sql = f"COPY {_table_name(conn, table)} {_column_list(conn, table, columns)} FROM STDIN"
    count = 0
    with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(sql + (" (FORMAT BINARY)" if types else "")) as copy:
            if types:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


_BY_DIALECT: dict[str, Callable[[Connection, Table, Sequence[str], Iterable[Row]], int]] = {
    "postgresql+psycopg": copy_insert,
}


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Row]) -> int:
    """Insert `rows` (tuples in `columns` order) into `table` the fastest way the dialect allows.

    Driver errors are raised as SQLAlchemy's (e.g. `sqlalchemy.exc.IntegrityError`).
    """
    insert = _BY_DIALECT.get(f"{conn.dialect.name}+{conn.dialect.driver}", executemany_insert)
    driver_error = conn.dialect.loaded_dbapi.Error
    try:
        return insert(conn, table, columns, rows)
    except driver_error as exc:
        statement = f"bulk insert into {table.name}"
        raise DBAPIError.instance(statement, None, exc, driver_error) from exc
