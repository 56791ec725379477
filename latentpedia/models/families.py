"""Architecture families: where each hook point lives in a Hugging Face causal LM.

One `Family` row per architecture says, as module paths, which HF submodule produces (or
consumes) each TransformerLens-style hook point. `hooks.py` derives every hook name and every
PyTorch hook from this table, so supporting a new architecture is one `_register(Family(...))`.

Paths inside a block are relative to the decoder layer (`model.layers.{L}` / `transformer.h.{L}`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from latentpedia.errors import InvalidInputError


@dataclass(frozen=True)
class Family:
    """Module paths of one architecture family.

    name: our short family id ("llama", "gpt2", "gemma2", ...).
    classes: HF causal-LM class names belonging to the family.
    layers: path of the ModuleList of decoder blocks, from the causal LM.
    final_norm: path of the final norm, from the causal LM.
    unembed: path of the unembedding Linear, from the causal LM.
    attn_out: block submodule whose output (or output[0]) is the attention contribution
        added to the residual stream (the post-attention norm for sandwich-norm models).
    mlp_out: block submodule whose output is the MLP contribution added to the residual.
    mlp_in: MLP submodule whose output is the activation function's input (gate side).
    mlp_down: MLP submodule whose input is the neuron activations (act(gate) * up).
    down_layout: "linear" (weight [d_model, d_mlp]) or "conv1d" (GPT-2, weight [d_mlp, d_model]).
    norm_offset: RMSNorm weights are applied as (norm_offset + w): 1.0 for Gemma.
    mlp_out_norm: for sandwich-norm models, the norm applied to the MLP output before it is
        added to the residual (None otherwise).
    """

    name: str
    classes: tuple[str, ...]
    layers: str = "model.layers"
    final_norm: str = "model.norm"
    unembed: str = "lm_head"
    attn_out: str = "self_attn"
    mlp_out: str = "mlp"
    mlp_in: str = "mlp.gate_proj"
    mlp_down: str = "mlp.down_proj"
    down_layout: str = "linear"
    norm_offset: float = 0.0
    mlp_out_norm: str | None = None

    @property
    def sandwich(self) -> bool:
        """True when block outputs pass through a post-norm before joining the residual."""
        return self.mlp_out_norm is not None

    @property
    def mlp_block(self) -> str:
        """The MLP module (parent of `mlp_in`): its input is the normalized MLP input."""
        return self.mlp_in.rsplit(".", 1)[0]


FAMILIES: dict[str, Family] = {}


def _register(family: Family) -> None:
    FAMILIES[family.name] = family


_register(Family("llama", ("LlamaForCausalLM",)))
_register(Family("mistral", ("MistralForCausalLM",)))
_register(Family("qwen2", ("Qwen2ForCausalLM",)))
_register(Family("qwen3", ("Qwen3ForCausalLM",)))
_register(Family("gemma", ("GemmaForCausalLM",), norm_offset=1.0))
_register(
    Family(
        "gpt2",
        ("GPT2LMHeadModel",),
        layers="transformer.h",
        final_norm="transformer.ln_f",
        attn_out="attn",
        mlp_in="mlp.c_fc",
        mlp_down="mlp.c_proj",
        down_layout="conv1d",
    )
)
_SANDWICH = dict(
    attn_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
    mlp_out_norm="post_feedforward_layernorm",
    norm_offset=1.0,
)
_register(Family("gemma2", ("Gemma2ForCausalLM",), **_SANDWICH))
_register(Family("gemma3", ("Gemma3ForCausalLM",), **_SANDWICH))

_BY_CLASS = {cls: fam for fam in FAMILIES.values() for cls in fam.classes}


def supported_classes() -> list[str]:
    """HF causal-LM class names we know how to hook."""
    return sorted(_BY_CLASS)


def family_of(hf: nn.Module) -> Family:
    """The family of a loaded HF model (by its class, else its config's architectures)."""
    names = [type(hf).__name__, *(getattr(getattr(hf, "config", None), "architectures", None) or [])]
    for name in names:
        if name in _BY_CLASS:
            return _BY_CLASS[name]
    raise InvalidInputError(
        f"architecture {names[0]} is not supported; supported: {', '.join(supported_classes())}"
    )


def family_by_name(name: str) -> Family:
    """A family by its short id."""
    if name not in FAMILIES:
        raise InvalidInputError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def submodule(root: nn.Module, path: str) -> nn.Module:
    """`root.get_submodule(path)`, with "" meaning root itself."""
    return root.get_submodule(path) if path else root


def blocks(hf: nn.Module, family: Family) -> nn.ModuleList:
    """The decoder blocks of `hf`."""
    return submodule(hf, family.layers)  # type: ignore[return-value]


def d_mlp_of(hf: nn.Module, family: Family) -> int:
    """Width of the MLP hidden layer, read from the first block's down projection."""
    down = submodule(blocks(hf, family)[0], family.mlp_down)
    weight = down.weight
    return int(weight.shape[0] if family.down_layout == "conv1d" else weight.shape[1])
