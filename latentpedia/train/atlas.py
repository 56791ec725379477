"""The default atlas's own SAEs: trained during `latentpedia demo` on the activations its build
pass cached, evaluated, and built from the same cache (no second forward pass).

Residual stream after layers 8, 14 and 20 at 4,608 latents, plus 2,304 latents at layer 14
(two widths at one layer, for feature-splitting views). TopK k=32, the architecture whose
quality bar is met here (bench/RESULTS.md, P5).
"""

from __future__ import annotations

from pathlib import Path

from latentpedia.dashboards import defaults
from latentpedia.config import data_dir
from latentpedia.store.api import Store
from latentpedia.train.export import sae_name
from latentpedia.train.run import TrainRequest, train_saes

ARCHITECTURE = "topk"
K = 32
PAIRS: tuple[tuple[str, int], ...] = (
    ("blocks.8.hook_resid_post", 4608),
    ("blocks.14.hook_resid_post", 4608),
    ("blocks.14.hook_resid_post", 2304),
    ("blocks.20.hook_resid_post", 4608),
)
N_TOKENS = 400_000  # training tokens: two epochs of the 200k cached (`--sae-tokens` changes it)
BATCH_SIZE = 512
LR = 1e-3


def default_sae_names() -> list[str]:
    return [sae_name(hook, ARCHITECTURE, width) for hook, width in PAIRS]


def missing_default_saes(store: Store, model_id: str = defaults.MODEL) -> list[tuple[str, int]]:
    """The default SAEs not yet in the atlas as built sources."""
    ready = {s.name for s in store.list_sources(model_id) if s.status == "ready"}
    return [(hook, width) for hook, width in PAIRS if sae_name(hook, ARCHITECTURE, width) not in ready]


def train_default_saes(store: Store, *, n_tokens: int = N_TOKENS, progress: bool = True, log=print) -> list[str]:
    """Train, evaluate and add the default SAEs that are missing; their source names."""
    todo = missing_default_saes(store)
    if not todo:
        log("the default SAEs are already in the atlas")
        return []
    request = TrainRequest(
        model=defaults.MODEL, hooks=[], widths=[], pairs=todo, out_dir=data_dir() / "saes" / Path(defaults.MODEL).name,
        train=dict(architecture=ARCHITECTURE, k=K, n_tokens=n_tokens, batch_size=BATCH_SIZE, lr=LR, progress=progress),
    )  # fmt: skip
    return [result["name"] for result in train_saes(store, request, log=log)]
