"""`latentpedia train-transcoders | graph`: per-layer transcoders and attribution graphs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from latentpedia.cli.common import COUNT, NON_NEGATIVE, POSITIVE_FLOAT, WINDOW, DbOpt, ModelOpt, ProgressOpt
from latentpedia.cli.common import clear_errors, console, layer_numbers, log, open_store
from latentpedia.config import DEFAULT_MODEL_ID
from latentpedia.experiments.registry import EXPERIMENTS

app = typer.Typer()


@app.command("train-transcoders")
def train_transcoders(
    layers: Annotated[Optional[str], typer.Option(help="comma-separated layers (default: every layer)", callback=layer_numbers)] = None,
    width: Annotated[int, typer.Option(help="latents per transcoder", **COUNT)] = 2304,
    k: Annotated[int, typer.Option(help="active latents per token (TopK)", **COUNT)] = 32,
    skip: Annotated[bool, typer.Option("--skip/--no-skip", help="add a linear skip connection (MLP input -> output)")] = False,
    tokens: Annotated[int, typer.Option(help="training tokens (one streaming pass; the corpus cycles if shorter)", **COUNT)] = 100_000,
    windows_per_step: Annotated[int, typer.Option(help="corpus windows per forward pass and optimizer step", **COUNT)] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate", **POSITIVE_FLOAT)] = 1e-3,
    seed: int = 0,
    corpus: Annotated[str, typer.Option(help="'default' or a path (see `latentpedia build`)")] = "default",
    window: Annotated[int, typer.Option(help="tokens per corpus window (BOS included)", **WINDOW)] = 128,
    out: Annotated[Optional[Path], typer.Option("--out", help="where the transcoder folders go (default: <data dir>/transcoders/<model>)")] = None,
    do_import: Annotated[bool, typer.Option("--import/--no-import", help="add them to the atlas and build their dashboards")] = True,
    eval_tokens: Annotated[int, typer.Option(help="held-out tokens to evaluate on (0: skip)", **NON_NEGATIVE)] = 4096,
    model: ModelOpt = DEFAULT_MODEL_ID,
    progress: ProgressOpt = True,
    db: DbOpt = "",
) -> None:
    """Train a transcoder (MLP input -> MLP output) for every layer in one streaming pass; resumable."""
    from latentpedia.config import data_dir
    from latentpedia.train.transcoder_run import TranscoderRequest, train_transcoders as run

    chosen = [int(x) for x in layers.split(",")] if layers else None
    knobs = dict(layers=chosen, width=width, k=k, skip=skip, n_tokens=tokens, windows_per_step=windows_per_step,
                 lr=lr, seed=seed, progress=progress)
    request = TranscoderRequest(model=model, out_dir=out or data_dir() / "transcoders" / Path(model).name, corpus=corpus,
                                window_len=window, eval_tokens=eval_tokens, import_to_atlas=do_import, train=knobs)
    with clear_errors():
        done = run(open_store(db) if do_import else None, request, log=log)
    console.print(f"[green]done[/]: {len(done['results'])} transcoders in {request.out_dir}")


def _sources(m, db: str, names: list[str] | None):
    """Transcoder sources: `names` (atlas sources or folders), else every transcoder of the atlas."""
    from latentpedia.engine.resolve import load_source, resolve_source
    from latentpedia.errors import InvalidInputError

    store = open_store(db)
    if names:
        return [load_source(store, m, n) if store.get_source(m.id, n) else resolve_source(m, n) for n in names], store
    records = [s for s in store.list_sources(m.id) if s.kind == "transcoder"]
    if not records:
        raise InvalidInputError(f"the atlas has no transcoders for {m.id}: run `latentpedia train-transcoders` or pass --source")
    return [load_source(store, m, r.name) for r in records], store


@app.command("graph", help=EXPERIMENTS["graph"].description)
def graph(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="the text whose next-token prediction to explain")],
    source: Annotated[Optional[list[str]], typer.Option("--source", help="transcoder source or folder; repeatable (default: every transcoder in the atlas)")] = None,
    node_threshold: Annotated[float, typer.Option(help="keep the nodes carrying this share of the influence", **POSITIVE_FLOAT)] = 0.8,
    edge_threshold: Annotated[float, typer.Option(help="keep the edges carrying this share of the influence", **POSITIVE_FLOAT)] = 0.98,
    max_feature_nodes: Annotated[int, typer.Option(help="latents whose incoming edges are computed (most influential first)", **COUNT)] = 256,
    max_logits: Annotated[int, typer.Option(help="top next-token logits to explain", **COUNT)] = 10,
    out: Annotated[Optional[Path], typer.Option("--out", help="write the graph JSON (Neuronpedia's schema) here")] = None,
    save: Annotated[bool, typer.Option("--save/--no-save", help="save it in the atlas (open it at /graph/<id>)")] = True,
    model: ModelOpt = DEFAULT_MODEL_ID,
    db: DbOpt = "",
) -> None:
    """Attribution graph of a prompt (help text: the experiments registry)."""
    from latentpedia.experiments.graph import AttributionConfig, generate_graph
    from latentpedia.models import load_model

    with clear_errors():
        m = load_model(model)
        sources, store = _sources(m, db, source)
        config = AttributionConfig(max_n_logits=max_logits, max_feature_nodes=max_feature_nodes)
        result = generate_graph(m, prompt, sources, node_threshold=node_threshold, edge_threshold=edge_threshold, config=config)
        if out:
            out.write_text(json.dumps(result))
        saved = store.add_graph(result, origin="generated") if save else None
    _print_graph(result)
    if saved is not None:
        console.print(f"saved: /graph/{saved.public_id}  (latentpedia serve, then open it)")


def _print_graph(graph: dict) -> None:
    from rich.console import Console
    from rich.markup import escape

    info = graph["metadata"]["info"]
    table = Table(title=f"{len(graph['nodes'])} nodes, {len(graph['links'])} links in {info['seconds']} s "
                        f"({info['n_expanded_features']} of {info['n_candidate_features']} active latents expanded)")
    for column in ("node", "type", "influence", "label"):
        table.add_column(column)
    ranked = sorted(graph["nodes"], key=lambda n: -(n.get("influence") or 0))
    for node in ranked[:25]:
        table.add_row(node["node_id"], node["feature_type"], f"{node.get('influence') or 0:.3g}", escape(node.get("clerp") or ""))
    Console(soft_wrap=True, width=120).print(table)
