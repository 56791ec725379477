"""Models: loading causal LMs offline and reading/editing their activations at hook points.

See docs/CONTRACTS.md ("models/"). `loader` loads and tokenizes, `families` maps each
architecture's modules to hook points, `hooks` registers PyTorch hooks by hook name.
"""

from latentpedia.models.hooks import (
    FINAL_NORM_HOOK,
    hook_names,
    hook_width,
    hooks,
    run_with_cache,
    unembed,
    write_matrix,
)
from latentpedia.models.loader import DEFAULT_MODEL_ID, LoadedModel, encode_text, load_model

__all__ = [
    "DEFAULT_MODEL_ID",
    "FINAL_NORM_HOOK",
    "LoadedModel",
    "encode_text",
    "hook_names",
    "hook_width",
    "hooks",
    "load_model",
    "run_with_cache",
    "unembed",
    "write_matrix",
]
