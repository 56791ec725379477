"""Attribution: the direct-effect adjacency matrix of the local replacement model.

Nodes, in this order: active transcoder latents (layer, position, index; position 0, the BOS
attention sink, has none: its whole MLP output is its error node), one error node per (layer,
position), one embedding node per position, and the top next-token logits. In the linear
skeleton every source node injects a fixed vector into the residual stream (a latent: its
activation times its decoder row; an error: the MLP output its transcoder misses; a token: its
embedding), so the edge weight from source s to target t, `A[t, s]`, is exactly how much t's
input (a latent's pre-activation, a logit minus the mean logit) drops when s is removed
(tests/test_graph.py checks this by brute force). Rows come from batched backward passes: one
batch row per target, one gradient per injection site.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from latentpedia.experiments.graph.frozen import FrozenRun, LinearSkeleton
from latentpedia.experiments.graph.transcoders import ReplacementLayer


@dataclass
class AttributionConfig:
    max_n_logits: int = 10
    desired_logit_prob: float = 0.95
    max_feature_nodes: int | None = 1024  # latents whose incoming edges are computed
    batch_size: int = 32


@dataclass
class Nodes:
    """Every candidate node of one prompt's graph."""

    features: torch.Tensor  # [F, 3] long (layer, position, latent index)
    activations: torch.Tensor  # [F]
    n_layers: int
    n_pos: int
    logit_tokens: torch.Tensor  # [K]
    logit_probs: torch.Tensor  # [K]

    @property
    def n_features(self) -> int:
        return int(self.features.shape[0])

    @property
    def error_start(self) -> int:
        return self.n_features

    @property
    def token_start(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_start(self) -> int:
        return self.token_start + self.n_pos

    @property
    def size(self) -> int:
        return self.logit_start + int(self.logit_tokens.numel())


@dataclass
class Attribution:
    """The unpruned graph: `adjacency[t, s]` is the direct effect of node s on node t."""

    run: FrozenRun
    nodes: Nodes
    adjacency: torch.Tensor  # [N, N] over kept nodes (see `kept`)
    kept: torch.Tensor  # [N] long: indices into the candidate nodes (features with rows first)
    source_ids: list[str | None]  # per layer: the transcoder's source id


class Attributor:
    """Computes rows of the adjacency matrix for one prompt."""

    def __init__(self, m, run: FrozenRun, layers: Sequence[ReplacementLayer], config: AttributionConfig):
        self.m, self.run, self.layers, self.config = m, run, list(layers), config
        self.skeleton = LinearSkeleton(m, run, [layer.skip for layer in self.layers])
        self.decoders = [layer.decoder() for layer in self.layers]
        self.encoders = [layer.encoder() if layer.source is not None else None for layer in self.layers]
        acts = [layer.activations(x) for layer, x in zip(self.layers, run.mlp_in)]
        for a in acts:
            a[:1] = 0  # the BOS position is all error
        self.errors = self._errors(acts)  # [L, T, d]
        self.nodes = self._nodes(acts)
        self.W_U = self.skeleton.W_U

    def _errors(self, acts: list[torch.Tensor]) -> torch.Tensor:
        errors = []
        d = self.m.d_model
        for layer, a in enumerate(acts):
            recon = self.layers[layer].bias(d).expand(self.run.n_pos, d)
            if a.shape[-1]:
                recon = recon + a @ self.decoders[layer]
            if self.layers[layer].skip is not None:
                recon = recon + self.run.mlp_in[layer] @ self.layers[layer].skip
            errors.append(self.run.mlp_out[layer] - recon)
        return torch.stack(errors)

    def _nodes(self, acts: list[torch.Tensor]) -> Nodes:
        rows, values = [], []
        for layer, a in enumerate(acts):
            if not a.shape[-1]:
                continue
            pos, index = a.nonzero(as_tuple=True)
            rows.append(torch.stack([torch.full_like(pos, layer), pos, index], dim=1))
            values.append(a[pos, index])
        features = torch.cat(rows) if rows else torch.zeros(0, 3, dtype=torch.long)
        probs = torch.softmax(self.run.logits[-1], dim=-1)
        top = torch.topk(probs, min(self.config.max_n_logits, probs.numel()))
        n_logits = int((top.values.cumsum(0) < self.config.desired_logit_prob).sum()) + 1
        n_logits = min(n_logits, top.values.numel())
        return Nodes(features, torch.cat(values) if values else torch.zeros(0), len(self.layers),
                     self.run.n_pos, top.indices[:n_logits], top.values[:n_logits])

    # ------------------------------------------------------------------ targets

    def logit_direction(self, token: int) -> torch.Tensor:
        """[d]: the demeaned logit of `token` as a linear read-out of the final normalized residual."""
        return self.W_U[token] - self.W_U.mean(0)

    def feature_direction(self, feature: int) -> torch.Tensor:
        layer, _pos, index = self.nodes.features[feature].tolist()
        return self.encoders[layer][:, index]

    # ------------------------------------------------------------------ rows

    def rows(self, targets: Sequence[tuple[int, int, torch.Tensor]]) -> torch.Tensor:
        """[len(targets), n candidate nodes]: direct effects on each target.

        A target is (layer, position, direction): the dot product of `direction` with layer's
        MLP input at `position`, or with the final normalized residual when layer == n_layers.
        """
        out = []
        for start in range(0, len(targets), self.config.batch_size):
            out.append(self._batch_rows(targets[start:start + self.config.batch_size]))
        return torch.cat(out) if out else torch.zeros(0, self.nodes.size)

    def _batch_rows(self, targets: Sequence[tuple[int, int, torch.Tensor]]) -> torch.Tensor:
        n_layers, T, d = len(self.layers), self.run.n_pos, self.m.d_model
        B = len(targets)
        top = max(layer for layer, _, _ in targets)
        upto = None if top >= n_layers else top
        embeds = torch.zeros(B, T, d, requires_grad=True)
        consts = [torch.zeros(B, T, d, requires_grad=True) for _ in range(n_layers)]
        with torch.enable_grad():
            mlp_ins, final = self.skeleton.forward(embeds, consts, upto=upto)
            objective = 0.0
            for b, (layer, pos, direction) in enumerate(targets):
                where = final if layer >= n_layers else mlp_ins[layer]
                objective = objective + where[b, pos] @ direction
            n_used = n_layers if upto is None else upto
            grads = torch.autograd.grad(objective, [embeds, *consts[:n_used]], allow_unused=True)
        return self._columns(grads[0], [g if g is not None else torch.zeros(B, T, d) for g in grads[1:]])

    def _columns(self, g_embed: torch.Tensor, g_layers: list[torch.Tensor]) -> torch.Tensor:
        nodes = self.nodes
        B, T = g_embed.shape[:2]
        row = torch.zeros(B, nodes.size)
        for layer, g in enumerate(g_layers):
            mask = nodes.features[:, 0] == layer
            idx = mask.nonzero(as_tuple=True)[0]
            if idx.numel():  # one matmul against the layer's active decoder rows, then a gather
                pos, index = nodes.features[idx, 1], nodes.features[idx, 2]
                active, slot = torch.unique(index, return_inverse=True)
                dots = (g @ self.decoders[layer][active].T).reshape(B, -1)  # [B, T * n_active]
                row[:, idx] = dots[:, pos * active.numel() + slot] * nodes.activations[idx]
            start = nodes.error_start + layer * T
            row[:, start:start + T] = torch.einsum("btd,td->bt", g, self.errors[layer])
        row[:, nodes.token_start:nodes.logit_start] = torch.einsum("btd,td->bt", g_embed, self.run.embeds)
        return row

    def logit_rows(self) -> torch.Tensor:
        last = self.run.n_pos - 1
        return self.rows([(len(self.layers), last, self.logit_direction(int(t))) for t in self.nodes.logit_tokens])

    def feature_rows(self, features: Sequence[int]) -> torch.Tensor:
        targets = [(int(self.nodes.features[f, 0]), int(self.nodes.features[f, 1]), self.feature_direction(f))
                   for f in features]
        return self.rows(targets)
