"""Graphs as JSON in Neuronpedia's attribution-graph schema (`metadata`, `qParams`, `nodes`, `links`).

Node ids follow the schema's conventions so graphs travel both ways: a latent is
`{layer}_{index}_{position}`, an error node `{layer}_-1_{position}`, a token embedding
`E_{token id}_{position}` and a logit `{n_layers + 1}_{token id}_{position}`. Each node also
carries `feature_type`, `layer` (a string), `ctx_idx`, `feature`, `jsNodeId`, `clerp` (its
label), `influence` and `activation`; latents add our `source` (the source id, for links to
the dashboard). `parse_graph` checks an uploaded graph and returns it normalized.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from latentpedia.errors import InvalidInputError
from latentpedia.experiments.graph.attribution import Attribution
from latentpedia.experiments.graph.prune import Pruned

SCHEMA_VERSION = 1
FEATURE, ERROR, EMBEDDING, LOGIT = "cross layer transcoder", "mlp reconstruction error", "embedding", "logit"
Labeler = Callable[[str, int], str]  # (source id, latent index) -> explanation text or ""


def _node(node_id: str, feature: int, layer: str, pos: int, kind: str, **extra: Any) -> dict[str, Any]:
    return {"node_id": node_id, "feature": feature, "layer": layer, "ctx_idx": pos, "feature_type": kind,
            "jsNodeId": extra.pop("js", node_id), "clerp": extra.pop("clerp", ""), "token_prob": 0.0,
            "is_target_logit": False, "influence": None, "activation": None, **extra}


def describe_node(att: Attribution, candidate: int, tokens: Sequence[str], logit_texts: Sequence[str],
                  label: Labeler) -> dict[str, Any]:
    """The JSON node of candidate node `candidate` (`tokens`: the prompt's, decoded)."""
    nodes = att.nodes
    if candidate < nodes.n_features:
        layer, pos, index = nodes.features[candidate].tolist()
        source = att.source_ids[layer]
        return _node(f"{layer}_{index}_{pos}", index, str(layer), pos, FEATURE, js=f"{layer}_{index}-{pos}",
                     clerp=label(source, index), activation=float(nodes.activations[candidate]), source=source)
    if candidate < nodes.token_start:
        layer, pos = divmod(candidate - nodes.error_start, nodes.n_pos)
        return _node(f"{layer}_-1_{pos}", -1, str(layer), pos, ERROR, clerp=f"error at layer {layer}")
    if candidate < nodes.logit_start:
        pos = candidate - nodes.token_start
        token = att.run.ids[pos]
        return _node(f"E_{token}_{pos}", pos, "E", pos, EMBEDDING, clerp=tokens[pos])
    k = candidate - nodes.logit_start
    token, prob = int(nodes.logit_tokens[k]), float(nodes.logit_probs[k])
    layer, pos = nodes.n_layers + 1, nodes.n_pos - 1
    return _node(f"{layer}_{token}_{pos}", token, str(layer), pos, LOGIT, js=f"L_{token}-{pos}",
                 clerp=f'Output "{logit_texts[k]}" (p={prob:.3f})', token_prob=prob, is_target_logit=k == 0)


def graph_json(att: Attribution, pruned: Pruned, *, model_id: str, prompt: str, tokens: Sequence[str],
               logit_texts: Sequence[str], slug: str, node_threshold: float, edge_threshold: float,
               label: Labeler | None = None, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pruned graph as a Neuronpedia graph JSON document."""
    label = label or (lambda _source, _index: "")
    kept = pruned.node_mask.nonzero(as_tuple=True)[0].tolist()
    described = {}
    for i in kept:
        node = describe_node(att, int(att.kept[i]), tokens, logit_texts, label)
        node["influence"] = float(pruned.node_influence[i])
        described[i] = node
    targets, sources = pruned.edge_mask.nonzero(as_tuple=True)
    links = [{"source": described[s]["node_id"], "target": described[t]["node_id"],
              "weight": float(att.adjacency[t, s])}
             for t, s in zip(targets.tolist(), sources.tolist()) if s in described and t in described]
    metadata = {"slug": slug, "scan": model_id, "transcoder_list": [s for s in att.source_ids if s],
                "prompt_tokens": list(tokens), "prompt": prompt, "node_threshold": node_threshold,
                "schema_version": SCHEMA_VERSION,
                "info": {"generator": "latentpedia", "edge_threshold": edge_threshold, **(info or {})}}
    qparams = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": qparams, "nodes": list(described.values()), "links": links}


def _require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise InvalidInputError(f"graph JSON: {where} has no {key!r}")
    value = mapping[key]
    if not isinstance(value, kind):
        raise InvalidInputError(f"graph JSON: {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def parse_graph(data: Any) -> dict[str, Any]:
    """A checked copy of a graph JSON document (ours or one made elsewhere)."""
    if not isinstance(data, dict):
        raise InvalidInputError("graph JSON must be an object with metadata, nodes and links")
    metadata = _require(data, "metadata", dict, "the document")
    _require(metadata, "prompt_tokens", list, "metadata")
    nodes = _require(data, "nodes", list, "the document")
    links = _require(data, "links", list, "the document")
    ids = set()
    for i, node in enumerate(nodes):
        node_id = _require(node, "node_id", str, f"nodes[{i}]")
        _require(node, "feature_type", str, f"nodes[{i}]")
        ids.add(node_id)
    for i, link in enumerate(links):
        for end in ("source", "target"):
            if _require(link, end, str, f"links[{i}]") not in ids:
                raise InvalidInputError(f"graph JSON: links[{i}].{end} names no node ({link[end]!r})")
        _require(link, "weight", (int, float), f"links[{i}]")
    qparams = data.get("qParams") if isinstance(data.get("qParams"), dict) else {}
    return {**data, "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "",
                                "sg_pos": "", **qparams}}

