"""TransformerLens-style hook points on Hugging Face models, with plain PyTorch hooks.

Hook names (per layer L, in forward order):

    blocks.L.hook_resid_pre    input of block L (the residual stream)
    blocks.L.hook_attn_out     attention contribution added to the residual
    blocks.L.hook_resid_mid    resid_pre + attn_out (input of the MLP half)
    blocks.L.ln2.hook_normalized  the MLP's input after its norm (what MLP transcoders read)
    blocks.L.mlp.hook_pre      input of the activation function (gate side for gated MLPs)
    blocks.L.mlp.hook_post     input of the down projection: act(gate) * up (gated) or act(x)
    blocks.L.hook_mlp_out      MLP contribution added to the residual
    blocks.L.hook_resid_post   output of block L
    ln_final.hook_normalized   output of the final norm (scale applied): what the unembedding reads

For sandwich-norm models (Gemma 2/3) `hook_attn_out` / `hook_mlp_out` are the *post-norm*
contributions actually added to the residual, so resid_mid = resid_pre + attn_out and
resid_post = resid_mid + mlp_out hold for every family.

Every name is derived from `_POINTS` and the per-family module paths in `families.py`; nothing
else spells module paths. A hook function gets the activation tensor and returns a replacement
(to patch or steer the forward pass) or None (read only).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from latentpedia.errors import InvalidInputError, UnknownHookError
from latentpedia.models.families import Family, blocks, family_by_name, submodule

if TYPE_CHECKING:
    from latentpedia.models.loader import LoadedModel

HookFn = Callable[[torch.Tensor], torch.Tensor | None]

# Per-block hook suffix -> (Family field naming the module inside the block, or None for the
# block itself; side: "in" = the module's input, "out" = its output, "mid" = block input plus
# the attention module's output). Listed in forward order.
_POINTS: dict[str, tuple[str | None, str]] = {
    "hook_resid_pre": (None, "in"),
    "hook_attn_out": ("attn_out", "out"),
    "hook_resid_mid": ("attn_out", "mid"),
    "ln2.hook_normalized": ("mlp_block", "in"),
    "mlp.hook_pre": ("mlp_in", "out"),
    "mlp.hook_post": ("mlp_down", "in"),
    "hook_mlp_out": ("mlp_out", "out"),
    "hook_resid_post": (None, "out"),
}
_MLP_SPACE = frozenset({"mlp.hook_pre", "mlp.hook_post"})
FINAL_NORM_HOOK = "ln_final.hook_normalized"
_BLOCK_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


class _StopForward(Exception):
    """Raised inside a hook to abort the forward pass once every wanted activation is in."""


# ---------------------------------------------------------------------------- names


def hook_names(m: LoadedModel) -> list[str]:
    """Every hook point of `m`, in forward order."""
    names = [f"blocks.{layer}.{suffix}" for layer in range(m.n_layers) for suffix in _POINTS]
    return [*names, FINAL_NORM_HOOK]


def _parse(m: LoadedModel, name: str) -> tuple[int, str]:
    """(layer, suffix) of a hook name; (n_layers, name) for the final norm. Validates."""
    if name == FINAL_NORM_HOOK:
        return m.n_layers, name
    match = _BLOCK_NAME.match(name) if isinstance(name, str) else None
    if match and match.group(2) in _POINTS and int(match.group(1)) < m.n_layers:
        return int(match.group(1)), match.group(2)
    raise UnknownHookError(
        f"unknown hook point {name!r} for model {m.id} ({m.n_layers} layers, 0..{m.n_layers - 1}); "
        f"valid names look like 'blocks.0.hook_resid_post', 'blocks.{m.n_layers - 1}.mlp.hook_post' "
        f"or '{FINAL_NORM_HOOK}'; per-block suffixes: {', '.join(_POINTS)}"
    )


def _forward_rank(m: LoadedModel, name: str) -> tuple[int, int]:
    layer, suffix = _parse(m, name)
    return layer, list(_POINTS).index(suffix) if suffix in _POINTS else 0


def hook_width(m: LoadedModel, name: str) -> int:
    """Last-dimension size of the activation at `name` (d_mlp or d_model)."""
    _, suffix = _parse(m, name)
    return m.d_mlp if suffix in _MLP_SPACE else m.d_model


# ---------------------------------------------------------------------------- attaching


def _first_tensor_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_first_arg(args: tuple, kwargs: dict, new: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (new, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": new}


def _main_output(output: Any) -> torch.Tensor:
    """Decoder layers and attention modules return a tensor or a tuple led by one."""
    return output[0] if isinstance(output, tuple) else output


def _with_main_output(output: Any, new: torch.Tensor) -> Any:
    return (new, *output[1:]) if isinstance(output, tuple) else new


def _attach_input(module: nn.Module, fn: HookFn) -> list[RemovableHandle]:
    def pre_hook(_mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        new = fn(_first_tensor_arg(args, kwargs))
        return None if new is None else _with_first_arg(args, kwargs, new)

    return [module.register_forward_pre_hook(pre_hook, with_kwargs=True)]


def _attach_output(module: nn.Module, fn: HookFn) -> list[RemovableHandle]:
    def post_hook(_mod: nn.Module, _args: tuple, output: Any) -> Any:
        new = fn(_main_output(output))
        return None if new is None else _with_main_output(output, new)

    return [module.register_forward_hook(post_hook)]


def _attach_mid(block: nn.Module, attn_out: nn.Module, fn: HookFn) -> list[RemovableHandle]:
    """resid_mid = block input + attention contribution; a replacement edits the contribution."""
    stash: dict[str, torch.Tensor] = {}

    def remember(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
        stash["pre"] = _first_tensor_arg(args, kwargs)

    def post_hook(_mod: nn.Module, _args: tuple, output: Any) -> Any:
        pre = stash.pop("pre")
        new = fn(pre + _main_output(output))
        return None if new is None else _with_main_output(output, new - pre)

    return [
        block.register_forward_pre_hook(remember, with_kwargs=True),
        attn_out.register_forward_hook(post_hook),
    ]


def _attach(m: LoadedModel, family: Family, name: str, fn: HookFn) -> list[RemovableHandle]:
    layer, suffix = _parse(m, name)
    if suffix == FINAL_NORM_HOOK:
        return _attach_output(submodule(m.hf, family.final_norm), fn)
    field, side = _POINTS[suffix]
    block = blocks(m.hf, family)[layer]
    module = submodule(block, getattr(family, field)) if field else block
    if side == "mid":
        return _attach_mid(block, module, fn)
    return (_attach_input if side == "in" else _attach_output)(module, fn)


@contextmanager
def hooks(m: LoadedModel, fns: Mapping[str, HookFn]) -> Iterator[None]:
    """Register `{hook name: fn}` on `m` for the duration of the `with` block.

    `fn(act)` gets the activation ([B, T, width]) and returns a replacement tensor or None.
    Hooks are registered in forward order (so within a layer resid_pre edits are seen by
    later points) and always removed on exit, even when the body raises.
    """
    family = family_by_name(m.family)
    ordered = sorted(fns, key=lambda name: _forward_rank(m, name))  # validates every name
    handles: list[RemovableHandle] = []
    try:
        for name in ordered:
            handles += _attach(m, family, name, fns[name])
        yield
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------------------- running


def _as_ids(m: LoadedModel, input_ids: torch.Tensor | Sequence[Sequence[int]]) -> torch.Tensor:
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    return ids.to(m.hf.device)


def run_with_cache(
    m: LoadedModel,
    input_ids: torch.Tensor | Sequence[Sequence[int]],
    names: Sequence[str],
    *,
    stop_early: bool = True,
    attention_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Run `m` on `input_ids` ([B, T]) and return the activations {name: [B, T, width]}.

    Runs the base model (never the unembedding) under `torch.inference_mode`. With
    `stop_early` the forward pass is aborted as soon as the last wanted hook has fired, so
    reading layer 15 of 30 costs about half a forward pass. Tensors are detached copies.
    """
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        _parse(m, name)
    cache: dict[str, torch.Tensor] = {}

    def capture(name: str) -> HookFn:
        def fn(act: torch.Tensor) -> None:
            cache[name] = act.detach().clone()
            if stop_early and len(cache) == len(wanted):
                raise _StopForward

        return fn

    ids = _as_ids(m, input_ids)
    mask = None if attention_mask is None else attention_mask.to(ids.device)
    with torch.inference_mode(), hooks(m, {name: capture(name) for name in wanted}):
        try:
            m.hf.base_model(input_ids=ids, attention_mask=mask, use_cache=False)
        except _StopForward:
            pass
    return {name: cache[name] for name in wanted}


