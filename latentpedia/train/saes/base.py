"""What a trainable SAE is: shared parameters, decoding, decoder-norm handling and export.

Every architecture keeps `W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]` (rows of
unit norm) and `b_dec [d_in]`, encodes `(x - b_dec) @ W_enc + b_enc` (SAELens'
`apply_b_dec_to_input`) and differs only in its activation, its sparsity loss and how it revives
dead latents. Training runs on inputs scaled so that E||x|| = sqrt(d_in); `export` folds that
scale back into the weights, so the saved SAE reads raw activations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class SAESettings:
    """Hyper-parameters of one SAE (JSON-able; stored in checkpoints and cfg.json)."""

    architecture: str
    d_in: int
    d_sae: int
    k: int = 32  # TopK / BatchTopK: active latents per token
    l1_coefficient: float = 5.0  # ReLU: L1 weight; JumpReLU: L0 weight
    aux_k: int | None = None  # AuxK: latents used to explain the residual (default d_in // 2)
    aux_coefficient: float = 1 / 32
    bandwidth: float = 0.05  # JumpReLU straight-through estimator width
    init_threshold: float = 0.05  # JumpReLU initial threshold
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutput:
    """One training forward pass."""

    loss: torch.Tensor
    recon: torch.Tensor
    acts: torch.Tensor  # [B, d_sae] latent activations (dense)
    parts: dict[str, float]  # loss components, for progress and logs


class TrainableSAE(nn.Module, ABC):
    """Base of the training-time SAEs; subclasses implement `activate` and `training_loss`."""

    name: ClassVar[str]
    saelens_architecture: ClassVar[str]
    revives_by_resampling: ClassVar[bool] = False  # ReLU / JumpReLU: resample dead latents

    def __init__(self, settings: SAESettings, generator: torch.Generator):
        super().__init__()
        self.settings = settings
        d_in, d_sae = settings.d_in, settings.d_sae
        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())  # tied initialisation (Gao et al. 2024)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[B, d_in] scaled inputs -> [B, d_sae] encoder pre-activations."""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    @abstractmethod
    def activate(self, pre: torch.Tensor, *, training: bool) -> torch.Tensor:
        """Pre-activations -> latent activations."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inference-time latent activations of scaled inputs."""
        return self.activate(self.pre_activations(x), training=False)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> StepOutput:
        """Training step on scaled inputs; `dead` [d_sae] marks latents that stopped firing."""
        pre = self.pre_activations(x)
        acts, recon = self.activate_and_decode(pre)
        mse = (recon - x).pow(2).sum(-1).mean()
        extra, parts = self.training_loss(x, pre, acts, recon, dead)
        return StepOutput(mse + extra, recon, acts, {"mse": float(mse.detach()), **parts})

    def activate_and_decode(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training activations and reconstruction (TopK overrides this with a sparse decode)."""
        acts = self.activate(pre, training=True)
        return acts, self.decode(acts)

    @abstractmethod
    def training_loss(self, x: torch.Tensor, pre: torch.Tensor, acts: torch.Tensor, recon: torch.Tensor,
                      dead: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """Sparsity and auxiliary losses added to the reconstruction MSE."""

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the part of W_dec's gradient that would change row norms (they stay 1)."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale decoder rows back to unit norm (after an optimizer step)."""
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def after_step(self, acts: torch.Tensor) -> None:
        """Hook for state updated from a batch's activations (BatchTopK's threshold)."""

    def buffers_to_export(self) -> dict[str, torch.Tensor]:
        """Architecture tensors beyond the common four, in raw activation units (scale 1)."""
        return {}

    def cfg_extra(self) -> dict[str, Any]:
        """Architecture fields of the SAELens cfg.json (e.g. `k`)."""
        return {}

    @torch.no_grad()
    def export_tensors(self, scale: float) -> dict[str, torch.Tensor]:
        """SAELens tensors for raw inputs: the input scale `scale` folded into the weights.

        Training saw x * scale; pre-activations stay identical for raw x when W_enc is
        multiplied by the scale and b_dec (and the decoder) divided by it.
        """
        tensors = {
            "W_enc": self.W_enc * scale,
            "b_enc": self.b_enc.clone(),
            "W_dec": self.W_dec / scale,
            "b_dec": self.b_dec / scale,
            **self.buffers_to_export(),
        }
        return {name: t.detach().float().contiguous() for name, t in tensors.items()}
