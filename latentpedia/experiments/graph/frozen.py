"""The local replacement model's linear skeleton: one real forward pass, then everything frozen.

`capture(m, ids)` runs the real model once and keeps what the local replacement model holds
fixed: every attention pattern, every RMSNorm's per-token scale 1/rms(x), each layer's MLP
input and output, and the real logits. `LinearSkeleton` then recomputes the residual stream
from the token embeddings and constant MLP outputs with those frozen quantities: attention is
`pattern @ V(x)` and each norm multiplies by a fixed per-token number, so the map from
(embeddings, MLP outputs) to every MLP input and to the logits is linear. Given the real MLP
outputs it reproduces the model's logits to float tolerance (tests/test_graph.py).

Supported: pre-norm RMSNorm decoders whose blocks are `input_layernorm -> self_attn(v_proj,
o_proj) -> post_attention_layernorm -> mlp` (LLaMA / SmolLM, Mistral, Qwen 2/3). Others get an
InvalidInputError naming the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from latentpedia.errors import InvalidInputError

if TYPE_CHECKING:
    from latentpedia.models.loader import LoadedModel

SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass
class FrozenRun:
    """What one real forward pass fixes; T positions, d = d_model."""

    ids: list[int]
    embeds: torch.Tensor  # [T, d] input of block 0
    attn_scales: list[torch.Tensor]  # per layer [T, 1]: 1/rms of the block input
    mlp_scales: list[torch.Tensor]  # per layer [T, 1]: 1/rms of resid_mid
    patterns: list[torch.Tensor]  # per layer [H, T, T]
    mlp_in: list[torch.Tensor]  # per layer [T, d]: normalized MLP input (ln2.hook_normalized)
    mlp_out: list[torch.Tensor]  # per layer [T, d]: what the MLP adds to the residual
    final_scale: torch.Tensor  # [T, 1]
    logits: torch.Tensor  # [T, vocab] the real model's logits

    @property
    def n_pos(self) -> int:
        return len(self.ids)


def check_family(m: LoadedModel) -> None:
    """InvalidInputError unless attribution graphs support `m`'s architecture."""
    if m.family not in SUPPORTED_FAMILIES:
        raise InvalidInputError(
            f"attribution graphs support the {', '.join(SUPPORTED_FAMILIES)} families; "
            f"model {m.id} is {m.family}"
        )


def _inverse_rms(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", 1e-6)
    return torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)


@contextmanager
def _eager_attention(hf: nn.Module) -> Iterator[None]:
    """Attention weights are only returned by the eager implementation: switch for the pass."""
    config = hf.config
    before = getattr(config, "_attn_implementation", None)
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = before


def capture(m: LoadedModel, ids: Sequence[int]) -> FrozenRun:
    """Run `m` on `ids` (one sequence) and keep what the replacement model freezes."""
    check_family(m)
    layers = m.hf.model.layers
    seen: dict[str, torch.Tensor] = {}
    handles = []

    def keep_input(name: str):
        def hook(_mod, args, kwargs):
            seen[name] = (args[0] if args else kwargs["hidden_states"]).detach()[0]
        return hook

    def keep_output(name: str):
        def hook(_mod, _args, output):
            seen[name] = (output[0] if isinstance(output, tuple) else output).detach()[0]
        return hook

    for layer, block in enumerate(layers):
        handles.append(block.input_layernorm.register_forward_pre_hook(keep_input(f"pre{layer}"), with_kwargs=True))
        handles.append(block.post_attention_layernorm.register_forward_pre_hook(keep_input(f"mid{layer}"), with_kwargs=True))
        handles.append(block.mlp.register_forward_pre_hook(keep_input(f"in{layer}"), with_kwargs=True))
        handles.append(block.mlp.register_forward_hook(keep_output(f"out{layer}")))
    handles.append(m.hf.model.norm.register_forward_pre_hook(keep_input("final"), with_kwargs=True))
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=m.hf.device)
    try:
        with torch.no_grad(), _eager_attention(m.hf):
            out = m.hf(input_ids=input_ids, output_attentions=True, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    n = len(layers)
    return FrozenRun(
        ids=list(ids),
        embeds=seen["pre0"],
        attn_scales=[_inverse_rms(layers[i].input_layernorm, seen[f"pre{i}"]) for i in range(n)],
        mlp_scales=[_inverse_rms(layers[i].post_attention_layernorm, seen[f"mid{i}"]) for i in range(n)],
        patterns=[a.detach()[0].float() for a in out.attentions],
        mlp_in=[seen[f"in{i}"] for i in range(n)],
        mlp_out=[seen[f"out{i}"] for i in range(n)],
        final_scale=_inverse_rms(m.hf.model.norm, seen["final"]),
        logits=out.logits.detach()[0].float(),
    )


class LinearSkeleton:
    """The frozen model as a linear function, batched: inputs [B, T, d]."""

    def __init__(self, m: LoadedModel, run: FrozenRun, skips: Sequence[torch.Tensor | None] | None = None):
        check_family(m)
        self.m, self.run = m, run
        self.layers = m.hf.model.layers
        self.skips = list(skips) if skips is not None else [None] * len(self.layers)
        self.final_weight = m.hf.model.norm.weight.detach()
        self.W_U = m.hf.lm_head.weight.detach()

    def attention(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Attention output of block `layer` for residual `x` [B, T, d] with its frozen pattern."""
        block, run = self.layers[layer], self.run
        attn = block.self_attn
        h = x * run.attn_scales[layer] * block.input_layernorm.weight
        v = attn.v_proj(h)  # [B, T, n_kv * head_dim]
        B, T, _ = v.shape
        pattern = run.patterns[layer]  # [H, T, T]
        n_heads = pattern.shape[0]
        v = v.view(B, T, -1, attn.head_dim).transpose(1, 2)  # [B, n_kv, T, hd]
        v = v.repeat_interleave(n_heads // v.shape[1], dim=1)  # [B, H, T, hd]
        z = (pattern[None] @ v).transpose(1, 2).reshape(B, T, n_heads * attn.head_dim)
        return attn.o_proj(z)

    def mlp_input(self, layer: int, resid_mid: torch.Tensor) -> torch.Tensor:
        block = self.layers[layer]
        return resid_mid * self.run.mlp_scales[layer] * block.post_attention_layernorm.weight

    def forward(self, embeds: torch.Tensor, mlp_consts: Sequence[torch.Tensor],
                *, upto: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """(MLP inputs per layer, final normalized residual or None when stopped early).

        `mlp_consts[l]` [B, T, d] is what layer l's MLP adds besides its skip connection.
        `upto`: stop after computing layer `upto`'s MLP input (targets below the logits).
        """
        x, mlp_ins = embeds, []
        for layer in range(len(self.layers)):
            x = x + self.attention(layer, x)
            mlp_in = self.mlp_input(layer, x)
            mlp_ins.append(mlp_in)
            if upto is not None and layer == upto:
                return mlp_ins, None
            out = mlp_consts[layer]
            if self.skips[layer] is not None:
                out = out + mlp_in @ self.skips[layer]
            x = x + out
        return mlp_ins, x * self.run.final_scale * self.final_weight

    def logits(self, final: torch.Tensor) -> torch.Tensor:
        return final @ self.W_U.T

    def real_consts(self) -> list[torch.Tensor]:
        """Per layer [1, T, d]: the real MLP output minus the skip path (reproduces the model)."""
        consts = []
        for layer, out in enumerate(self.run.mlp_out):
            skip = self.skips[layer]
            consts.append((out if skip is None else out - self.run.mlp_in[layer] @ skip)[None])
        return consts
