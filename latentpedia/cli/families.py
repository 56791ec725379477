"""`latentpedia neighbours | match`: decoder-cosine neighbours (Neuronpedia's topkCosSim) and
cross-SAE matching (feature splitting across widths, depth, universality across seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentpedia.cli.common import COUNT, AtlasDbOpt, ModelOpt, clear_errors, console, log, open_store
from latentpedia.config import DEFAULT_MODEL_ID

app = typer.Typer()
TopK = Annotated[int, typer.Option("--k", help="matches kept per latent", min=1, max=100)]


def _model(store, model: str):
    """The loaded model of the atlas's `model` (an id, or a folder / file it was built from)."""
    from latentpedia.engine.worker import store_model_loader
    from latentpedia.errors import InvalidInputError
    from latentpedia.models.loader import load_model

    if store.get_model(model) is None and Path(model).exists():
        loaded = load_model(model)
        if store.get_model(loaded.id) is not None:
            return loaded
    if store.get_model(model) is None:
        raise InvalidInputError(f"the atlas has no model {model!r}")
    return store_model_loader(lambda: store)(model)


@app.command()
def neighbours(
    model: ModelOpt = DEFAULT_MODEL_ID,
    source: Annotated[list[str], typer.Option("--source", "-s", help="a built source; repeatable (default: every built source)")] = [],
    k: TopK = 10,
    redo: Annotated[bool, typer.Option(help="recompute pairs already stored")] = False,
    db: AtlasDbOpt = "",
) -> None:
    """Nearest latents by decoder cosine within each source and in every other source at the same
    hook (topkCosSimIndices/Values on the feature page and in its JSON); resumable."""
    from latentpedia.dashboards.neighbours import update_neighbours
    from latentpedia.engine.resolve import source_record

    with clear_errors():
        store = open_store(db)
        loaded = _model(store, model)
        for name in source:
            source_record(store, loaded.id, name)
        done = update_neighbours(store, loaded, names=list(source) or None, k=k, rebuild=redo, log=log)
    console.print(f"[green]done[/]: {len(done)} source pair(s) computed" if done else "every pair is already stored (use --redo to recompute)")


@app.command()
def match(
    source_a: Annotated[Optional[str], typer.Argument(help="a built source (default: the atlas's default pairs)")] = None,
    source_b: Annotated[Optional[str], typer.Argument(help="another built source, e.g. a wider SAE at the same hook, a deeper layer or another seed")] = None,
    model: ModelOpt = DEFAULT_MODEL_ID,
    windows: Annotated[int, typer.Option(help="corpus windows to correlate activations over (one forward pass)", **COUNT)] = 128,
    k: TopK = 10,
    stored: Annotated[bool, typer.Option("--stored", help="compute nothing: report the matches already stored")] = False,
    examples: Annotated[int, typer.Option(help="example families printed per pair, with their explanations", min=0, max=100)] = 3,
    db: AtlasDbOpt = "",
) -> None:
    """Match the latents of two sources both ways, by decoder cosine and by activation correlation
    over the same tokens; prints the median best match and its histogram (for two SAEs differing
    only in seed: universality), the fraction of latents whose best match reaches 0.3 / 0.5 / 0.7 /
    0.9 by each method, and example families. Without sources: every SAE pair at one hook and
    along depth."""
    from latentpedia.errors import InvalidInputError
    from latentpedia.lab.matching import default_pairs, match_sources

    with clear_errors():
        if (source_a is None) != (source_b is None):
            raise InvalidInputError("give two sources (SOURCE_A SOURCE_B), or none for the default pairs")
        store = open_store(db)
        if stored:
            model_id = model if store.get_model(model) is not None else _model(store, model).id
            pairs = [(source_a, source_b)] if source_a else default_pairs(store.list_sources(model_id))
            _report(store, model_id, pairs, examples)
            return
        loaded = _model(store, model)
        pairs = [(source_a, source_b)] if source_a else default_pairs(store.list_sources(loaded.id))
        if not pairs:
            raise InvalidInputError(f"{loaded.id} has no pair of built SAEs to match")
        report = match_sources(store, loaded, pairs, n_windows=windows, k=k, log=log)
        for pair in report.pairs:
            if pair.method == "act_corr" and pair.hist.get("counts"):
                console.print(f"{pair.source} -> {pair.other}: best-match activation correlation, median {pair.median:.3f}")
                console.print(ascii_histogram(pair.hist))
        _report(store, loaded.id, pairs, examples)
    console.print(f"[green]done[/]: {len(report.pairs)} matched direction(s) over {report.n_tokens:,} tokens")


def _report(store, model_id: str, pairs, examples: int) -> None:
    """The universality table and example families of each pair (lab/universality.py)."""
    from rich.markup import escape
    from rich.table import Table

    from latentpedia.lab.universality import THRESHOLDS, agreement, example_families

    if not pairs:
        from latentpedia.errors import InvalidInputError

        raise InvalidInputError(f"{model_id} has no pair of built SAEs to report")
    table = Table("source -> other", "method", "latents", "median", *(f">= {t}" for t in THRESHOLDS), title="best match per latent")
    for a, b in pairs:
        for row in agreement(store, model_id, a, b):
            table.add_row(f"{row.source} -> {row.other}", row.method, f"{row.n:,}", "n/a" if row.median is None else f"{row.median:.3f}",
                          *(f"{row.fractions[t]:.1%}" for t in THRESHOLDS))  # fmt: skip
    console.print(table)
    for a, b in pairs:
        drawn, n_with_family = example_families(store, model_id, a, b, n=examples)
        console.print(f"[bold]families {escape(a)} -> {escape(b)}[/]: {n_with_family:,} latents of {escape(a)} have latents of "
                      f"{escape(b)} matching back at >= 0.5; {len(drawn)} drawn at random")  # fmt: skip
        for fam in drawn:
            console.print(f"  {escape(fam.source)}/{fam.index}: {escape(_said(fam.explanation))}")
            for source, index, value, said in fam.matches:
                console.print(f"    {fam.method} {value:.2f}  {escape(source)}/{index}: {escape(_said(said))}")


def _said(best) -> str:
    if best is None:
        return "(no explanation)"
    return f"{best.text}" + (f" [{best.scorer} {best.score:.2f}]" if best.score is not None else "")


def ascii_histogram(hist: dict, width: int = 40) -> str:
    """A histogram as text bars, one line per non-empty bin."""
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    top = max(counts or [1]) or 1
    lines = [f"  {a:+.2f}..{b:+.2f} {'#' * max(1, round(width * c / top))} {c}" for a, b, c in zip(edges, edges[1:], counts) if c]
    return "\n".join(lines)
