"""The default atlas's own SAEs: trained during `latentpedia demo` (its `saes` stage,
jobs/demo.py) on the activations its neuron pass cached, evaluated together on held-out windows
(one clean pass for all of them), and built from the same cache (no second forward pass).

What they are lives in dashboards/defaults.py (SAE_PAIRS: residual stream after layers 8, 14 and
20 at 4,608 latents, plus 2,304 at layer 14). TopK k=32, the architecture whose quality bar is
met here (bench/RESULTS.md, P5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from latentpedia.config import data_dir
from latentpedia.dashboards import defaults
from latentpedia.store.api import Store
from latentpedia.train.export import sae_name
from latentpedia.train.run import TrainRequest, train_saes

ARCHITECTURE = defaults.SAE_ARCHITECTURE
K = defaults.SAE_K
PAIRS = defaults.SAE_PAIRS
N_TOKENS = defaults.SAE_TOKENS
BATCH_SIZE = 512
LR = 1e-3
EVAL_TOKENS = 8192

Pairs = Sequence[tuple[str, int]]


def default_sae_names(pairs: Pairs = PAIRS) -> list[str]:
    return [sae_name(hook, ARCHITECTURE, width) for hook, width in pairs]


def missing_default_saes(store: Store, model_id: str = defaults.MODEL, pairs: Pairs = PAIRS) -> list[tuple[str, int]]:
    """The default SAEs not yet in the atlas as built sources."""
    ready = {s.name for s in store.list_sources(model_id) if s.status == "ready"}
    return [(hook, width) for hook, width in pairs if sae_name(hook, ARCHITECTURE, width) not in ready]


def train_default_saes(store: Store, *, model: str = defaults.MODEL, pairs: Pairs = PAIRS, n_tokens: int = N_TOKENS,
                       eval_tokens: int = EVAL_TOKENS, progress: bool = True, log=print) -> list[str]:  # fmt: skip
    """Train, evaluate and add the default SAEs that are missing; their source names."""
    todo = missing_default_saes(store, model, pairs)
    if not todo:
        log("the default SAEs are already in the atlas")
        return []
    request = TrainRequest(
        model=model, hooks=[], widths=[], pairs=list(todo), out_dir=data_dir() / "saes" / Path(model).name, eval_tokens=eval_tokens,
        train=dict(architecture=ARCHITECTURE, k=K, n_tokens=n_tokens, batch_size=BATCH_SIZE, lr=LR, progress=progress),
    )  # fmt: skip
    return [result["name"] for result in train_saes(store, request, log=log)]
