"""JumpReLU SAE (Rajamanoharan et al. 2024) trained with straight-through threshold gradients.

acts = pre * H(pre - theta), theta = exp(log_threshold) per latent; the sparsity loss is the L0
(lambda * mean number of active latents). Heaviside steps get pseudo-derivatives through a
rectangle kernel of width `bandwidth`, so theta learns from both reconstruction and sparsity.
"""

from __future__ import annotations

import math

import torch

from latentpedia.train.saes.base import SAESettings, TrainableSAE


def _rectangle(z: torch.Tensor) -> torch.Tensor:
    return ((z > -0.5) & (z < 0.5)).to(z.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * (pre > theta).to(pre.dtype)
        grad_theta = -(theta / eps) * _rectangle((pre - theta) / eps) * grad
        return grad_pre, grad_theta.sum(0), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = -(1.0 / eps) * _rectangle((pre - theta) / eps) * grad
        return torch.zeros_like(pre), grad_theta.sum(0), None


class JumpReLUSAE(TrainableSAE):
    """pre * (pre > theta); L0 sparsity loss; dead latents are resampled."""

    name = "jumprelu"
    saelens_architecture = "jumprelu"
    revives_by_resampling = True

    def __init__(self, settings: SAESettings, generator: torch.Generator):
        super().__init__(settings, generator)
        self.log_threshold = torch.nn.Parameter(torch.full((settings.d_sae,), math.log(settings.init_threshold)))

    def activate(self, pre: torch.Tensor, *, training: bool) -> torch.Tensor:
        theta = self.log_threshold.exp()
        if not training:
            return pre * (pre > theta).to(pre.dtype)
        return _JumpReLU.apply(pre, theta, self.settings.bandwidth)

    def training_loss(self, x, pre, acts, recon, dead):
        l0 = _Step.apply(pre, self.log_threshold.exp(), self.settings.bandwidth).sum(-1).mean()
        loss = self.settings.l1_coefficient * l0
        return loss, {"l0_loss": float(loss.detach())}

    @torch.no_grad()
    def start_at_l0(self, x: torch.Tensor, target_l0: float) -> None:
        """Thresholds at each latent's (1 - target_l0 / d_sae) quantile of its pre-activations on
        `x` (scaled inputs), so training starts near the target L0: Adam moves log-thresholds by
        about lr per step, too slowly to climb from a small constant in a few hundred steps."""
        pre = self.pre_activations(x)
        rank = max(1, min(len(pre), round(len(pre) * (1 - target_l0 / self.settings.d_sae))))
        quantile = pre.kthvalue(rank, dim=0).values  # torch.quantile refuses > 16M elements (8k tokens x 4.6k latents)
        self.log_threshold.copy_(quantile.clamp_min(self.settings.init_threshold).log())

    def buffers_to_export(self) -> dict[str, torch.Tensor]:
        return {"threshold": self.log_threshold.exp()}
