"""Latent sources: MLP neurons, SAEs and transcoders behind one `Source` interface.

`load_sae(path)` reads any supported SAE format (see `formats/`); `NeuronSource(model, layer)`
exposes one layer's MLP neurons. Importing this package does not import transformers.
"""

from latentpedia.sources.base import Source, layer_of
from latentpedia.sources.formats import FORMATS, detect_format, load_sae
from latentpedia.sources.ids import hook_kind_short, source_id, width_label
from latentpedia.sources.neurons import NeuronSource
from latentpedia.sources.sae import SAESource, SAEWeights

__all__ = [
    "FORMATS",
    "NeuronSource",
    "SAESource",
    "SAEWeights",
    "Source",
    "detect_format",
    "hook_kind_short",
    "layer_of",
    "load_sae",
    "source_id",
    "width_label",
]