# ---------------------------------------------------------------------------- weights


def _norm_scale(family: Family, norm: nn.Module) -> torch.Tensor | None:
    weight = getattr(norm, "weight", None)
    return None if weight is None else weight.detach() + family.norm_offset


def write_matrix(m: LoadedModel, name: str) -> torch.Tensor | None:
    """[width, d_model] matrix mapping a direction at hook `name` into the residual stream.

    `mlp.hook_post`: the down projection (`down_proj.weight.T`; GPT-2's Conv1D `c_proj.weight`
    is already stored [d_mlp, d_model]); biases are not included. For sandwich-norm models the
    columns are also scaled by the post-MLP norm's effective scale (1 + w): the residual update
    is then `hook_post @ W / rms(hook_post @ W_down.T)`, i.e. right up to a positive per-token
    factor. None (identity) for residual-space hooks (resid_*, attn_out, mlp_out) and for
    `ln_final.hook_normalized` (already the space `unembed` reads). `mlp.hook_pre` has no
    linear map into the residual stream: InvalidInputError. Returns a copy.
    """
    layer, suffix = _parse(m, name)
    if suffix == "mlp.hook_pre":
        raise InvalidInputError(f"{name} has no linear map into the residual stream; use mlp.hook_post")
    if suffix != "mlp.hook_post":
        return None
    family = family_by_name(m.family)
    block = blocks(m.hf, family)[layer]
    weight = submodule(block, family.mlp_down).weight.detach()
    matrix = weight.clone() if family.down_layout == "conv1d" else weight.T.clone()
    if family.mlp_out_norm:
        matrix *= _norm_scale(family, submodule(block, family.mlp_out_norm))
    return matrix


def unembed(m: LoadedModel) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(final norm's effective scale or None, W_U [vocab, d_model]).

    Logits of a residual direction d are about `W_U @ (scale * d)` (the norm's per-token
    1/rms and any bias are left out). For Gemma the stored norm weight w is applied as
    (1 + w): the returned scale is already 1 + w. Gemma 2's final logit soft-capping is
    monotonic and not included. W_U shares memory with the model: do not edit it in place.
    """
    family = family_by_name(m.family)
    scale = _norm_scale(family, submodule(m.hf, family.final_norm))
    return scale, submodule(m.hf, family.unembed).weight.detach()
