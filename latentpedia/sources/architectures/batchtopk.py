"""BatchTopK SAE (Bussmann et al. 2024) at inference time.

Training keeps the k * batch largest activations of a batch; at inference the trainers replace
that with a learned threshold (dictionary_learning's `threshold` buffer, SAELens' `topk_threshold`,
global or per latent): a latent is active where its pre-activation exceeds the threshold. An SAE
saved without a usable threshold falls back to top-k per token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentpedia.sources.architectures.base import Architecture, jump, keep_top_k, pre_activations

if TYPE_CHECKING:
    from latentpedia.sources.weights import SAEWeights


class BatchTopK(Architecture):
    """relu(pre) * (pre > threshold); top-k per token when no threshold was stored."""

    name = "batchtopk"
    required = ("k",)

    def encode(self, sae_in: torch.Tensor, w: SAEWeights) -> torch.Tensor:
        pre = pre_activations(sae_in, w)
        if w.threshold is None:
            return torch.relu(keep_top_k(pre, int(w.k)))
        return jump(pre, w.threshold)

    def describe(self, w: SAEWeights) -> dict[str, object]:
        mode = "per-token top-k (no threshold stored)" if w.threshold is None else "threshold"
        return {"k": w.k, "inference": mode}
