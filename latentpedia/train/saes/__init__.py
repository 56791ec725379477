"""Training-time SAE architectures: one file each, one registry line here.

To add one: subclass `TrainableSAE` (saes/base.py) in its own file, add it to `_CLASSES`; the
training tests parametrize over `TRAINABLE`.
"""

from __future__ import annotations

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.train.saes.base import SAESettings, StepOutput, TrainableSAE
from latentpedia.train.saes.batchtopk import BatchTopKSAE
from latentpedia.train.saes.jumprelu import JumpReLUSAE
from latentpedia.train.saes.relu import ReLUSAE
from latentpedia.train.saes.topk import TopKSAE

_CLASSES: tuple[type[TrainableSAE], ...] = (TopKSAE, BatchTopKSAE, JumpReLUSAE, ReLUSAE)

TRAINABLE: dict[str, type[TrainableSAE]] = {cls.name: cls for cls in _CLASSES}


def make_sae(settings: SAESettings, generator: torch.Generator) -> TrainableSAE:
    """A freshly initialised SAE of `settings.architecture`."""
    cls = TRAINABLE.get(settings.architecture)
    if cls is None:
        raise InvalidInputError(f"unknown architecture {settings.architecture!r}; choose one of {', '.join(TRAINABLE)}")
    return cls(settings, generator)


__all__ = ["TRAINABLE", "SAESettings", "StepOutput", "TrainableSAE", "make_sae"]
