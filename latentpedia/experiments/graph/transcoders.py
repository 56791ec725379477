"""Per-layer transcoders as the attribution graph needs them.

A `ReplacementLayer` is one layer's MLP replacement: the transcoder source (or None: the whole
MLP output is that layer's error term), its linear skip matrix (or None), and the three linear
pieces attribution uses: the encoder direction of every latent (the gradient of its
pre-activation with respect to the MLP input), its decoder row in the residual stream and the
decoder bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.sources.base import Source
from latentpedia.sources.hooknames import transcoder_hooks
from latentpedia.sources.transcoder_skip import skip_of

LINEAR_NORMALIZATIONS = ("none", "expected_average_only_in")


@dataclass
class ReplacementLayer:
    """Layer `layer`'s MLP replaced by `source` (None: no transcoder there)."""

    layer: int
    source: Source | None
    skip: torch.Tensor | None = None  # [d_model, d_model]: mlp_in @ skip joins the output

    def activations(self, mlp_in: torch.Tensor) -> torch.Tensor:
        """[T, d_sae] latent activations of the normalized MLP input [T, d]."""
        if self.source is None:
            return torch.zeros(mlp_in.shape[0], 0)
        return self.source.encode(mlp_in).float()

    def decoder(self) -> torch.Tensor:
        """[d_sae, d_model] what one unit of each latent adds to the MLP output."""
        if self.source is None:
            return torch.zeros(0, 0)
        return self.source.decoder()

    def bias(self, d_model: int) -> torch.Tensor:
        if self.source is None:
            return torch.zeros(d_model)
        return self.source.weights.b_dec.float()

    def encoder(self) -> torch.Tensor:
        """[d_in, d_sae]: d(pre-activation) / d(MLP input), one column per latent."""
        w = self.source.weights
        columns = w.W_enc.float()
        if w.normalize_activations == "expected_average_only_in" and w.norm_scaling_factor:
            columns = columns * w.norm_scaling_factor
        if w.rescale_acts_by_decoder_norm:
            columns = columns * w.W_dec.float().norm(dim=-1)
        return columns


def _check_transcoder(source: Source, n_layers: int) -> int:
    """The layer `source` replaces; InvalidInputError unless it is an MLP transcoder."""
    if source.kind != "transcoder":
        raise InvalidInputError(f"source {source.id} is a {source.kind}, not a transcoder")
    layer = source.layer
    expected = transcoder_hooks(layer)
    if (source.hook_name, source.output_hook) != expected or layer >= n_layers:
        raise InvalidInputError(
            f"source {source.id} reads {source.hook_name} and writes {source.output_hook}; "
            f"an MLP transcoder of layer {layer} reads {expected[0]} and writes {expected[1]}"
        )
    norm = getattr(getattr(source, "weights", None), "normalize_activations", "none")
    if norm not in LINEAR_NORMALIZATIONS:
        raise InvalidInputError(f"source {source.id} normalizes its input with {norm!r}, which is not linear")
    return layer


def replacement_layers(sources: Sequence[Source], n_layers: int) -> list[ReplacementLayer]:
    """One `ReplacementLayer` per model layer from transcoder sources (at most one per layer)."""
    layers = [ReplacementLayer(layer, None) for layer in range(n_layers)]
    for source in sources:
        layer = _check_transcoder(source, n_layers)
        if layers[layer].source is not None:
            raise InvalidInputError(f"two transcoders for layer {layer}: {layers[layer].source.id} and {source.id}")
        layers[layer] = ReplacementLayer(layer, source, skip_of(source))
    if all(layer.source is None for layer in layers):
        raise InvalidInputError("an attribution graph needs at least one transcoder")
    return layers
