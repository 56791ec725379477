"""What every `latentpedia` command shares: the console, the common options, opening the store
and turning errors into one clear line with exit status 2.

Bad input is refused before anything is written. Numeric options take their range from the
constants below (typer refuses values outside it with exit status 2). `--db` is checked when it
is parsed (`checked_db_url`): a SQLAlchemy URL of SQLite or PostgreSQL, a SQLite file whose
folder exists (never created) and that is a SQLite database if it exists, a server that answers;
`AtlasDbOpt` also refuses a SQLite file that does not exist (commands that only read an atlas).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from latentpedia.config import DEFAULT_MODEL_ID, default_db_url
from latentpedia.errors import LatentpediaError

console = Console(stderr=True, soft_wrap=True)

# Ranges of numeric options, declared once: `typer.Option(help=..., **COUNT)`.
COUNT = {"min": 1}  # how many of something: tokens, latents, requests, batch sizes
NON_NEGATIVE = {"min": 0}  # indices, and budgets where 0 means "skip"
WINDOW = {"min": 2}  # a corpus window: BOS plus at least one token
PORT = {"min": 1, "max": 65535}
NON_NEGATIVE_FLOAT = {"min": 0.0}


def _greater_than_zero(param: typer.CallbackParam, value: float | None) -> float | None:
    if value is not None and not value > 0:
        fail(f"{param.opts[0]} must be greater than 0, got {value:g}")
    return value


POSITIVE_FLOAT = {"callback": _greater_than_zero}  # typer has no open ranges

_SQLITE_MAGIC = b"SQLite format 3\x00"
_CONNECT_TIMEOUT = 5


def _one_line(err: BaseException) -> str:
    """A driver's (often multi-line) message as one line."""
    text = str(getattr(err, "orig", None) or err)
    return re.sub(r"\s+", " ", text).strip() or type(err).__name__


def _sqlite_problem(path: Path, must_exist: bool) -> str | None:
    """Why the SQLite file `path` cannot hold an atlas (None: it can). Creates nothing."""
    if path.is_dir():
        return "is a folder, not a database file"
    if not path.exists():
        if not path.parent.is_dir():
            return f"folder {str(path.parent)!r} does not exist (it is not created for you)"
        return "no atlas here: build one with `latentpedia build` or `latentpedia demo`" if must_exist else None
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as err:
        return f"cannot read it: {err.strerror}"
    return None if head in (b"", _SQLITE_MAGIC) else "is not a SQLite database"


def _server_problem(url) -> str | None:
    """Why the database server of `url` cannot be used (None: it answered)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, connect_args={"connect_timeout": _CONNECT_TIMEOUT}, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as err:
        return f"cannot connect: {_one_line(err)}"
    except ImportError as err:
        return f"its driver is not installed ({err.name})"
    finally:
        engine.dispose()
    return None


def db_url_problem(url: str, *, must_exist: bool = False) -> str | None:
    """What is wrong with the atlas URL `url` (None: nothing). Writes nothing anywhere."""
    from latentpedia.store.base import normalize_url, printable_url

    try:
        parsed = normalize_url(url)
    except LatentpediaError as err:
        return str(err)
    if parsed.get_backend_name() == "sqlite":
        name = parsed.database or ""
        if name in ("", ":memory:") or name.startswith("file:"):
            return None
        problem = _sqlite_problem(Path(name), must_exist)
    else:
        problem = _server_problem(parsed)
    return None if problem is None else f"{printable_url(parsed)}: {problem}"


def _db_callback(must_exist: bool):
    def check(value: str) -> str:
        problem = db_url_problem(value or default_db_url(), must_exist=must_exist)
        if problem:
            fail(f"--db {problem}" if value else f"the default atlas ($LATENTPEDIA_DB or the data dir) {problem}; pass --db")
        return value

    return check


def layer_numbers(param: typer.CallbackParam, value: str | None) -> str | None:
    """Callback of options naming layers as "2,8,14": refuses anything else with one line."""
    if value is not None and not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", value):
        fail(f"{param.opts[0]} must be comma-separated layer numbers such as 2,8,14, got {value!r}")
    return value


_DB_HELP = "the atlas, a SQLAlchemy URL: sqlite:///… (default: atlas.db in the data dir) or postgresql://…"
DbOpt = Annotated[str, typer.Option("--db", help=_DB_HELP, callback=_db_callback(must_exist=False))]
AtlasDbOpt = Annotated[str, typer.Option("--db", help=_DB_HELP + " (must exist)", callback=_db_callback(must_exist=True))]
ModelOpt = Annotated[str, typer.Option("--model", help=f"{DEFAULT_MODEL_ID} (embedded), a local HF folder or a .gguf file")]
ProgressOpt = Annotated[bool, typer.Option(help="show progress bars")]


def open_store(url: str):
    """The atlas at `url` (empty: the default SQLite file in the data dir); a database that
    cannot be opened or migrated is one clear line and exit status 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from latentpedia.store.api import Store
    from latentpedia.store.base import printable_url

    url = url or default_db_url()
    try:
        return Store.open(url)
    except LatentpediaError as err:
        fail(f"--db {err}")
    except SQLAlchemyError as err:
        fail(f"--db {printable_url(url)}: cannot open the atlas: {_one_line(err)}")


def log(message: str) -> None:
    """One plain line on stderr (no rich markup)."""
    console.print(message, markup=False, highlight=False)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn a LatentpediaError into one red line and exit status 2 (no traceback)."""
    try:
        yield
    except LatentpediaError as err:
        fail(err)


def fail(err: Exception | str) -> None:
    console.print(f"[bold red]error:[/] {escape(str(err))}")
    raise typer.Exit(2)
