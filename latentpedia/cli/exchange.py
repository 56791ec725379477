"""`latentpedia import-neuronpedia | export`: datasets in and out (Neuronpedia's export layout,
Parquet and JSON Lines analysis dumps); see docs/neuronpedia.md."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from latentpedia.cli.common import AtlasDbOpt, DbOpt, clear_errors, console, fail, log, open_store

app = typer.Typer()


class ExportFormat(str, Enum):
    neuronpedia = "neuronpedia"
    parquet = "parquet"
    jsonl = "jsonl"


@app.command("import-neuronpedia")
def import_neuronpedia(
    folder: Annotated[Path, typer.Argument(help="a Neuronpedia dataset export: its root, a model folder or a source folder")],
    db: DbOpt = "",
) -> None:
    """Load Neuronpedia's dataset export layout into the atlas, one transaction per source;
    a rerun skips the sources already imported from the same files."""
    from latentpedia.exchange.np_import import import_neuronpedia as run_import
    from latentpedia.exchange.np_layout import source_dirs

    with clear_errors():
        source_dirs(folder)  # a folder without sources is refused before the store is opened
        store = open_store(db)
        outcome = run_import(store, folder, log=log)
        from latentpedia.interp.explanation_embeddings import embed_explanations

        embedded = embed_explanations(store)  # explanation search: the imported explanations' vectors
    done = sum(1 for v in outcome.values() if v == "imported")
    console.print(f"[green]done[/]: {done} source(s) imported, {len(outcome) - done} already there; {embedded:,} explanations embedded for search")


@app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="folder to write into (created if missing)")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="neuronpedia (its dataset layout) | parquet | jsonl (analysis tables)")] = ExportFormat.neuronpedia,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="stored model id to export; repeatable (default: all)")] = None,
    source: Annotated[Optional[list[str]], typer.Option("--source", help="source name to export, e.g. 6-mlp; repeatable (default: all)")] = None,
    db: AtlasDbOpt = "",
) -> None:
    """Write the atlas's built sources in Neuronpedia's dataset layout, or as Parquet / JSON Lines
    tables (latents, examples with tokens and values, explanations, scores, votes)."""
    from latentpedia.exchange.canonical import AtlasReader
    from latentpedia.exchange.dumps import write_dump
    from latentpedia.exchange.np_export import NeuronpediaExporter

    if out.exists() and not out.is_dir():
        fail(f"{out}: exists and is not a folder")
    with clear_errors():
        store = open_store(db)
        if not AtlasReader(store).selected_sources(model, source):
            fail(f"no built source to export (models {model or 'all'}, sources {source or 'all'})")
        if fmt is ExportFormat.neuronpedia:
            counts = NeuronpediaExporter(store, out, log=log).run(model, source)
        else:
            counts = write_dump(store, out, fmt.value, models=model, sources=source, log=log)
    console.print(f"[green]done[/]: {', '.join(f'{v} {k}' for k, v in counts.items())} in {out}")
