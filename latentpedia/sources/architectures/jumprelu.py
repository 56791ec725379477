"""JumpReLU SAE (Rajamanoharan et al. 2024; Gemma Scope): relu(pre) * (pre > threshold)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentpedia.sources.architectures.base import Architecture, jump, pre_activations

if TYPE_CHECKING:
    from latentpedia.sources.weights import SAEWeights


class JumpReLU(Architecture):
    """relu(pre) * (pre > threshold), threshold per latent."""

    name = "jumprelu"
    required = ("threshold",)

    def encode(self, sae_in: torch.Tensor, w: SAEWeights) -> torch.Tensor:
        pre = pre_activations(sae_in, w)
        return jump(pre, w.threshold)
