"""`SAEWeights`: an SAE's or transcoder's tensors in one canonical layout, whatever file they came
from (`W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_out]`, `b_dec [d_out]`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

TENSOR_FIELDS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "r_mag", "b_mag")


@dataclass
class SAEWeights:
    """Everything needed to encode: weights in canonical layout plus input handling.

    `threshold` [d_sae]: JumpReLU threshold, or BatchTopK's inference threshold (None: top-k per
    token). `k`: TopK / BatchTopK / GroupMax. Gated SAEs: `b_enc` is the gate bias `b_gate`,
    plus `r_mag`, `b_mag` [d_sae].
    """

    architecture: str
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    threshold: torch.Tensor | None = None
    k: int | None = None
    r_mag: torch.Tensor | None = None
    b_mag: torch.Tensor | None = None
    apply_b_dec_to_input: bool = False
    normalize_activations: str = "none"
    norm_scaling_factor: float | None = None  # "expected_average_only_in": x * factor
    rescale_acts_by_decoder_norm: bool = False

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.W_dec.shape[-1])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors present, by canonical name."""
        return {name: getattr(self, name) for name in TENSOR_FIELDS if getattr(self, name) is not None}

    def to_float32(self) -> SAEWeights:
        """A copy whose tensors are contiguous float32 (SAEs ship in bf16/fp16 too)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, tensor in self.tensors().items():
            values[name] = tensor.detach().to(torch.float32).contiguous()
        return SAEWeights(**values)
