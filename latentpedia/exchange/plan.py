"""`SourcePlan`: one Neuronpedia source folder read and checked (exchange.np_import), ready for
exchange.writer to store in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentpedia.errors import InvalidInputError
from latentpedia.exchange.np_rows import ExampleIn, ExplanationIn, LatentIn, TokenMapper


@dataclass
class SourcePlan:
    """Everything one source folder holds, checked and mapped, ready to write."""

    folder: Path
    digest: str
    model_id: str
    model_row: dict[str, Any]  # Neuronpedia's Model row (+ EXTRA)
    source_row: dict[str, Any]  # Neuronpedia's Source row (+ EXTRA)
    mapper: TokenMapper
    model_exists: bool
    latents: dict[int, LatentIn] = field(default_factory=dict)
    examples: list[ExampleIn] = field(default_factory=list)
    explanations: list[ExplanationIn] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.source_row.get("id") or self.folder.name)


def check_indices(plan: SourcePlan, d_sae: int) -> None:
    """Every latent, example and explanation index below the source's width."""
    for kind, indices in (("feature", plan.latents), ("activation", [e.index for e in plan.examples]),
                          ("explanation", [x.index for x in plan.explanations])):  # fmt: skip
        bad = [i for i in indices if i >= d_sae]
        if bad:
            raise InvalidInputError(f"{kind} index {bad[0]} is outside the source's {d_sae} latents", plan.folder)
