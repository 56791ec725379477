"""`latentpedia demo --no-serve` on the embedded SmolLM2 (slow): the default atlas's shape, small
budget, without the offline explanations (the staged demo on the tiny model covers them with every
other stage: tests/test_demo_stages.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from latentpedia.dashboards import defaults
from latentpedia.store.api import Store
from latentpedia.train import atlas as default_saes

pytestmark = pytest.mark.slow


def test_demo_builds_the_default_atlas_once(tmp_path):
    env = {**os.environ, "LATENTPEDIA_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "latentpedia.cli", "demo", "--tokens", "2500", "--sae-tokens", "4096", "--no-explain", "--no-serve"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "forward pass" in first.stderr and "tok/s" in first.stderr  # the progress bar
    store = Store.open(f"sqlite:///{tmp_path}/atlas.db")
    sources = {s.name: s for s in store.list_sources("smollm2-135m")}
    neurons = [f"{layer}-mlp" for layer in defaults.NEURON_LAYERS]
    assert sorted(sources) == sorted(neurons + default_saes.default_sae_names())
    assert all(sources[n].status == "ready" and sources[n].d_sae == 1536 for n in neurons)
    for name, (hook, width) in zip(default_saes.default_sae_names(), default_saes.PAIRS):
        sae = sources[name]  # trained, evaluated, built from the cached activations
        assert sae.status == "ready" and sae.d_sae == width and sae.hook_name == hook
        assert 0 < sae.n_tokens <= 2500 and {"l0", "explained_variance", "ce_loss_recovered"} <= set(sae.meta["quality"])
    assert "no forward pass" in first.stderr
    assert not any(store.explained_indices(source.id) for source in sources.values())  # --no-explain
    corpus = store.list_corpora("smollm2-135m")[0]
    assert set(corpus.composition["tokens"]) == {"prose", "code"}
    manifests = list((tmp_path / "activations").glob("*/manifest.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["hooks"] == sorted(defaults.SAE_HOOKS)
    vocab = store.get_vocab("smollm2-135m")
    latent = store.get_latent(sources["8-mlp"].id, 0)
    assert len(vocab) == 49152 and latent["logits"]["basis"] == "final_norm_scale*W_U"
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "the default atlas is already built" in second.stderr, second.stderr
    assert "8-mlp" in second.stdout  # `info` at the end
