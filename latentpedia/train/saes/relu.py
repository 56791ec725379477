"""Standard ReLU SAE with an L1 penalty (Bricken et al. 2023; SAELens "standard").

The decoder rows keep unit norm, so the L1 on activations equals Anthropic's norm-weighted L1.
Dead latents are resampled by the trainer.
"""

from __future__ import annotations

import torch

from latentpedia.train.saes.base import TrainableSAE


class ReLUSAE(TrainableSAE):
    """relu(pre); loss = MSE + l1 * sum |acts|."""

    name = "relu"
    saelens_architecture = "standard"
    revives_by_resampling = True

    def activate(self, pre: torch.Tensor, *, training: bool) -> torch.Tensor:
        return torch.relu(pre)

    def training_loss(self, x, pre, acts, recon, dead):
        loss = self.settings.l1_coefficient * acts.sum(-1).mean()
        return loss, {"l1": float(loss.detach())}
