"""JSON Lines files, plain or gzipped: reading rows with their line numbers, checking fields,
writing rows. Every error names the file, the line and the field (`RowError`)."""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from latentpedia.errors import InvalidInputError
from latentpedia.store import codec


GZIP_LEVEL = 3  # faster than gzip's default 6 on example rows, for ~20% bigger files (bench/p7_exchange.py)


class RowError(InvalidInputError):
    """A malformed row: `path`, `line` (1-based) and `field` say where."""

    def __init__(self, problem: str, path: str | Path, line: int | None = None, field: str | None = None):
        self.line, self.field = line, field
        where = "" if line is None else f"line {line}: "
        what = "" if field is None else f"field {field!r}: "
        super().__init__(f"{where}{what}{problem}", path)


def open_text(path: Path, mode: str = "rt") -> IO[str]:
    """`path` as text, gunzipped if its name ends in .gz."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, mode.replace("t", "b")), encoding="utf-8")  # type: ignore[arg-type]
    return path.open(mode, encoding="utf-8")


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; RowError for bad gzip, UTF-8 or JSON."""
    try:
        with open_text(path) as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise RowError(f"not JSON ({err.msg} at column {err.colno})", path, number) from None
                if not isinstance(row, dict):
                    raise RowError(f"a row must be a JSON object, got {type(row).__name__}", path, number)
                yield number, row
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as err:
        raise RowError(f"cannot read ({type(err).__name__}: {err})", path) from None


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write `rows` as JSON Lines (gzipped if the name ends in .gz), via a temporary file
    renamed into place; returns the number of rows."""
    partial = path.with_name(path.name + ".partial")
    count = 0
    opener = gzip.open(partial, "wt", encoding="utf-8", compresslevel=GZIP_LEVEL) if path.name.endswith(".gz") \
        else partial.open("w", encoding="utf-8")  # fmt: skip
    with opener as out:
        for row in rows:
            out.write(codec.dumps(row))
            out.write("\n")
            count += 1
    partial.replace(path)
    return count


class Fields:
    """Typed access to one row's fields; errors name the file, line and field."""

    def __init__(self, row: dict[str, Any], path: Path, line: int):
        self.row, self.path, self.line = row, path, line

    def error(self, name: str, problem: str) -> RowError:
        return RowError(problem, self.path, self.line, name)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.row.get(name)
        return default if value is None else value

    def text(self, name: str, *, required: bool = True, default: str | None = None) -> str | None:
        value = self.row.get(name)
        if value is None and not required:
            return default
        if not isinstance(value, str) or (required and not value):
            raise self.error(name, f"expected a non-empty string, got {value!r}"[:200])
        return value

    def integer(self, name: str, *, required: bool = True, default: int | None = None, minimum: int | None = None) -> int | None:
        """An int (Neuronpedia stores latent indices as decimal strings)."""
        value = self.row.get(name)
        if value is None and not required:
            return default
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, f"expected an integer, got {value!r}"[:200])
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value}")
        return value

    def number(self, name: str, *, required: bool = True, default: float | None = None) -> float | None:
        value = self.row.get(name)
        if value is None and not required:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise self.error(name, f"expected a finite number, got {value!r}"[:200])
        return float(value)

    def numbers(self, name: str, *, required: bool = False) -> list[float]:
        """A list of finite numbers (checked with numpy: rows hold hundreds of values)."""
        value = self.row.get(name)
        if value is None and not required:
            return []
        array = np.array(value) if isinstance(value, list) else None
        if array is None or (array.size and (array.ndim != 1 or array.dtype.kind not in "iuf")):
            raise self.error(name, "expected a list of finite numbers")
        if array.size and not np.isfinite(array).all():
            raise self.error(name, "expected a list of finite numbers")
        return array.astype(np.float64).tolist()

    def integers(self, name: str) -> list[int]:
        value = self.row.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.error(name, "expected a list of integers")
        return value

    def strings(self, name: str, *, required: bool = False) -> list[str]:
        value = self.row.get(name)
        if value is None and not required:
            return []
        if not isinstance(value, list) or not set(map(type, value)) <= {str}:
            raise self.error(name, "expected a list of strings")
        return value

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.row.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(name, f"expected an object, got {type(value).__name__}")
        return value
