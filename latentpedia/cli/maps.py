"""`latentpedia build-maps`: latent maps (2-D UMAP of decoder directions) for an atlas built before
maps existed, or recomputed with other UMAP settings (`--redo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentpedia.cli.common import COUNT, NON_NEGATIVE, AtlasDbOpt, ModelOpt, clear_errors, console, log, open_store
from latentpedia.config import DEFAULT_MODEL_ID

app = typer.Typer()


@app.command("build-maps")
def build_maps(
    model: ModelOpt = DEFAULT_MODEL_ID,
    source: Annotated[list[str], typer.Option("--source", "-s", help="a built source of the model; repeatable (default: every built source)")] = [],
    redo: Annotated[bool, typer.Option(help="recompute maps that exist")] = False,
    neighbors: Annotated[int, typer.Option(help="UMAP n_neighbors", min=2)] = 15,
    epochs: Annotated[int, typer.Option(help="UMAP n_epochs", **COUNT)] = 200,
    init: Annotated[str, typer.Option(help="UMAP init: pca or spectral (umap's default, slower)")] = "pca",
    seed: Annotated[int, typer.Option(help="random seed of UMAP and k-means", **NON_NEGATIVE)] = 0,
    db: AtlasDbOpt = "",
) -> None:
    """Compute the 2-D map (UMAP of decoder directions, k-means clusters) of every built source
    that has none, with progress; shown at /{model}/{source}/map."""
    from latentpedia.dashboards.maps import MapConfig, ensure_maps
    from latentpedia.engine.resolve import source_from_record, source_record
    from latentpedia.errors import InvalidInputError
    from latentpedia.engine.worker import store_model_loader
    from latentpedia.models.loader import load_model

    with clear_errors():
        if init not in ("pca", "spectral"):
            raise InvalidInputError(f"--init must be pca or spectral, got {init!r}")
        store = open_store(db)
        loaded = None
        if store.get_model(model) is None and Path(model).exists():  # a model folder or file: its id
            loaded = load_model(model)
            model = loaded.id
        if store.get_model(model) is None:
            raise InvalidInputError(f"the atlas has no model {model!r}")
        records = [source_record(store, model, name) for name in source] if source else store.list_sources(model)
        records = [r for r in records if r.status == "ready"]
        if not records:
            raise InvalidInputError(f"{model} has no built source to map")
        wanted = [r for r in records if redo or not store.has_map(r.id)]
        if not wanted:
            console.print("every source already has its map (use --redo to recompute)")
            return
        loaded = loaded or store_model_loader(lambda: store)(model)
        sources = [(source_from_record(loaded, r), r.id) for r in wanted]
        config = MapConfig(n_neighbors=neighbors, n_epochs=epochs, init=init, seed=seed)
        done = ensure_maps(store, sources, config=config, redo=[r.id for r in wanted] if redo else [], log=log)
    console.print(f"[green]done[/]: mapped {', '.join(done)}")
