"""What the default atlas holds (built by `latentpedia demo` / `make demo`).

Budget: the first build should take about ten minutes on 2 CPU cores. The forward pass stops
after the deepest layer needed, so neuron layers are spread over the first two thirds of the
30-layer model, and the residual stream of the SAE layers is cached in the same pass. Measured on
an idle 2-core machine: the pass to layer 20 with every statistic runs at ~700 tokens/s, so
400k tokens take ~10 minutes end to end (bench/RESULTS.md).
"""

from __future__ import annotations

from latentpedia.models.loader import DEFAULT_MODEL_ID

MODEL = DEFAULT_MODEL_ID
NEURON_LAYERS = (2, 8, 14, 20)
SAE_HOOKS = ("blocks.8.hook_resid_post", "blocks.14.hook_resid_post", "blocks.20.hook_resid_post")
N_TOKENS = 400_000
CACHE_TOKENS = 200_000


def default_sources() -> list[str]:
    return [f"{layer}-mlp" for layer in NEURON_LAYERS]
