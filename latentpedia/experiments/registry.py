"""The registry of experiments: one entry each, read by the CLI's help, the /experiments page
and its JSON twin (`GET /api/experiments`), and the generated table in docs/experiments.md
(`python -m latentpedia.docgen --write`).

To add an experiment: its pure-torch module here, a CLI command in cli/experiments.py, a route
in web/routers/experiments.py, and one `Experiment(...)` line below; tests/test_registries.py
checks that the command and the route exist and that the docs list it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str  # one line: what it shows (also the CLI command's help)
    cli_command: str  # `latentpedia <cli_command>`
    api_route: str  # "POST /api/..."
    module: str  # where the torch work lives, under latentpedia/experiments/
    on_page: bool = False  # a tab of the /experiments page


_ENTRIES = (
    Experiment("steer", "Steer generation with a latent: default and steered completions, same seed.", "steer", "POST /api/steer", "steering.py"),
    Experiment("ablate", "Ablate a latent on a prompt (zero, mean or resample): next-token loss and a target's log-prob per position.", "ablate", "POST /api/ablate", "ablation.py"),
    Experiment("patch", "Activation patching: layer x position heatmap of the normalised logit difference, clean vs corrupted.", "patch", "POST /api/patch", "patching.py", on_page=True),
    Experiment("logit-lens", "Logit lens: each layer's top next-token predictions at each position.", "logit-lens", "POST /api/logit-lens", "lens.py", on_page=True),
    Experiment("dla", "Direct logit attribution of a target token: over components, a source's latents, or one latent per position.", "dla", "POST /api/dla", "lens.py"),
    Experiment("graph", "Attribution graph: which transcoder latents, errors and tokens drive the top next-token logits (pin, group, share at /graph).", "graph", "POST /api/graph/generate", "graph/"),
)  # fmt: skip

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in _ENTRIES}


def docs_table() -> str:
    """The Markdown table of docs/experiments.md (generated; see latentpedia/cli/docs.py)."""
    lines = ["| experiment | CLI | API | on /experiments | torch in | what it shows |", "|---|---|---|---|---|---|"]
    for e in EXPERIMENTS.values():
        lines.append(f"| `{e.name}` | `latentpedia {e.cli_command}` | `{e.api_route}` | {'yes' if e.on_page else 'no'} "
                     f"| `latentpedia/experiments/{e.module}` | {e.description} |")  # fmt: skip
    return "\n".join(lines)
