"""What the default atlas holds (built by `latentpedia demo` / `make demo`, in the stages of
jobs/demo.py). Torch-free: `demo` reads it to tell a built atlas before anything heavy is imported.

The forward pass stops after the deepest layer needed, so neuron layers are spread over the first
two thirds of the 30-layer model, and the residual stream of the SAE layers is cached in the same
pass. Measured on an idle 2-core machine: the pass to layer 20 with every statistic runs at
~700-780 tokens/s, so 400k tokens take ~9 minutes (bench/RESULTS.md). `demo` therefore serves a
first slice over FIRST_TOKENS tokens (~40 s of pass) and lets the rest arrive as jobs.
"""

from __future__ import annotations

from latentpedia.config import DEFAULT_MODEL_ID

MODEL = DEFAULT_MODEL_ID
NEURON_LAYERS = (2, 8, 14, 20)
N_TOKENS = 400_000
FIRST_TOKENS = 24_000  # the first slice, served while the rest is built
CACHE_TOKENS = 200_000  # residual-stream tokens cached by the neuron pass for SAE training

# The atlas's own SAEs (train/atlas.py): TopK k=32 on the residual stream after layers 8, 14, 20
# at 4,608 latents, plus 2,304 at layer 14 (two widths at one layer, for feature splitting).
SAE_PAIRS: tuple[tuple[str, int], ...] = (
    ("blocks.8.hook_resid_post", 4608),
    ("blocks.14.hook_resid_post", 4608),
    ("blocks.14.hook_resid_post", 2304),
    ("blocks.20.hook_resid_post", 4608),
)
SAE_HOOKS = tuple(dict.fromkeys(hook for hook, _ in SAE_PAIRS))
SAE_ARCHITECTURE = "topk"
SAE_K = 32
SAE_TOKENS = 400_000  # training tokens: two epochs of the 200k cached (`demo --sae-tokens`)


def default_sources(layers: tuple[int, ...] | list[int] = NEURON_LAYERS) -> list[str]:
    return [f"{layer}-mlp" for layer in layers]
