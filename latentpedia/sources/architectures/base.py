"""What an SAE architecture is: the activation that turns encoder inputs into latents.

Each architecture is one small class: its name, the extra parameters it needs beyond the common
`W_enc, b_enc, W_dec, b_dec`, and `encode(sae_in, w)` where `sae_in` has already been normalized
and, where the SAE asks for it, had `b_dec` subtracted (see `SAESource.encode`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:
    from latentpedia.sources.weights import SAEWeights


def pre_activations(sae_in: torch.Tensor, w: SAEWeights) -> torch.Tensor:
    """`sae_in @ W_enc + b_enc`, scaled by the decoder row norms when the SAE asks for it.

    SAELens TopK SAEs trained with `rescale_acts_by_decoder_norm` rank latents by
    `pre * ||W_dec[i]||` (and divide by the norm again when decoding).
    """
    pre = sae_in @ w.W_enc + w.b_enc
    if w.rescale_acts_by_decoder_norm:
        pre = pre * w.W_dec.norm(dim=-1)
    return pre


def keep_top_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Zeros everywhere except the k largest entries of the last dimension, kept as they are."""
    top = torch.topk(values, k=k, dim=-1, sorted=False)
    return torch.zeros_like(values).scatter_(-1, top.indices, top.values)


class Architecture(ABC):
    """One SAE activation function family ("relu", "topk", "jumprelu", ...)."""

    name: ClassVar[str]
    # SAEWeights fields this architecture cannot do without (besides the common four).
    required: ClassVar[tuple[str, ...]] = ()
    # Short label used in source ids ("6-res-topk-4k"); defaults to `name`.
    label: ClassVar[str | None] = None

    @abstractmethod
    def encode(self, sae_in: torch.Tensor, w: SAEWeights) -> torch.Tensor:
        """[..., d_in] prepared encoder input -> [..., d_sae] latent activations."""

    def describe(self, w: SAEWeights) -> dict[str, object]:
        """Architecture-specific settings worth storing in the source's metadata."""
        return {}


def jump(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """JumpReLU gate: relu(pre) where pre exceeds the (per-latent or global) threshold, else 0."""
    return torch.relu(pre) * (pre > threshold).to(pre.dtype)
