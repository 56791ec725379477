"""MLP neurons of one layer as a `Source`: the latents are the neurons themselves.

Read at `blocks.L.mlp.hook_post` (the input of the down projection: act(gate)*up for gated MLPs),
`encode` is the identity, and each neuron's decoder direction is its down-projection column,
i.e. what one unit of it adds to the residual stream through `hook_mlp_out`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from latentpedia.sources.base import Source
from latentpedia.sources.ids import source_id

if TYPE_CHECKING:
    from latentpedia.models import LoadedModel


class NeuronSource(Source):
    """The d_mlp neurons of layer `layer` of `model` (id "{layer}-mlp", kind "mlp")."""

    kind = "mlp"

    def __init__(self, model: LoadedModel, layer: int):
        self.model = model
        self.id = source_id(layer, "mlp")
        self.hook_name = f"blocks.{layer}.mlp.hook_post"
        self.d_in = self.d_sae = int(model.d_mlp)

    @property
    def output_hook(self) -> str:
        return f"blocks.{self.layer}.hook_mlp_out"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Neurons are their own activations: [..., d_mlp] -> [..., d_mlp] (float32)."""
        return x.to(torch.float32)

    def decoder(self) -> torch.Tensor:
        """[d_mlp, d_model] float32: the down-projection column of each neuron, as a row."""
        from latentpedia.models.hooks import write_matrix  # lazy: models/ imports transformers

        matrix = write_matrix(self.model, self.hook_name)
        if matrix is None:  # identity cannot happen for mlp.hook_post; guard the contract
            raise ValueError(f"{self.hook_name} has no down projection")
        return matrix.detach().to(torch.float32).contiguous()

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "id": self.id, "output_hook": self.output_hook, "model": self.model.id}
