"""`latentpedia …`: the command line. One module per command group, each with its own typer
`app`; this package puts them together. Shared options and error handling: `cli.common`.

| module | commands |
|---|---|
| `atlas` | build, import-sae, info, demo, serve |
| `train` | train-sae, eval-sae |
| `interp` | explain, llm-serve |
| `experiments` | steer, ablate, patch, logit-lens, dla |
| `users` | user add / list / key / revoke / set |
| `game` | campaign add / list / export / invite |
| `exchange` | import-neuronpedia, export |
| `lab` | toy, bench-saes, saebench |
| `circuits` | train-transcoders, graph |
| `worker` | worker |
| `search` | index-explanations |
| `families` | neighbours, match |
| `maps` | build-maps |
"""

from __future__ import annotations

import os

import typer

from latentpedia.cli import atlas, circuits, exchange, experiments, families, game, interp, lab, search, maps, train, users, worker

app = typer.Typer(help="latentpedia: an offline atlas of what the neurons and SAE latents of language models do.", no_args_is_help=True)

# Groups whose commands sit at the top level (`latentpedia build`, `latentpedia steer`, ...).
TOP_LEVEL = (atlas, train, interp, experiments, lab, exchange, circuits, search, families, maps, worker)
# Groups under a name (`latentpedia user add`).
NAMED = {"user": users, "campaign": game}
GROUPS = (*TOP_LEVEL, *NAMED.values())

for group in TOP_LEVEL:
    app.registered_commands.extend(group.app.registered_commands)
for name, group in NAMED.items():
    app.add_typer(group.app, name=name)


def main() -> None:  # pragma: no cover - entry point
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    app()
