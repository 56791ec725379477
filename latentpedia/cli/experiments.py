"""`latentpedia steer | ablate | patch | logit-lens | dla`: experiments from the command line,
printed as rich tables (registered on the main typer app by `register`).

A latent is `SOURCE INDEX`: SOURCE is a source of the atlas (`--db`), or `<layer>-mlp`, or the
path of an SAE folder. Target tokens are text that is exactly one token (" Paris") or an id.
"""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from latentpedia.cli.common import COUNT, NON_NEGATIVE, NON_NEGATIVE_FLOAT, DbOpt, ModelOpt, clear_errors
from latentpedia.config import DEFAULT_MODEL_ID
from latentpedia.experiments.registry import EXPERIMENTS

OUT = Console(soft_wrap=True)
PromptOpt = Annotated[str, typer.Option("--prompt", "-p", help="the text to run")]


def _token(m, text: str) -> int:
    from latentpedia.experiments.common import token_id

    return token_id(m, int(text) if re.fullmatch(r"\d+", text) else text)


def _store_or_none(db: str):
    """The atlas at `db` (default: the data dir's), or None when there is none (never creates one)."""
    from pathlib import Path

    from latentpedia.config import default_db_url
    from latentpedia.store.api import Store

    url = db or default_db_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    return Store.open(url)


def _latent(m, db: str, source: str, index: int):
    """(Latent, store or None) for SOURCE INDEX."""
    from latentpedia.engine.resolve import resolve_source
    from latentpedia.experiments.common import Latent
    from latentpedia.experiments.resolve import find_latent

    store = _store_or_none(db)
    if store is not None and store.get_source(m.id, source) is not None:
        return find_latent(store, m, source, index), store
    return Latent(resolve_source(m, source), index), store


def _print(table: Table, width: int = 80) -> None:
    """Print to stdout, wide enough for the table even when stdout is not a terminal."""
    Console(soft_wrap=True, width=max(OUT.width, width)).print(table)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text.replace("\n", "\\n"))


def steer(
    source: Annotated[str, typer.Argument(help="source id in the atlas, '<layer>-mlp' or an SAE folder")],
    index: Annotated[int, typer.Argument(help="the latent", **NON_NEGATIVE)],
    prompt: PromptOpt = "I think that",
    strength: Annotated[float, typer.Option(help="how far to push along the decoder direction")] = 8.0,
    method: Annotated[str, typer.Option(help="additive | orthogonal | projection_cap")] = "additive",
    normalize: Annotated[bool, typer.Option(help="unit-norm direction")] = False,
    tokens: Annotated[int, typer.Option(help="tokens to generate", **COUNT)] = 24,
    temperature: Annotated[float, typer.Option(help="sampling temperature (0: greedy)", **NON_NEGATIVE_FLOAT)] = 0.0,
    seed: int = 16,
    model: ModelOpt = DEFAULT_MODEL_ID,
    db: DbOpt = "",
) -> None:
    """Steer generation with a latent: default and steered completions, same seed."""
    from latentpedia.experiments.steering import Steer, SteerConfig, steer as run
    from latentpedia.models import load_model

    with clear_errors():
        m = load_model(model)
        latent, _ = _latent(m, db, source, index)
        config = SteerConfig(method=method, normalize=normalize, n_tokens=tokens, temperature=temperature, seed=seed)
        out = run(m, prompt, [Steer.from_latent(latent, strength)], config)
    table = Table(title=f"{latent.label} strength {strength:g} ({method})")
    for c in out:
        table.add_column(c.type)
    table.add_row(*[_escape(prompt + c.text) for c in out])
    OUT.print(table)


def ablate(
    source: Annotated[str, typer.Argument(help="source id in the atlas, '<layer>-mlp' or an SAE folder")],
    index: Annotated[int, typer.Argument(help="the latent", **NON_NEGATIVE)],
    prompt: PromptOpt = "The quick brown fox jumps over the lazy dog",
    mode: Annotated[str, typer.Option(help="zero | mean | resample (mean/resample read the atlas)")] = "zero",
    target: Annotated[Optional[str], typer.Option(help="a token whose log-probability to report")] = None,
    model: ModelOpt = DEFAULT_MODEL_ID,
    db: DbOpt = "",
) -> None:
    """Ablate a latent on a prompt: next-token loss (and a target's log-prob) per position."""
    from latentpedia.errors import InvalidInputError
    from latentpedia.experiments.ablation import ablate as run
    from latentpedia.experiments.common import token_strs
    from latentpedia.experiments.resolve import corpus_windows, stored_mean
    from latentpedia.models import load_model

    with clear_errors():
        m = load_model(model)
        latent, store = _latent(m, db, source, index)
        mean = stored_mean(store, m.id, source, index) if store is not None and mode == "mean" else None
        windows = corpus_windows(store, m.id, source) if store is not None and mode != "zero" and mean is None else None
        if mode != "zero" and mean is None and windows is None:
            raise InvalidInputError(f"{mode} ablation needs an atlas with a corpus for {m.id} (--db)")
        targets = [_token(m, target)] if target else []
        r = run(m, latent, prompt, mode=mode, mean=mean, resample_from=windows, targets=targets)
    table = Table(title=f"{mode}-ablating {latent.label}: mean loss {r.mean_loss_before:.4f} -> {r.mean_loss_after:.4f}")
    for col in ("pos", "token", "act", "replaced", "loss", "ablated", "Δ loss", *(["Δ log p"] if targets else [])):
        table.add_column(col, justify="left" if col == "token" else "right")
    for p, tok in enumerate(token_strs(m, r.tokens)):
        before, after = r.loss_before[p], r.loss_after[p]
        cells = [str(p), _escape(tok), f"{r.activations[p]:.3f}", f"{r.replaced[p]:.3f}"]
        cells += ["—", "—", "—"] if before is None else [f"{before:.3f}", f"{after:.3f}", f"{after - before:+.3f}"]
        if targets:
            t = r.targets[targets[0]]
            cells.append(f"{t['after'][p] - t['before'][p]:+.3f}")
        table.add_row(*cells)
    OUT.print(table)


