"""Experiments on the real SmolLM2-135M (loaded from the shared float32 cache): the known
answers of tests/test_experiments.py at full size."""

from __future__ import annotations

import pytest
import torch

from latentpedia.dashboards.finalize import logit_effects
from latentpedia.experiments.common import Latent, prompt_ids, token_id
from latentpedia.experiments.lens import dla_components, latent_logit_effect, logit_lens
from latentpedia.experiments.patching import patch_run, patch_sweep
from latentpedia.experiments.steering import Steer, SteerConfig, steer
from latentpedia.models import load_model, unembed
from latentpedia.sources import NeuronSource

pytestmark = pytest.mark.slow

PROMPT = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


@pytest.fixture(scope="module")
def m():
    return load_model("smollm2-135m")


def test_strength_zero_is_default_and_strength_changes_it(m):
    latent = Latent(NeuronSource(m, 6), 100)
    config = SteerConfig(n_tokens=8, temperature=0.7, seed=11, stop_at_eos=False)
    out = {c.type: c.tokens for c in steer(m, "I think that", [Steer.from_latent(latent, 0.0)], config)}
    assert out["STEERED"] == out["DEFAULT"]
    out = {c.type: c.tokens for c in steer(m, "I think that", [Steer.from_latent(latent, 40.0)], config)}
    assert out["STEERED"] != out["DEFAULT"]


def test_ioi_patching_and_final_residual(m):
    a, b = prompt_ids(m, PROMPT), prompt_ids(m, CORRUPTED)
    assert len(a) == len(b)
    mary, john = token_id(m, " Mary"), token_id(m, " John")
    sweep = patch_sweep(m, a, b, mary, john, kind="resid_pre", layers=[0, 15, 29], batch_size=16)
    assert sweep.ld_clean > 0 > sweep.ld_corrupted  # the model does IOI
    differs = [p for p in range(len(a)) if a[p] != b[p]]
    assert sweep.scores[0][differs[0]] == pytest.approx(1.0, abs=1e-3)  # layer 0: the only differing token
    with torch.inference_mode():
        corrupted = m.hf(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(patch_run(m, a, b, ["blocks.29.hook_resid_post"]), corrupted, atol=1e-4)


def test_dla_sums_and_matches_feature_page(m):
    paris = token_id(m, " Paris")
    result = dla_components(m, "The capital of France is", paris)
    total = sum(i.contribution for i in result.items) + result.others + result.remainder
    assert total == pytest.approx(result.target_logit, abs=1e-4)
    assert abs(result.remainder) < 1e-2
    source = NeuronSource(m, 20)
    scale, W_U = unembed(m)
    effect = logit_effects(source.decoder()[5:6], scale, W_U, n=3)[0]
    for token, value in effect["pos"]:
        assert latent_logit_effect(Latent(source, 5), m, int(token)) == pytest.approx(value, abs=1e-4)
    lens = logit_lens(m, "The capital of France is", k=1, layers=[29])
    assert lens.top_ids[0][-1][0] == paris
