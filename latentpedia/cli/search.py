"""`latentpedia index-explanations`: embed the explanations an atlas holds for explanation search."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from latentpedia.cli.common import COUNT, AtlasDbOpt, ProgressOpt, clear_errors, console, open_store

app = typer.Typer()


def index_explanations(
    batch: Annotated[int, typer.Option(help="explanations embedded per transaction", **COUNT)] = 256,
    limit: Annotated[Optional[int], typer.Option(help="stop after embedding N explanations", **COUNT)] = None,
    progress: ProgressOpt = True,
    db: AtlasDbOpt = "",
) -> None:
    """Embed every explanation not embedded yet (atlases built before explanation search); resumable:
    a rerun goes on where a stopped one left off, and a full atlas is a no-op."""
    from rich.progress import Progress

    from latentpedia.engine.explanation_index import explanation_index
    from latentpedia.interp.explanation_embeddings import embed_explanations
    from latentpedia.store.explanation_search import count_embedding_state

    with clear_errors():
        store = open_store(db)
        total, done = count_embedding_state(store)
        todo = total - done if limit is None else min(limit, total - done)
        console.print(f"{total:,} explanations, {done:,} embedded, {todo:,} to embed")
        with Progress(console=console, disable=not progress or todo == 0) as bar:
            task = bar.add_task("embedding explanations", total=todo)
            written = embed_explanations(store, batch=batch, limit=limit, progress=lambda n: bar.advance(task, n))
        index = explanation_index(store)
        index.sync()
    console.print(f"[green]done[/]: {written:,} embedded; the {index.kind} index holds {len(index.index):,}")


app.command("index-explanations")(index_explanations)
