"""Influence on the chosen logits, and pruning by cumulative influence.

With `An` the adjacency matrix with absolute values and rows normalized to sum to 1, a node's
influence is the total weight of all paths from it to the logits, each logit weighted by its
probability: `w^T (An + An^2 + ...)`. The graph is a DAG, so the series ends after as many
steps as it is deep. Pruning keeps the most influential nodes until `node_threshold` of the
total influence is covered (embeddings and logits always stay), then the edges carrying
`edge_threshold` of the edge influence; then, until nothing changes, a latent or error node
without a kept outgoing edge goes, and so does a latent without a kept incoming edge. This is
circuit-tracer's `prune_graph` rule: on the same adjacency both keep the same nodes and edges
(tests/test_circuit_oracle.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentpedia.errors import InvalidInputError


def normalized(adjacency: torch.Tensor) -> torch.Tensor:
    """|A| with each row scaled to sum to 1 (all-zero rows stay zero)."""
    absolute = adjacency.abs()
    totals = absolute.sum(dim=1, keepdim=True)
    return absolute / totals.clamp_min(1e-30)


def influence(rows: torch.Tensor, row_nodes: torch.Tensor, weights: torch.Tensor, *, max_depth: int = 10_000) -> torch.Tensor:
    """[n columns]: influence of every column node through normalized `rows`.

    `rows` [R, N] are the computed (normalized) rows, row r belonging to node `row_nodes[r]`;
    `weights` [R] the starting weight of each row (logit probabilities). Nodes without a row
    are leaves.
    """
    total = torch.zeros(rows.shape[1], dtype=rows.dtype)
    current = weights.to(rows.dtype)
    for _ in range(max_depth):
        reached = current @ rows
        total += reached
        current = reached[row_nodes]
        if not bool(current.abs().sum() > 0):
            break
    return total


def _threshold(scores: torch.Tensor, fraction: float) -> float:
    """The smallest score among the top ones that together make up `fraction` of the total."""
    ordered = scores.flatten().sort(descending=True).values
    cumulative = ordered.cumsum(0)
    if not ordered.numel() or float(cumulative[-1]) <= 0:
        return float("inf")
    index = int((cumulative < fraction * cumulative[-1]).sum())
    return float(ordered[min(index, ordered.numel() - 1)])


def check_thresholds(node_threshold: float, edge_threshold: float) -> None:
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0 < value <= 1:
            raise InvalidInputError(f"{name} must be in (0, 1], got {value}")


@dataclass
class Pruned:
    node_mask: torch.Tensor  # [N] bool
    edge_mask: torch.Tensor  # [N, N] bool
    node_influence: torch.Tensor  # [N] influence on the logits (logits: their probability)


def prune(adjacency: torch.Tensor, logit_weights: torch.Tensor, always: torch.Tensor,
          node_threshold: float = 0.8, edge_threshold: float = 0.98, *, has_inputs: torch.Tensor | None = None) -> Pruned:
    """Masks of the nodes and edges to keep.

    `logit_weights` [N]: probability on logit nodes, 0 elsewhere; `always` [N] bool: nodes
    kept whatever their influence (embeddings and logits); `has_inputs` [N] bool: nodes whose
    incoming edges were computed (expanded latents; default: none), which need one kept.
    """
    check_thresholds(node_threshold, edge_threshold)
    n = adjacency.shape[0]
    nodes = torch.arange(n)
    has_inputs = torch.zeros(n, dtype=torch.bool) if has_inputs is None else has_inputs
    node_influence = influence(normalized(adjacency), nodes, logit_weights)
    node_mask = (node_influence >= _threshold(node_influence, node_threshold)) | always
    kept = adjacency * node_mask[:, None] * node_mask[None, :]
    Ak = normalized(kept)
    edge_scores = Ak * (influence(Ak, nodes, logit_weights) + logit_weights)[:, None]
    edge_mask = (edge_scores >= _threshold(edge_scores, edge_threshold)) & (kept != 0)
    for _ in range(n):  # edge_mask[t, s]: s feeds t
        new_mask = node_mask & (always | edge_mask.any(dim=0)) & (~has_inputs | edge_mask.any(dim=1))
        edge_mask &= new_mask[:, None] & new_mask[None, :]
        if bool((new_mask == node_mask).all()):
            break
        node_mask = new_mask
    return Pruned(node_mask, edge_mask, node_influence + logit_weights)
