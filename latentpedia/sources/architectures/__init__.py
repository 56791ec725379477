"""Registry of SAE architectures: one class per file, one line here.

To add an architecture: write a subclass of `Architecture` in its own file, add it to
`_CLASSES`, add a builder for it in tests/sae_builders.py (the format tests parametrize over
this registry).
"""

from __future__ import annotations

from latentpedia.sources.architectures.base import Architecture
from latentpedia.sources.architectures.batchtopk import BatchTopK
from latentpedia.sources.architectures.gated import Gated
from latentpedia.sources.architectures.groupmax import GroupMax
from latentpedia.sources.architectures.jumprelu import JumpReLU
from latentpedia.sources.architectures.relu import ReLU
from latentpedia.sources.architectures.topk import TopK

_CLASSES: tuple[type[Architecture], ...] = (ReLU, TopK, BatchTopK, JumpReLU, Gated, GroupMax)

ARCHITECTURES: dict[str, Architecture] = {cls.name: cls() for cls in _CLASSES}


def get_architecture(name: str) -> Architecture | None:
    """The architecture registered under `name`, or None."""
    return ARCHITECTURES.get(name)


__all__ = ["ARCHITECTURES", "Architecture", "get_architecture"]
