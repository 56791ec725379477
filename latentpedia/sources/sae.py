"""Canonical SAE weights and the `Source` that encodes with them.

Every format loader (sources/formats/) turns its files into one `SAEWeights`; `SAESource` then
reproduces the architecture's reference math on it. Layout, whatever the file stored:
`W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_out]`, `b_dec [d_out]` (d_out = d_in
for SAEs; a transcoder's output width may differ), all float32.

Encoding, as SAELens does it: `x -> normalize(x) -> (x - b_dec if apply_b_dec_to_input) ->
architecture.encode`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from latentpedia.sources.architectures import get_architecture
from latentpedia.sources.base import Source
from latentpedia.sources.ids import default_source_id
from latentpedia.sources.weights import TENSOR_FIELDS, SAEWeights

__all__ = ["NORMALIZERS", "SAESource", "SAEWeights", "TENSOR_FIELDS"]

def _constant_norm_rescale(x: torch.Tensor, w: SAEWeights) -> torch.Tensor:
    """Anthropic's Feb 2024 update: every token rescaled to norm sqrt(d_in)."""
    return x * (math.sqrt(w.d_in) / x.norm(dim=-1, keepdim=True))


def _expected_average(x: torch.Tensor, w: SAEWeights) -> torch.Tensor:
    """Anthropic's April 2024 update: one stored dataset-wide factor (none stored: as is)."""
    return x if w.norm_scaling_factor is None else x * w.norm_scaling_factor


def _layer_norm(x: torch.Tensor, w: SAEWeights) -> torch.Tensor:
    """SAELens' "layer_norm" input normalization (no learned scale)."""
    centered = x - x.mean(dim=-1, keepdim=True)
    return centered / (centered.std(dim=-1, keepdim=True) + 1e-5)


NORMALIZERS: dict[str, Callable[[torch.Tensor, SAEWeights], torch.Tensor]] = {
    "none": lambda x, w: x,
    "expected_average_only_in": _expected_average,
    "constant_norm_rescale": _constant_norm_rescale,
    "layer_norm": _layer_norm,
}


class SAESource(Source):
    """An SAE (kind "sae") or transcoder (kind "transcoder") read at `hook_name`."""

    def __init__(
        self,
        weights: SAEWeights,
        hook_name: str,
        *,
        output_hook: str | None = None,
        format: str = "unknown",
        cfg: dict[str, Any] | None = None,
        origin: dict[str, Any] | None = None,
        source_id: str | None = None,
    ):
        self.weights = weights
        self.architecture = get_architecture(weights.architecture)
        if self.architecture is None:
            raise ValueError(f"unknown SAE architecture {weights.architecture!r}")
        self.hook_name = hook_name
        self._output_hook = output_hook
        self.kind = "transcoder" if output_hook is not None else "sae"
        self.format = format
        self.cfg = dict(cfg or {})  # the configuration as stored with the SAE
        self.origin = dict(origin or {})  # where it was loaded from, how the hook was found
        self.d_in, self.d_sae = weights.d_in, weights.d_sae
        label = self.architecture.label or self.architecture.name
        self.id = source_id or default_source_id(self.kind, self.hook_name, label, self.d_sae)

    @property
    def output_hook(self) -> str:
        return self._output_hook or self.hook_name

    @property
    def d_out(self) -> int:
        return self.weights.d_out

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] activations at `hook_name` -> [..., d_sae] latent activations (float32)."""
        w = self.weights
        sae_in = NORMALIZERS[w.normalize_activations](x.to(w.W_enc.dtype), w)
        if w.apply_b_dec_to_input:
            sae_in = sae_in - w.b_dec
        return self.architecture.encode(sae_in, w)

    def decoder(self) -> torch.Tensor:
        """[d_sae, d_out] float32: what one unit of each latent adds to the output hook."""
        w = self.weights
        rows = w.W_dec.to(torch.float32)
        if w.rescale_acts_by_decoder_norm:
            rows = rows / rows.norm(dim=-1, keepdim=True)
        if w.normalize_activations == "expected_average_only_in" and w.norm_scaling_factor:
            rows = rows / w.norm_scaling_factor
        return rows.clone()

    def meta(self) -> dict[str, Any]:
        w = self.weights
        return {
            **super().meta(),
            "id": self.id,
            "output_hook": self.output_hook,
            "d_out": self.d_out,
            "architecture": w.architecture,
            "format": self.format,
            "apply_b_dec_to_input": w.apply_b_dec_to_input,
            "normalize_activations": w.normalize_activations,
            "norm_scaling_factor": w.norm_scaling_factor,
            **self.architecture.describe(w),
            "origin": self.origin,
            "cfg": self.cfg,
        }
