"""Attribution graphs: which transcoder latents, errors and tokens caused a next-token prediction.

`frozen` runs the model once and freezes attention patterns and norm scales (the local
replacement model's linear skeleton); `transcoders` adapts per-layer transcoder sources;
`attribution` computes direct effects with batched backward passes; `prune` keeps the nodes and
edges that carry most of the influence on the logits; `schema` writes and reads Neuronpedia's
graph JSON; `build.generate_graph` ties them together. See docs/circuits.md.
"""

from latentpedia.experiments.graph.attribution import AttributionConfig
from latentpedia.experiments.graph.build import attribute, generate_graph, prune_attribution
from latentpedia.experiments.graph.schema import parse_graph
from latentpedia.experiments.graph.transcoders import replacement_layers

__all__ = ["AttributionConfig", "attribute", "generate_graph", "parse_graph", "prune_attribution", "replacement_layers"]
