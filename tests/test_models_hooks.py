"""Hook points of every supported family, checked against submodules called by hand.

Tiny random-weight models (3 layers, d_model 32) are built from transformers configs: no hub.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

from latentpedia.errors import InvalidInputError, UnknownHookError
from latentpedia.models import (
    FINAL_NORM_HOOK,
    LoadedModel,
    hook_names,
    hook_width,
    hooks,
    run_with_cache,
    unembed,
    write_matrix,
)
from latentpedia.models.families import FAMILIES, blocks, family_by_name, submodule

N_LAYERS, D_MODEL, D_MLP, VOCAB = 3, 32, 64, 100
_COMMON = dict(
    hidden_size=D_MODEL,
    intermediate_size=D_MLP,
    num_hidden_layers=N_LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    vocab_size=VOCAB,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
CONFIGS = {
    "llama": lambda: LlamaConfig(**_COMMON),
    "mistral": lambda: MistralConfig(**_COMMON),
    "qwen2": lambda: Qwen2Config(**_COMMON),
    "qwen3": lambda: Qwen3Config(**_COMMON),
    "gemma": lambda: GemmaConfig(**_COMMON),
    "gemma2": lambda: Gemma2Config(**_COMMON),
    "gemma3": lambda: Gemma3TextConfig(**_COMMON),
    "gpt2": lambda: GPT2Config(
        n_embd=D_MODEL, n_layer=N_LAYERS, n_head=4, n_inner=D_MLP, vocab_size=VOCAB, n_positions=64,
        bos_token_id=1, eos_token_id=2,
    ),
}


def test_every_family_has_a_tiny_model():
    assert set(CONFIGS) == set(FAMILIES)


def tiny_model(family: str) -> LoadedModel:
    """A tiny random model; every weight (norms too) gets noise so (1 + w) scales matter."""
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(CONFIGS[family]())
    with torch.no_grad():
        for param in hf.parameters():
            param.add_(0.2 * torch.randn_like(param))
    return LoadedModel.from_hf(hf, id=f"tiny-{family}")


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model(request) -> LoadedModel:
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------- manual oracle


def _block_inputs(m: LoadedModel, ids: torch.Tensor) -> tuple[list, torch.Tensor, torch.Tensor]:
    """(per-block (args, kwargs), final-norm input, logits) from a plain forward pass."""
    family = family_by_name(m.family)
    seen: list = []
    final_in: list = []
    handles = [
        b.register_forward_pre_hook(lambda _m, a, k: seen.append((a, k)), with_kwargs=True)
        for b in blocks(m.hf, family)
    ]
    final_norm = submodule(m.hf, family.final_norm)
    handles.append(final_norm.register_forward_pre_hook(lambda _m, a: final_in.append(a[0])))
    try:
        with torch.no_grad():
            logits = m.hf(input_ids=ids, use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()
    return seen, final_in[0], logits


def _manual_block(family: str, block, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
    """Every hook point of one block, computed by calling its submodules by hand."""
    x = args[0]
    if family == "gpt2":
        attn = block.attn(block.ln_1(x), attention_mask=args[2])[0]
        mid = x + attn
        h = block.ln_2(mid)
        pre = block.mlp.c_fc(h)
        post = block.mlp.act(pre)
        mlp_out = block.mlp.c_proj(post)
    else:
        keep = ("attention_mask", "position_embeddings", "position_ids")
        attn_kwargs = {k: v for k, v in kwargs.items() if k in keep}
        attn = block.self_attn(hidden_states=block.input_layernorm(x), **attn_kwargs)[0]
        sandwich = hasattr(block, "post_feedforward_layernorm")
        if sandwich:
            attn = block.post_attention_layernorm(attn)
        mid = x + attn
        h = block.pre_feedforward_layernorm(mid) if sandwich else block.post_attention_layernorm(mid)
        pre = block.mlp.gate_proj(h)
        post = block.mlp.act_fn(pre) * block.mlp.up_proj(h)
        mlp_out = block.mlp.down_proj(post)
        if sandwich:
            mlp_out = block.post_feedforward_layernorm(mlp_out)
    return {
        "hook_resid_pre": x, "hook_attn_out": attn, "hook_resid_mid": mid, "ln2.hook_normalized": h, "mlp.hook_pre": pre,
        "mlp.hook_post": post, "hook_mlp_out": mlp_out, "hook_resid_post": mid + mlp_out,
    }


def manual_activations(m: LoadedModel, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    family = family_by_name(m.family)
    inputs, final_in, _ = _block_inputs(m, ids)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for layer, (block, (args, kwargs)) in enumerate(zip(blocks(m.hf, family), inputs)):
            for suffix, act in _manual_block(m.family, block, args, kwargs).items():
                out[f"blocks.{layer}.{suffix}"] = act
        out[FINAL_NORM_HOOK] = submodule(m.hf, family.final_norm)(final_in)
    return out


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- names


def test_from_hf_infers_sizes(model):
    assert (model.n_layers, model.d_model, model.d_mlp, model.vocab_size) == (N_LAYERS, D_MODEL, D_MLP, VOCAB)
    assert model.hf.dtype == torch.float32 and not model.hf.training
    assert not any(p.requires_grad for p in model.hf.parameters())
    assert model.bos_id == 1  # config.bos_token_id, no tokenizer


def test_hook_names_and_widths(model):
    names = hook_names(model)
    assert len(names) == len(set(names)) == 8 * N_LAYERS + 1
    assert names[0] == "blocks.0.hook_resid_pre" and names[-1] == FINAL_NORM_HOOK
    assert hook_width(model, "blocks.2.mlp.hook_post") == hook_width(model, "blocks.0.mlp.hook_pre") == D_MLP
    assert hook_width(model, "blocks.1.hook_mlp_out") == hook_width(model, FINAL_NORM_HOOK) == D_MODEL


@pytest.mark.parametrize(
    "bad", ["blocks.3.hook_resid_post", "blocks.0.hook_nope", "resid", "blocks.x.hook_resid_pre"]
)
def test_unknown_hook_names(model, bad):
    with pytest.raises(UnknownHookError, match="blocks.0.hook_resid_post"):
        hook_width(model, bad)
    with pytest.raises(UnknownHookError):
        run_with_cache(model, [[1, 2]], [bad])
    with pytest.raises(UnknownHookError):
        with hooks(model, {bad: lambda a: None}):
            pass


# ---------------------------------------------------------------------------- activations


def test_every_hook_matches_manual_computation(model, ids):
    expected = manual_activations(model, ids)
    got = run_with_cache(model, ids, hook_names(model), stop_early=False)
    assert set(got) == set(expected) == set(hook_names(model))
    for name in hook_names(model):
        assert got[name].shape == (*ids.shape, hook_width(model, name)), name
        assert _close(got[name], expected[name]), name


def test_residual_identities_and_chaining(model, ids):
    acts = run_with_cache(model, ids, hook_names(model))
    for layer in range(N_LAYERS):
        a = {s: acts[f"blocks.{layer}.{s}"] for s in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid",
                                                        "hook_mlp_out", "hook_resid_post")}
        assert _close(a["hook_resid_pre"] + a["hook_attn_out"], a["hook_resid_mid"])
        assert _close(a["hook_resid_mid"] + a["hook_mlp_out"], a["hook_resid_post"])
        if layer + 1 < N_LAYERS:
            assert torch.equal(a["hook_resid_post"], acts[f"blocks.{layer + 1}.hook_resid_pre"])


def test_unembed_reproduces_logits(model, ids):
    _, final_in, logits = _block_inputs(model, ids)
    scale, w_u = unembed(model)
    normalized = run_with_cache(model, ids, [FINAL_NORM_HOOK])[FINAL_NORM_HOOK]
    assert w_u.shape == (VOCAB, D_MODEL)
    ours = normalized @ w_u.T
    cap = getattr(model.hf.config, "final_logit_softcapping", None)
    if cap:
        ours = torch.tanh(ours / cap) * cap
    assert _close(ours, logits)
    norm = submodule(model.hf, family_by_name(model.family).final_norm)
    if model.family == "gpt2":
        centered = final_in - final_in.mean(-1, keepdim=True)
        unit = centered * torch.rsqrt(centered.pow(2).mean(-1, keepdim=True) + norm.eps)
        assert _close(unit * scale + norm.bias, normalized)
    else:
        eps = getattr(norm, "eps", None) or norm.variance_epsilon
        unit = final_in * torch.rsqrt(final_in.pow(2).mean(-1, keepdim=True) + eps)
        assert _close(unit * scale, normalized)


def test_run_with_cache_accepts_lists_and_masks(model, ids):
    names = ["blocks.1.hook_resid_post"]
    from_list = run_with_cache(model, ids.tolist(), names)
    masked = run_with_cache(model, ids, names, attention_mask=torch.ones_like(ids))
    plain = run_with_cache(model, ids, names)
    assert _close(from_list[names[0]], plain[names[0]]) and _close(masked[names[0]], plain[names[0]])
    assert not plain[names[0]].requires_grad


# ---------------------------------------------------------------------------- stopping early


def _count_calls(m: LoadedModel) -> tuple[list[int], list]:
    family = family_by_name(m.family)
    modules = [*blocks(m.hf, family), submodule(m.hf, family.final_norm), submodule(m.hf, family.unembed)]
    counts = [0] * len(modules)

    def counter(i: int):
        def hook(*_):
            counts[i] += 1
        return hook

    return counts, [mod.register_forward_pre_hook(counter(i)) for i, mod in enumerate(modules)]


@pytest.mark.parametrize(
    "names", [["blocks.1.hook_resid_post"], ["blocks.0.mlp.hook_post", "blocks.1.hook_resid_mid"]]
)
def test_stop_early_is_identical_and_stops(model, ids, names):
    full = run_with_cache(model, ids, names, stop_early=False)
    counts, handles = _count_calls(model)
    try:
        early = run_with_cache(model, ids, names)
    finally:
        for handle in handles:
            handle.remove()
    assert all(torch.equal(full[n], early[n]) for n in names)
    assert counts == [1, 1, 0, 0, 0]  # blocks 0-1 ran; block 2, final norm, unembedding did not
    assert _no_hooks_left(model)


def _no_hooks_left(m: LoadedModel) -> bool:
    return all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.hf.modules())


# ---------------------------------------------------------------------------- editing


def _logits(m: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m.hf(input_ids=ids, use_cache=False).logits


def _shift(act: torch.Tensor) -> torch.Tensor:
    """Not a constant: LayerNorm would cancel a uniform shift."""
    return torch.linspace(-1.0, 2.0, act.shape[-1])


def test_every_hook_can_replace_activations(model, ids):
    base = _logits(model, ids)
    for name in [n for n in hook_names(model) if n.startswith("blocks.1.")] + [FINAL_NORM_HOOK]:
        original = run_with_cache(model, ids, [name])[name]
        with hooks(model, {name: lambda act: act + _shift(act)}):
            edited = _logits(model, ids)
            seen = run_with_cache(model, ids, [name])[name]  # registered after: sees the edit
        assert not _close(edited, base), name
        assert _close(seen, original + _shift(original)), name
    assert _close(_logits(model, ids), base) and _no_hooks_left(model)


def test_replacing_resid_mid_reaches_the_residual(model, ids):
    name, after = "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"
    clean = run_with_cache(model, ids, [name, "blocks.1.hook_mlp_out", after])
    zero = torch.zeros_like(clean[name])
    with hooks(model, {name: lambda act: zero}):
        edited = run_with_cache(model, ids, [name, "blocks.1.hook_mlp_out", after])
    assert _close(edited[name], zero)
    assert _close(edited[after], edited["blocks.1.hook_mlp_out"])  # resid_post = 0 + mlp_out


def test_read_only_hooks_do_not_change_logits(model, ids):
    base = _logits(model, ids)
    seen: list[str] = []
    fns = {name: (lambda act, n=name: seen.append(n)) for name in hook_names(model)}
    with hooks(model, fns):
        assert torch.equal(_logits(model, ids), base)
    assert seen == hook_names(model)  # fired once each, in forward order


def test_hooks_are_removed_on_exceptions(model, ids):
    with pytest.raises(RuntimeError, match="boom"):
        with hooks(model, {"blocks.0.hook_resid_mid": lambda act: act * 2, FINAL_NORM_HOOK: lambda act: None}):
            raise RuntimeError("boom")
    assert _no_hooks_left(model)

    def explode(act):
        raise ValueError("inside the forward")

    with pytest.raises(ValueError, match="inside the forward"):
        with hooks(model, {"blocks.0.hook_mlp_out": explode}):
            _logits(model, ids)
    assert _no_hooks_left(model)


# ---------------------------------------------------------------------------- weights


def test_write_matrix_maps_neurons_into_the_residual(model, ids):
    family = family_by_name(model.family)
    acts = run_with_cache(model, ids, ["blocks.2.mlp.hook_post", "blocks.2.hook_mlp_out"])
    post, mlp_out = acts["blocks.2.mlp.hook_post"], acts["blocks.2.hook_mlp_out"]
    matrix = write_matrix(model, "blocks.2.mlp.hook_post")
    assert matrix.shape == (D_MLP, D_MODEL)
    block = blocks(model.hf, family)[2]
    down = submodule(block, family.mlp_down)
    with torch.no_grad():
        raw = down(post)
    if family.sandwich:  # post-norm: right up to the per-token 1/rms of the down projection
        eps = submodule(block, family.mlp_out_norm).eps
        assert _close(mlp_out, post @ matrix * torch.rsqrt(raw.pow(2).mean(-1, keepdim=True) + eps))
    else:
        bias = down.bias if down.bias is not None else 0
        assert _close(raw, post @ matrix + bias)
        assert _close(mlp_out, raw)
    matrix.zero_()  # a copy: the model is untouched
    assert _close(run_with_cache(model, ids, ["blocks.2.hook_mlp_out"])["blocks.2.hook_mlp_out"], mlp_out)


def test_write_matrix_identity_and_errors(model):
    for suffix in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"):
        assert write_matrix(model, f"blocks.1.{suffix}") is None
    assert write_matrix(model, FINAL_NORM_HOOK) is None
    with pytest.raises(InvalidInputError, match="mlp.hook_post"):
        write_matrix(model, "blocks.1.mlp.hook_pre")
    with pytest.raises(UnknownHookError):
        write_matrix(model, "blocks.9.mlp.hook_post")


def test_gemma_norm_scale_is_one_plus_w():
    m = tiny_model("gemma2")
    scale, _ = unembed(m)
    assert torch.equal(scale, m.hf.model.norm.weight + 1.0)
    assert math.isclose(family_by_name("gemma3").norm_offset, 1.0)
