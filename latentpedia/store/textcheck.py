"""One check of every text the store sends to its database, the same on SQLite and PostgreSQL.

PostgreSQL refuses a NUL character in text (the driver raises and the request fails), SQLite
stores it; neither can encode a lone surrogate (a `str` that is not valid Unicode, e.g. from
a JSON `"\\ud800"` escape). So that both databases answer alike, `install_text_check(engine)`
looks at every bound string parameter of every statement, just before the driver sees it, and
raises `InvalidTextError` (an `InvalidInputError`, HTTP 422 in the web app) naming the
parameter. Nothing is written and the connection stays usable.

Bulk writes (store/bulk.py) go to the driver directly: they carry numbers, blobs and JSON
serialised with ASCII escapes, never user text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import cycle
from typing import Any

from sqlalchemy import Engine, event

from latentpedia.errors import InvalidInputError

NUL = "\x00"
_BIND_SUFFIX = re.compile(r"(__\d+|_\d+)+$")  # username_1, name__0 (multi-row inserts)


class InvalidTextError(InvalidInputError):
    """A text that no database can store as given: it holds a NUL character or a lone surrogate."""

    status = 422

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"{field}: {problem}")


def text_problem(value: str) -> str | None:
    """What makes `value` unstorable, or None if it is fine."""
    if NUL in value:
        return "the text contains a NUL character (\\x00), which cannot be stored"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "the text contains an unpaired surrogate, which is not valid Unicode"
    return None


def check_text_value(field: str, value: str) -> str:
    """`value` if it can be stored, else InvalidTextError naming `field`."""
    problem = text_problem(value)
    if problem is not None:
        raise InvalidTextError(field, problem)
    return value


def field_name(bind_name: str | int) -> str:
    """A bound parameter's name as a user reads it: `username_1` -> `username`."""
    if isinstance(bind_name, int):
        return f"parameter {bind_name + 1}"
    name = _BIND_SUFFIX.sub("", bind_name) or bind_name
    return "id" if name == "pk" else name  # session.get(Model, value) binds "pk_1"


def _named(parameters: Any, names: Sequence[str] | None) -> Iterable[tuple[str | int, Any]]:
    """(name, value) pairs of one statement's parameters: a mapping, or a positional sequence
    (several rows' values in a row for a multi-row INSERT, whose names repeat)."""
    if isinstance(parameters, Mapping):
        return parameters.items()
    if names and len(parameters) % len(names) == 0:
        return zip(cycle(names), parameters)
    return enumerate(parameters)


def _rows(parameters: Any, executemany: bool) -> Sequence[Any]:
    """The parameter sets of one cursor call (executemany: a sequence of mappings or tuples)."""
    if executemany and isinstance(parameters, Sequence) and parameters and isinstance(parameters[0], Mapping | tuple | list):
        return parameters
    return [parameters]


def check_parameters(parameters: Any, names: Sequence[str] | None = None) -> None:
    """Raise InvalidTextError for the first string parameter that cannot be stored."""
    for name, value in _named(parameters, names):
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise InvalidTextError(field_name(name), problem)


def _positional_names(context: Any) -> Sequence[str] | None:
    compiled = getattr(context, "compiled", None)
    return getattr(compiled, "positiontup", None)


def _before_cursor_execute(_conn, _cursor, _statement, parameters, context, executemany) -> None:
    if not parameters:
        return
    names = _positional_names(context)
    for row in _rows(parameters, executemany):
        check_parameters(row, names)


def install_text_check(engine: Engine) -> None:
    """Check the text parameters of every statement `engine` runs (see the module docstring)."""
    if not event.contains(engine, "before_cursor_execute", _before_cursor_execute):
        event.listen(engine, "before_cursor_execute", _before_cursor_execute)
