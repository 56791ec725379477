"""The one interface every latent source implements: neurons, SAEs, transcoders."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any

import torch

_LAYER = re.compile(r"^blocks\.(\d+)\.")


def layer_of(hook_name: str) -> int:
    """The layer index of a TransformerLens-style hook name (`blocks.6.hook_resid_post` -> 6)."""
    match = _LAYER.match(hook_name)
    if not match:
        raise ValueError(f"hook name {hook_name!r} does not start with 'blocks.<layer>.'")
    return int(match.group(1))


class Source(ABC):
    """A set of latents read at one hook point of one model.

    `encode` maps activations at `hook_name` (shape [..., d_in]) to latent activations
    (shape [..., d_sae]). `decoder` gives one direction per latent in the space the latent
    writes to: the hook's own space for SAEs, `output_hook`'s space for transcoders and the
    residual stream for MLP neurons (their down-projection columns).
    """

    id: str  # "{layer}-{kind}[-{name}]", e.g. "6-mlp", "6-res-topk-4k"
    kind: str  # "mlp" | "sae" | "transcoder"
    hook_name: str  # where inputs are read, e.g. "blocks.6.hook_resid_post"
    d_in: int
    d_sae: int

    @property
    def layer(self) -> int:
        return layer_of(self.hook_name)

    @property
    def output_hook(self) -> str:
        """Where `decoder` directions live (a transcoder's output hook; else `hook_name`)."""
        return self.hook_name

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] activations at `hook_name` -> [..., d_sae] latent activations."""

    @abstractmethod
    def decoder(self) -> torch.Tensor:
        """[d_sae, d_out] decoder directions (rows), float32."""

    def meta(self) -> dict[str, Any]:
        """JSON-able description stored with the source (architecture, format, cfg...)."""
        return {"kind": self.kind, "hook_name": self.hook_name, "d_in": self.d_in, "d_sae": self.d_sae}
