"""GroupMax (sparsify's `activation: groupmax`): the latents split into k equal groups; in each
group only the largest relu(pre-activation) survives."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentpedia.sources.architectures.base import Architecture, pre_activations

if TYPE_CHECKING:
    from latentpedia.sources.weights import SAEWeights


class GroupMax(Architecture):
    """Per token, one winner (its relu'd pre-activation) per group of d_sae / k latents."""

    name = "groupmax"
    required = ("k",)

    def encode(self, sae_in: torch.Tensor, w: SAEWeights) -> torch.Tensor:
        acts = torch.relu(pre_activations(sae_in, w))
        groups = acts.unflatten(-1, (int(w.k), -1))
        best = groups.max(dim=-1, keepdim=True)
        kept = torch.zeros_like(groups).scatter_(-1, best.indices, best.values)
        return kept.flatten(-2)

    def describe(self, w: SAEWeights) -> dict[str, object]:
        return {"k": w.k}
