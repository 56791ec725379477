"""Standard ReLU SAE (SAELens "standard", dictionary_learning `AutoEncoder`): relu(x W + b)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentpedia.sources.architectures.base import Architecture, pre_activations

if TYPE_CHECKING:
    from latentpedia.sources.weights import SAEWeights


class ReLU(Architecture):
    """relu(sae_in @ W_enc + b_enc)."""

    name = "relu"

    def encode(self, sae_in: torch.Tensor, w: SAEWeights) -> torch.Tensor:
        return torch.relu(pre_activations(sae_in, w))