def _cell(v: float) -> str:
    colour = "blue" if v > 0.5 else "cyan" if v > 0.1 else "red" if v < -0.1 else "white"
    return f"[{colour}]{v:.2f}[/]"


def patch(
    clean: Annotated[str, typer.Option(help="the clean prompt")],
    corrupted: Annotated[str, typer.Option(help="the corrupted prompt (same number of tokens)")],
    answer: Annotated[str, typer.Option(help="the clean answer token")],
    foil: Annotated[str, typer.Option(help="the corrupted answer token")],
    hook: Annotated[str, typer.Option(help="resid_pre | resid_post | attn_out | mlp_out")] = "resid_pre",
    batch_size: Annotated[int, typer.Option(help="patched runs per forward batch", **COUNT)] = 16,
    model: ModelOpt = DEFAULT_MODEL_ID,
) -> None:
    """Activation patching: layer x position heatmap of the normalised logit difference."""
    from latentpedia.experiments.common import token_strs
    from latentpedia.experiments.patching import patch_sweep
    from latentpedia.models import load_model

    with clear_errors():
        m = load_model(model)
        r = patch_sweep(m, clean, corrupted, _token(m, answer), _token(m, foil), kind=hook, batch_size=batch_size)
    title = (f"patching {hook}: 0 = corrupted (LD {r.ld_corrupted:.3f}), 1 = clean (LD {r.ld_clean:.3f}); "
             f"{r.n_patched} runs in {r.n_forward} forward passes, {r.seconds:.1f} s")  # fmt: skip
    table = Table(title=title)
    table.add_column("layer", justify="right")
    for a, b in zip(token_strs(m, r.clean), token_strs(m, r.corrupted)):
        table.add_column(_escape(a if a == b else f"{a}/{b}"), justify="right")
    for layer, row in zip(r.layers, r.scores):
        table.add_row(str(layer), *[_cell(v) for v in row])
    _print(table, 10 + 8 * len(r.clean))


def logit_lens(
    prompt: PromptOpt = "The capital of France is",
    k: Annotated[int, typer.Option(help="top tokens per cell", **COUNT)] = 1,
    model: ModelOpt = DEFAULT_MODEL_ID,
) -> None:
    """Logit lens: each layer's top next-token predictions at each position."""
    from latentpedia.experiments.common import token_strs
    from latentpedia.experiments.lens import logit_lens as run
    from latentpedia.models import load_model

    with clear_errors():
        m = load_model(model)
        r = run(m, prompt, k=k)
    table = Table(title=f"logit lens (resid_post of each layer, top {k})")
    table.add_column("layer", justify="right")
    for tok in r.token_strs:
        table.add_column(_escape(tok))
    for layer, row in zip(r.layers, r.top_ids):
        table.add_row(str(layer), *[_escape(" | ".join(token_strs(m, cell))) for cell in row])
    _print(table, 10 + 12 * k * len(r.tokens))


def dla(
    prompt: PromptOpt = "The capital of France is",
    target: Annotated[str, typer.Option(help="the target token")] = " Paris",
    source: Annotated[Optional[str], typer.Option(help="attribute to this source's active latents")] = None,
    top: Annotated[int, typer.Option(help="latents to list", **COUNT)] = 15,
    model: ModelOpt = DEFAULT_MODEL_ID,
    db: DbOpt = "",
) -> None:
    """Direct logit attribution of the last position's target logit (components or latents)."""
    from latentpedia.experiments.lens import dla_components, dla_source
    from latentpedia.models import load_model

    with clear_errors():
        m = load_model(model)
        t = _token(m, target)
        if source is None:
            r = dla_components(m, prompt, t)
        else:
            latent, _ = _latent(m, db, source, 0)
            r = dla_source(m, latent.source, prompt, t, top=top)
    table = Table(title=f"DLA to {target!r}: logit {r.target_logit:.3f} = contributions + others {r.others:.3f} + remainder {r.remainder:.3f}")
    for col in ("piece", "contribution", "activation"):
        table.add_column(col, justify="left" if col == "piece" else "right")
    for item in r.items:
        table.add_row(item.label, f"{item.contribution:+.3f}", "" if item.activation is None else f"{item.activation:.3f}")
    OUT.print(table)


app = typer.Typer()
# names and help from the registry (experiments/registry.py)
for _name, _command in {"steer": steer, "ablate": ablate, "patch": patch, "logit-lens": logit_lens, "dla": dla}.items():
    app.command(EXPERIMENTS[_name].cli_command, help=EXPERIMENTS[_name].description)(_command)
