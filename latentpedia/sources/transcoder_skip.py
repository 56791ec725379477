"""The linear skip connection of a skip transcoder (MLP input @ W_skip joins its output).

`SAEWeights` holds no skip matrix: a source may carry one as `source.skip` (set by whoever built
it), else it is read from the `W_skip` tensor beside a SAELens folder's weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from latentpedia.sources.base import Source

WEIGHTS_FILE = "sae_weights.safetensors"


def skip_of(source: Source) -> torch.Tensor | None:
    """[d_in, d_out] float32 skip matrix of `source`, or None when it has none."""
    skip = getattr(source, "skip", None)
    if skip is not None:
        return skip.float()
    folder = (getattr(source, "origin", None) or {}).get("path")
    path = Path(folder) / WEIGHTS_FILE if folder else None
    if path is None or not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        if "W_skip" not in handle.keys():
            return None
        skip = handle.get_tensor("W_skip").float()
    source.skip = skip  # read once
    return skip
