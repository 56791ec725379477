"""Gated SAE (Rajamanoharan et al. 2024), as SAELens and dictionary_learning compute it.

The gate path decides which latents fire, the magnitude path (the same encoder rescaled per
latent by exp(r_mag)) how strongly:
    active = (sae_in @ W_enc + b_gate > 0);  acts = active * relu(sae_in @ (W_enc * exp(r_mag)) + b_mag)
In `SAEWeights`, `b_enc` holds the gate bias `b_gate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentpedia.sources.architectures.base import Architecture

if TYPE_CHECKING:
    from latentpedia.sources.weights import SAEWeights


class Gated(Architecture):
    """Heaviside gate times a ReLU magnitude sharing the encoder directions."""

    name = "gated"
    required = ("r_mag", "b_mag")

    def encode(self, sae_in: torch.Tensor, w: SAEWeights) -> torch.Tensor:
        gate_pre = sae_in @ w.W_enc + w.b_enc
        magnitude = torch.relu(sae_in @ (w.W_enc * w.r_mag.exp()) + w.b_mag)
        return (gate_pre > 0).to(magnitude.dtype) * magnitude
