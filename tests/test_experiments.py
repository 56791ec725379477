"""Experiments engine (steering, ablation, patching, logit lens, DLA) against known answers,
on the tiny random LLaMA (fast); a few checks on the real SmolLM2 are marked slow."""

from __future__ import annotations

import math

import pytest
import torch

from latentpedia.dashboards.finalize import logit_effects
from latentpedia.errors import InvalidInputError, UnknownHookError
from latentpedia.experiments.ablation import ablate
from latentpedia.experiments.common import Latent, prompt_ids
from latentpedia.experiments.lens import dla_components, dla_latent, dla_source, latent_logit_effect, logit_lens
from latentpedia.experiments.patching import patch_latent, patch_run, patch_sweep
from latentpedia.experiments.steering import Steer, SteerConfig, generate, steer, steer_stream
from latentpedia.models import load_model, run_with_cache, unembed
from latentpedia.sources import NeuronSource
from latentpedia.sources.sae import SAESource, SAEWeights
from tests.tiny import D_MODEL, tiny_llama

PROMPT = "The function returns a list of the values"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama"))


@pytest.fixture(scope="module")
def sae(tiny):
    """A random ReLU SAE on layer 1's residual stream: some latents active, some never."""
    g = torch.Generator().manual_seed(0)
    d_sae = 96
    W_enc = torch.randn(D_MODEL, d_sae, generator=g) / math.sqrt(D_MODEL)
    b_enc = torch.zeros(d_sae)
    b_enc[d_sae // 2 :] = -1e6  # the second half can never fire
    W_dec = torch.randn(d_sae, D_MODEL, generator=g) / math.sqrt(D_MODEL)
    weights = SAEWeights("relu", W_enc, b_enc, W_dec, torch.zeros(D_MODEL))
    return SAESource(weights, "blocks.1.hook_resid_post", source_id="1-res-test")


def _neuron(tiny, layer=1, index=3):
    return Latent(NeuronSource(tiny, layer), index)


# ---------------------------------------------------------------------------- steering


def test_strength_zero_equals_default_generation(tiny):
    config = SteerConfig(n_tokens=12, temperature=1.0, seed=7, stop_at_eos=False)
    for method in ("additive", "orthogonal"):
        config.method = method
        out = steer(tiny, PROMPT, [Steer.from_latent(_neuron(tiny), 0.0)], config)
        by_type = {c.type: c.tokens for c in out}
        assert by_type["STEERED"] == by_type["DEFAULT"]
        assert len(by_type["DEFAULT"]) == 12


def test_same_seed_same_sample_and_steering_changes_it(tiny):
    config = SteerConfig(n_tokens=10, temperature=1.0, seed=3, stop_at_eos=False, types=["STEERED"])
    ids = prompt_ids(tiny, PROMPT)
    default = list(generate(tiny, ids, config))
    assert default == list(generate(tiny, ids, config))
    strong = [Steer.from_latent(_neuron(tiny), 200.0)]
    assert steer(tiny, PROMPT, strong, config)[0].tokens != default


def test_kv_cache_generation_matches_full_recompute(tiny):
    """Greedy steered generation with the KV cache equals re-running the whole sequence."""
    latent = _neuron(tiny)
    config = SteerConfig(n_tokens=6, stop_at_eos=False)
    ids = prompt_ids(tiny, PROMPT)
    steers = [Steer.from_latent(latent, 30.0)]
    cached = list(generate(tiny, ids, config, steers))
    from latentpedia.models import hooks

    seq = list(ids)
    for _ in range(6):
        fn = lambda x: x + 30.0 * latent.direction()  # noqa: E731
        with torch.inference_mode(), hooks(tiny, {latent.source.output_hook: fn}):
            seq.append(int(tiny.hf(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
    assert cached == seq[len(ids) :]


def test_steering_only_chosen_positions(tiny):
    latent = _neuron(tiny)
    ids = prompt_ids(tiny, PROMPT)
    n = len(ids)
    # a position past the generated tokens: nothing changes; the last prompt token: it does
    far = SteerConfig(n_tokens=5, stop_at_eos=False, positions=[n + 50])
    got = {c.type: c.tokens for c in steer(tiny, ids, [Steer.from_latent(latent, 500.0)], far)}
    assert got["STEERED"] == got["DEFAULT"]
    near = SteerConfig(n_tokens=5, stop_at_eos=False, positions=[-1])
    got = {c.type: c.tokens for c in steer(tiny, ids, [Steer.from_latent(latent, 500.0)], near)}
    assert got["STEERED"][0] != got["DEFAULT"][0]


def test_steer_methods_math():
    from latentpedia.experiments.steering import steer_delta

    x = torch.tensor([[[3.0, 4.0], [-2.0, 1.0]]])
    v = torch.tensor([1.0, 0.0])
    assert torch.equal(steer_delta(x, v, 2.0, "additive")[0, 0], torch.tensor([2.0, 0.0]))
    assert torch.allclose(x + steer_delta(x, v, -1.0, "orthogonal"), torch.tensor([[[0.0, 4.0], [0.0, 1.0]]]))
    capped = x + steer_delta(x, v, 1.0, "projection_cap")  # floor at 1
    assert torch.allclose(capped, torch.tensor([[[3.0, 4.0], [1.0, 1.0]]]))
    ceiling = x + steer_delta(x, v, -1.0, "projection_cap")  # ceiling at -1
    assert torch.allclose(ceiling, torch.tensor([[[-1.0, 4.0], [-2.0, 1.0]]]))


def test_stream_interleaves_and_ends_with_done(tiny):
    config = SteerConfig(n_tokens=3, stop_at_eos=False)
    events = list(steer_stream(tiny, PROMPT, [Steer.from_latent(_neuron(tiny), 5.0)], config))
    assert [e["type"] for e in events[:2]] == ["STEERED", "DEFAULT"]
    assert sum(1 for e in events if e.get("done")) == 2


@pytest.mark.parametrize(
    "steers,config,message",
    [
        (lambda m: [Steer("blocks.99.hook_resid_post", torch.zeros(D_MODEL), 1.0)], SteerConfig(), "unknown hook"),
        (lambda m: [Steer.from_latent(_neuron(m), float("nan"))], SteerConfig(), "finite"),
        (lambda m: [Steer("blocks.0.hook_resid_post", torch.ones(5), 1.0)], SteerConfig(), "width"),
        (lambda m: [Steer.from_latent(_neuron(m), 1.0)], SteerConfig(method="bogus"), "unknown steering method"),
        (lambda m: [Steer.from_latent(_neuron(m), 1.0)], SteerConfig(temperature=float("nan")), "finite"),
        (lambda m: [], SteerConfig(), "nothing to steer"),
    ],
)
def test_steering_bad_input(tiny, steers, config, message):
    with pytest.raises((InvalidInputError, UnknownHookError), match=message):
        steer(tiny, PROMPT, steers(tiny), config)


def test_bad_latent_and_too_long_prompt(tiny):
    with pytest.raises(InvalidInputError, match="does not exist"):
        Latent(NeuronSource(tiny, 1), 10_000)
    with pytest.raises(InvalidInputError, match="too long"):
        prompt_ids(tiny, list(range(5)) * 200)


# ---------------------------------------------------------------------------- ablation


def test_ablating_an_inactive_latent_changes_nothing(tiny, sae):
    ids = prompt_ids(tiny, PROMPT)
    latent = Latent(sae, 90)  # in the never-firing half
    for mode, kw in (("zero", {}), ("mean", {"mean": 0.0})):
        result = ablate(tiny, latent, ids, mode=mode, targets=[5], **kw)
        assert result.loss_before == result.loss_after
        assert result.targets[5]["before"] == result.targets[5]["after"]


def test_zero_ablating_a_neuron_equals_editing_it_in_place(tiny):
    latent = _neuron(tiny, 2, 7)
    ids = prompt_ids(tiny, PROMPT)
    result = ablate(tiny, latent, ids, mode="zero", positions=list(range(len(ids))))
    from latentpedia.models import hooks

    def zero(x):
        x = x.clone()
        x[..., 7] = 0
        return x

    with torch.inference_mode(), hooks(tiny, {"blocks.2.mlp.hook_post": zero}):
        logp = torch.log_softmax(tiny.hf(input_ids=torch.tensor([ids])).logits[0], -1)
    expect = [-float(logp[p, ids[p + 1]]) for p in range(len(ids) - 1)]
    assert result.loss_after[:-1] == pytest.approx(expect, abs=1e-4)
    assert result.loss_after != result.loss_before


def test_sae_ablation_keeps_the_error_term(tiny, sae):
    """Zero-ablating an SAE latent moves the residual by exactly -act * decoder row."""
    ids = prompt_ids(tiny, PROMPT)
    acts = sae.encode(run_with_cache(tiny, [ids], [sae.hook_name])[sae.hook_name])[0]
    index = int(acts[1:].sum(0).argmax())
    latent = Latent(sae, index)
    from latentpedia.experiments.common import latent_edit
    from latentpedia.models import hooks

    seen = {}
    fns = latent_edit(latent, torch.zeros_like)
    edit = fns[sae.hook_name]
    with torch.inference_mode(), hooks(tiny, {sae.hook_name: lambda x: seen.setdefault("y", edit(x))}):
        tiny.hf(input_ids=torch.tensor([ids]))
    x = run_with_cache(tiny, [ids], [sae.hook_name])[sae.hook_name]
    expected = x - acts[None, :, index, None] * sae.decoder()[index]
    assert torch.allclose(seen["y"], expected, atol=1e-6)


def test_mean_and_resample_ablation(tiny):
    latent = _neuron(tiny)
    ids = prompt_ids(tiny, PROMPT)
    windows = torch.tensor([prompt_ids(tiny, "def f(x): return x + 1 if x else None")] * 3)
    mean = ablate(tiny, latent, ids, mode="mean", resample_from=windows, targets=[7])
    assert len(set(mean.replaced[1:])) == 1 and len(mean.loss_after) == len(ids)
    res = ablate(tiny, latent, ids, mode="resample", resample_from=windows, seed=1)
    assert res.replaced != res.activations
    with pytest.raises(InvalidInputError, match="needs corpus windows"):
        ablate(tiny, latent, ids, mode="resample")
    with pytest.raises(InvalidInputError, match="unknown ablation mode"):
        ablate(tiny, latent, ids, mode="nope")


# ---------------------------------------------------------------------------- patching


def test_patching_clean_into_clean_is_identity(tiny):
    ids = prompt_ids(tiny, PROMPT)
    hooks_ = [f"blocks.{L}.hook_resid_pre" for L in range(tiny.n_layers)]
    with torch.inference_mode():
        clean = tiny.hf(input_ids=torch.tensor([ids])).logits[0]
    assert torch.equal(patch_run(tiny, ids, ids, hooks_), clean)


def test_full_patch_of_final_residual_reproduces_corrupted_logits(tiny):
    a = prompt_ids(tiny, PROMPT)
    b = prompt_ids(tiny, "The function returns a list of the names")
    assert len(a) == len(b)
    with torch.inference_mode():
        corrupted = tiny.hf(input_ids=torch.tensor([b])).logits[0]
    last = f"blocks.{tiny.n_layers - 1}.hook_resid_post"
    assert torch.allclose(patch_run(tiny, a, b, [last]), corrupted, atol=1e-5)


def _pair(tiny):
    """Prompts that differ in their last token only."""
    a = prompt_ids(tiny, PROMPT)
    b = [*a[:-1], (a[-1] + 1) % tiny.vocab_size]
    with torch.inference_mode():
        la = tiny.hf(input_ids=torch.tensor([a])).logits[0, -1]
    answer, foil = [int(i) for i in torch.topk(la, 2).indices]
    return a, b, answer, foil


def test_patch_sweep_batched_equals_one_by_one(tiny):
    a, b, answer, foil = _pair(tiny)
    batched = patch_sweep(tiny, a, b, answer, foil, kind="resid_pre", batch_size=7)
    single = patch_sweep(tiny, a, b, answer, foil, kind="resid_pre", batch_size=1, skip_layers=False)
    assert torch.allclose(torch.tensor(batched.scores), torch.tensor(single.scores), atol=1e-4)
    assert batched.n_forward < single.n_forward
    for kind in ("resid_post", "mlp_out"):  # batches starting mid-model == whole runs
        fast = patch_sweep(tiny, a, b, answer, foil, kind=kind, batch_size=3)
        slow = patch_sweep(tiny, a, b, answer, foil, kind=kind, batch_size=3, skip_layers=False)
        assert torch.allclose(torch.tensor(fast.scores), torch.tensor(slow.scores), atol=1e-4)
    # resid_pre of layer 0 at the differing (last) position restores the clean run fully
    assert batched.scores[0][-1] == pytest.approx(1.0, abs=1e-4)
    assert all(v == 0.0 for v in batched.scores[0][:-1])  # identical prefix: nothing to restore
    for kind in ("resid_post", "attn_out", "mlp_out"):
        sweep = patch_sweep(tiny, a, b, answer, foil, kind=kind, layers=[0, 2])
        assert len(sweep.scores) == 2 and len(sweep.scores[0]) == len(a)


def test_layer_skipping_starts_from_the_cached_residual(tiny):
    from latentpedia.experiments.patching import _Starts

    a, b, answer, foil = _pair(tiny)
    with torch.inference_mode():
        expected = tiny.hf(input_ids=torch.tensor([b])).logits[0, -1]
    starts = _Starts(tiny, b, expected)
    assert starts.cache, "the LLaMA family can start mid-model"
    got = starts.logits(tiny, torch.tensor([b, b]), 2, {})
    assert torch.allclose(got, expected.expand(2, -1), atol=1e-4)
    assert len(list(tiny.hf.model.layers)) == tiny.n_layers  # the block list is restored


def test_patch_latent_and_bad_input(tiny, sae):
    a, b, answer, foil = _pair(tiny)
    sweep = patch_latent(tiny, _neuron(tiny, 0, 1), a, b, answer, foil, batch_size=4)
    assert len(sweep.scores[0]) == len(a) and all(math.isfinite(v) for v in sweep.scores[0])
    with pytest.raises(InvalidInputError, match="same number of tokens"):
        patch_sweep(tiny, a, a[:-1], answer, foil)
    with pytest.raises(InvalidInputError, match="unknown hook kind"):
        patch_sweep(tiny, a, b, answer, foil, kind="resid_mid2")
    with pytest.raises(InvalidInputError, match="same logit difference"):
        patch_sweep(tiny, a, a, answer, foil)


# ---------------------------------------------------------------------------- lens and DLA


def test_logit_lens_last_layer_is_the_model_output(tiny):
    ids = prompt_ids(tiny, PROMPT)
    lens = logit_lens(tiny, ids, k=3, target=5)
    with torch.inference_mode():
        top = torch.topk(tiny.hf(input_ids=torch.tensor([ids])).logits[0], 3, dim=-1).indices
    assert lens.top_ids[-1] == top.tolist()
    assert len(lens.top_ids) == tiny.n_layers and len(lens.target_probs[0]) == len(ids)


def test_dla_components_sum_to_target_logit(tiny):
    result = dla_components(tiny, PROMPT, target=11)
    total = sum(i.contribution for i in result.items) + result.others + result.remainder
    assert total == pytest.approx(result.target_logit, abs=1e-6)
    assert abs(result.remainder) < 1e-3  # LLaMA: no biases; the pieces alone give the logit
    assert len(result.items) == 1 + 2 * tiny.n_layers


def test_dla_of_source_sums_to_target_logit(tiny, sae):
    result = dla_source(tiny, sae, PROMPT, target=11, top=5)
    total = sum(i.contribution for i in result.items) + result.others + result.remainder
    assert total == pytest.approx(result.target_logit, abs=1e-5)
    assert len(result.items) == 5
    assert all(i.activation != 0 for i in result.items)


def test_dla_of_latent_equals_feature_page_logit_effects(tiny):
    source = NeuronSource(tiny, 2)
    scale, W_U = unembed(tiny)
    effects = logit_effects(source.decoder()[:4], scale, W_U, n=3)
    for index, effect in enumerate(effects):
        latent = Latent(source, index)
        for token, value in effect["pos"] + effect["neg"]:
            assert latent_logit_effect(latent, tiny, int(token)) == pytest.approx(value, abs=1e-4)
    per_pos = dla_latent(tiny, Latent(source, 1), PROMPT, target=int(effects[1]["pos"][0][0]))
    assert per_pos["per_unit"] == pytest.approx(effects[1]["pos"][0][1], abs=1e-4)
    assert len(per_pos["contributions"]) == len(per_pos["tokens"])


def test_patching_on_gpt2_falls_back_to_whole_runs():
    """GPT-2 adds position embeddings inside its forward: starting mid-model would add them
    twice, the self-check sees it and every batch runs whole; results stay exact."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from latentpedia.experiments.patching import _Starts
    from latentpedia.models import LoadedModel

    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=3, n_head=4, vocab_size=100, n_positions=64, bos_token_id=1, eos_token_id=2)
    m = LoadedModel.from_hf(GPT2LMHeadModel(config), id="tiny-gpt2")
    a = [1, 5, 6, 7, 8, 9]
    b = [1, 5, 6, 7, 8, 10]
    with torch.inference_mode():
        logits = m.hf(input_ids=torch.tensor([a, b])).logits[:, -1]
    assert not _Starts(m, b, logits[1]).cache
    answer, foil = int(torch.argmax(logits[0] - logits[1])), int(torch.argmin(logits[0] - logits[1]))
    fast = patch_sweep(m, a, b, answer, foil, batch_size=4)
    slow = patch_sweep(m, a, b, answer, foil, batch_size=1, skip_layers=False)
    assert torch.allclose(torch.tensor(fast.scores), torch.tensor(slow.scores), atol=1e-4)
    assert fast.scores[0][-1] == pytest.approx(1.0, abs=1e-4)
