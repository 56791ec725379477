"""`latentpedia campaign …`: the game's campaigns and invite codes from the command line.

    latentpedia campaign add l8-neurons --source 8-mlp --order unexplained --title "Layer 8 neurons"
    latentpedia campaign add winter-quest --source 8-mlp --indices 1,5,9 --days 7   # a side quest
    latentpedia campaign list                      # with progress
    latentpedia campaign export l8-neurons --out l8.jsonl   # per latent: best explanation, scores
    latentpedia campaign invite                    # a sign-up code (serve --signup invite)
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from latentpedia.cli.common import AtlasDbOpt, COUNT, clear_errors, open_store
from latentpedia.config import DEFAULT_MODEL_ID

app = typer.Typer(help="The game: campaigns (add, list, export) and sign-up invite codes.", no_args_is_help=True)
ORDER_HELP = "unexplained (latents nobody explained first), dense, sparse or index"


def _game(store):
    from latentpedia.interp.game.play import Game

    def embed(texts):
        from latentpedia.interp.embedding import shared_embedder

        return shared_embedder()(texts)

    return Game(store, embed)


def _when(value: str | None, name: str) -> datetime | None:
    from latentpedia.errors import InvalidInputError

    if not value:
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"--{name} must be a date or time like 2026-12-01 or 2026-12-01T18:00, not {value!r}") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _indices(value: str | None) -> list[int] | None:
    from latentpedia.errors import InvalidInputError

    if not value:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise InvalidInputError(f"--indices must be latent numbers separated by commas, not {value!r}") from None


@app.command("add")
def add(
    slug: Annotated[str, typer.Argument(help="the campaign's name in URLs: lowercase letters, digits, '_', '-'")],
    source: Annotated[str, typer.Option(help="the source whose latents to explain, e.g. 8-mlp")],
    model: Annotated[str, typer.Option(help="the model id")] = DEFAULT_MODEL_ID,
    title: Annotated[str, typer.Option(help="a title for people (default: the name)")] = "",
    order: Annotated[str, typer.Option(help=ORDER_HELP)] = "unexplained",
    indices: Annotated[Optional[str], typer.Option(help="only these latents, e.g. 1,5,9 (default: all)")] = None,
    from_list: Annotated[Optional[int], typer.Option("--list", help="only the latents of this list (its items of --source)", min=1)] = None,
    starts: Annotated[Optional[str], typer.Option(help="opens at this UTC date/time (default: now)")] = None,
    ends: Annotated[Optional[str], typer.Option(help="closes at this UTC date/time: a side quest with its own board")] = None,
    days: Annotated[Optional[int], typer.Option(help="closes this many days from now (instead of --ends)", **COUNT)] = None,
    db: AtlasDbOpt = "",
) -> None:
    """Add a campaign: the latents of a source (or some of them) to explain, in an order."""
    from latentpedia.engine.resolve import source_record
    from latentpedia.errors import InvalidInputError
    from latentpedia.store.game import GameStore

    from latentpedia.store.game import ORDERS, check_slug

    with clear_errors():
        check_slug(slug)
        if order not in ORDERS:
            raise InvalidInputError(f"--order is one of {', '.join(ORDERS)}, not {order!r}")
        chosen, starts_at, ends_at = _indices(indices), _when(starts, "starts"), _when(ends, "ends")
        store = open_store(db)
        record = source_record(store, model, source)
        if from_list is not None:
            if store.get_list(from_list) is None:
                raise InvalidInputError(f"no list {from_list}")
            chosen = [i.latent_index for i in store.list_items(from_list) if i.source_id == record.id]
            if not chosen:
                raise InvalidInputError(f"list {from_list} has no latent of {source}")
        ends_at = ends_at or (datetime.now(UTC) + timedelta(days=days) if days else None)
        found = GameStore(store).add_campaign(slug, title or slug, record.id, order=order, latents=chosen,
                                              starts_at=starts_at, ends_at=ends_at)  # fmt: skip
    Console(stderr=True).print(f"[green]added[/] campaign {found.slug}: {found.model_id}/{found.source}, order {found.order}"
                               + (f", ends {found.ends_at:%Y-%m-%d %H:%M} UTC" if found.ends_at else ""), highlight=False)  # fmt: skip


@app.command("list")
def list_campaigns(db: AtlasDbOpt = "") -> None:
    """Every campaign with its progress."""
    with clear_errors():
        game = _game(open_store(db))
        table = Table("campaign", "source", "order", "window", "progress")
        for c in game.games.list_campaigns():
            window = f"{(c.starts_at or c.created_at):%Y-%m-%d} → {c.ends_at:%Y-%m-%d}" if c.ends_at else "open"
            table.add_row(c.slug, f"{c.model_id}/{c.source}", c.order, window, game.progress(c)["label"])
    Console().print(table)


@app.command("export")
def export(
    slug: Annotated[str, typer.Argument(help="the campaign")],
    out: Annotated[str, typer.Option(help="a .jsonl file to write (- for stdout)")] = "-",
    db: AtlasDbOpt = "",
) -> None:
    """A campaign's results as JSON lines: one per latent (best explanation, its score, the
    baseline and the machine's score, how many played), then one with the leaderboard."""
    from latentpedia.errors import InvalidInputError

    if out != "-" and not Path(out).parent.is_dir():
        with clear_errors():
            raise InvalidInputError(f"--out {out}: the folder {Path(out).parent} does not exist")
    with clear_errors():
        game = _game(open_store(db))
        record = game.campaign(slug)
        rows = []
        for index in game.candidates(record):
            reference = game.games.get_game_latent(record.source_id, index)
            plays = game.games.plays(source_id=record.source_id, index=index)
            best = game.best(record.source_id, index, reference) if reference else None
            rows.append({"modelId": record.model_id, "layer": record.source, "index": index, "best": best,
                         "baseline": reference["baseline_score"] if reference else None,
                         "machine": {"text": reference["machine_text"], "score": reference["machine_score"]} if reference else None,
                         "players": len({p.user_id for p in plays}), "explanations": sum(p.action == "explain" for p in plays)})  # fmt: skip
        rows.append({"leaderboard": game.leaderboard(campaign=slug, limit=1000), "progress": game.progress(record)})
    text = "".join(json.dumps(row, default=str) + "\n" for row in rows)
    if out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")
        Console(stderr=True).print(f"[green]wrote[/] {len(rows) - 1} latents of {slug} to {out}", highlight=False)


@app.command("invite")
def invite(db: AtlasDbOpt = "") -> None:
    """Make a sign-up invite code (for `latentpedia serve --signup invite`) and print it."""
    from latentpedia.store.game import GameStore

    with clear_errors():
        code = GameStore(open_store(db)).new_invite(None)
    print(code)
