"""From a prompt to an attribution graph: capture, attribute, select latents, prune, export.

`attribute` computes the adjacency matrix. When a prompt has more active latents than
`max_feature_nodes`, latents are expanded greedily: the logit rows come first, then, batch by
batch, the not yet expanded latents with the highest influence on the logits through the rows
computed so far (latents never expanded are left out of the graph).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.experiments.common import prompt_ids, token_strs
from latentpedia.experiments.graph.attribution import Attribution, AttributionConfig, Attributor
from latentpedia.experiments.graph.frozen import capture, check_family
from latentpedia.experiments.graph.prune import Pruned, check_thresholds, influence, normalized, prune
from latentpedia.experiments.graph.schema import Labeler, graph_json
from latentpedia.experiments.graph.transcoders import ReplacementLayer, replacement_layers


def _greedy_features(att: Attributor, logit_rows: torch.Tensor, limit: int) -> tuple[list[int], torch.Tensor]:
    """(expanded latents, their rows) chosen by influence through the rows computed so far."""
    nodes = att.nodes
    logit_nodes = torch.arange(nodes.logit_start, nodes.size)
    rows, row_nodes = logit_rows, logit_nodes
    chosen: list[int] = []
    while len(chosen) < min(limit, nodes.n_features):
        weights = torch.zeros(rows.shape[0])
        weights[: nodes.logit_tokens.numel()] = nodes.logit_probs
        scores = influence(normalized(rows), row_nodes, weights)[: nodes.n_features].clone()
        if chosen:
            scores[torch.tensor(chosen)] = -1.0
        n_pick = min(att.config.batch_size, limit - len(chosen))
        picked = sorted(torch.topk(scores, n_pick).indices.tolist())
        rows = torch.cat([rows, att.feature_rows(picked)])
        row_nodes = torch.cat([row_nodes, torch.tensor(picked)])
        chosen += picked
    feature_rows = rows[logit_rows.shape[0]:]
    order = torch.tensor(chosen).argsort() if chosen else torch.zeros(0, dtype=torch.long)
    return sorted(chosen), feature_rows[order]


def attribute(m, ids: Sequence[int], layers: Sequence[ReplacementLayer],
              config: AttributionConfig | None = None) -> Attribution:
    """The direct-effect graph of `ids` (BOS first) through the replacement `layers`."""
    check_family(m)
    config = config or AttributionConfig()
    run = capture(m, ids)
    att = Attributor(m, run, layers, config)
    nodes = att.nodes
    logit_rows = att.logit_rows()
    limit = config.max_feature_nodes
    if limit is None or nodes.n_features <= limit:
        chosen, feature_rows = list(range(nodes.n_features)), att.feature_rows(range(nodes.n_features))
    else:
        chosen, feature_rows = _greedy_features(att, logit_rows, limit)
    kept = torch.cat([torch.tensor(chosen, dtype=torch.long), torch.arange(nodes.error_start, nodes.size)])
    n_plain = nodes.logit_start - nodes.error_start  # errors and tokens have no incoming edges
    full_rows = torch.cat([feature_rows, torch.zeros(n_plain, nodes.size), logit_rows])
    return Attribution(run=run, nodes=nodes, adjacency=full_rows[:, kept], kept=kept,
                       source_ids=[layer.source.id if layer.source else None for layer in layers])


def prune_attribution(att: Attribution, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """`prune` with the logits weighted by their probability; embeddings and logits kept."""
    nodes = att.nodes
    n = att.kept.numel()
    n_logits = nodes.logit_tokens.numel()
    weights = torch.zeros(n)
    weights[n - n_logits:] = nodes.logit_probs
    always = att.kept >= nodes.token_start
    return prune(att.adjacency, weights, always, node_threshold, edge_threshold, has_inputs=att.kept < nodes.n_features)


def generate_graph(m, prompt: str | Sequence[int], sources: Sequence, *, slug: str | None = None,
                   node_threshold: float = 0.8, edge_threshold: float = 0.98,
                   config: AttributionConfig | None = None, label: Labeler | None = None) -> dict:
    """A pruned attribution graph of `prompt` through transcoder `sources`, as graph JSON."""
    check_thresholds(node_threshold, edge_threshold)
    ids = prompt_ids(m, prompt)
    if len(ids) < 2:
        raise InvalidInputError("the prompt needs at least one token after BOS")
    layers = replacement_layers(sources, m.n_layers)
    started = time.perf_counter()
    att = attribute(m, ids, layers, config)
    pruned = prune_attribution(att, node_threshold, edge_threshold)
    text = prompt if isinstance(prompt, str) else "".join(token_strs(m, ids[1:]))
    info = {"seconds": round(time.perf_counter() - started, 3), "n_candidate_features": att.nodes.n_features,
            "n_expanded_features": int((att.kept < att.nodes.n_features).sum())}
    return graph_json(att, pruned, model_id=m.id, prompt=text, tokens=token_strs(m, ids),
                      logit_texts=token_strs(m, att.nodes.logit_tokens.tolist()), slug=slug or _slug(text),
                      node_threshold=node_threshold, edge_threshold=edge_threshold, label=label, info=info)


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:6]
    return "-".join(words) or "graph"
