"""TopK SAE (Gao et al. 2024): keep the k largest pre-activations of each token, then ReLU.

This is SAELens' TopK (top-k of the raw pre-activations, ReLU on the kept values). sparsify and
dictionary_learning take the top-k of relu(pre) instead; both give the same activations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentpedia.sources.architectures.base import Architecture, keep_top_k, pre_activations

if TYPE_CHECKING:
    from latentpedia.sources.weights import SAEWeights


class TopK(Architecture):
    """relu(top_k(sae_in @ W_enc + b_enc)) per token."""

    name = "topk"
    required = ("k",)

    def encode(self, sae_in: torch.Tensor, w: SAEWeights) -> torch.Tensor:
        return torch.relu(keep_top_k(pre_activations(sae_in, w), int(w.k)))

    def describe(self, w: SAEWeights) -> dict[str, object]:
        return {"k": w.k, "rescale_acts_by_decoder_norm": w.rescale_acts_by_decoder_norm}
