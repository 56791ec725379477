"""What every `latentpedia` command shares: the console, the common options, opening the store
and turning errors into one clear line with exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from latentpedia.config import DEFAULT_MODEL_ID, default_db_url
from latentpedia.errors import LatentpediaError

console = Console(stderr=True, soft_wrap=True)

DbOpt = Annotated[str, typer.Option("--db", help="the atlas, a SQLAlchemy URL: sqlite:///… (default: atlas.db in the data dir) or postgresql://…")]
ModelOpt = Annotated[str, typer.Option("--model", help=f"{DEFAULT_MODEL_ID} (embedded), a local HF folder or a .gguf file")]
ProgressOpt = Annotated[bool, typer.Option(help="show progress bars")]


def open_store(url: str):
    """The atlas at `url` (empty: the default SQLite file in the data dir)."""
    from latentpedia.store.api import Store

    return Store.open(url or default_db_url())


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
