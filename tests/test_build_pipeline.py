"""The whole build on a tiny model: statistics against brute force, resume after kill -9,
import-sae, the activation cache and clear errors. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentpedia.dashboards.pipeline import BuildRequest, activation_dir, build
from latentpedia.models.hooks import run_with_cache
from latentpedia.models.loader import load_model
from latentpedia.store.api import Store
from tests.sae_builders import random_sae, write_saelens
from tests.tiny import D_MODEL, tiny_llama

N_TOKENS = 6000


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    from latentpedia.corpus.default import pydoc_documents

    path = tmp_path_factory.mktemp("corpus") / "topics.jsonl"
    path.write_text("\n".join(json.dumps({"text": d.text}) for d in pydoc_documents()))
    return path


@pytest.fixture(scope="session")
def sae_dir(tmp_path_factory) -> Path:
    ref = random_sae("topk", d_in=D_MODEL, d_sae=96, k=6, seed=3)
    return write_saelens(tmp_path_factory.mktemp("sae") / "res-topk", ref, hook_name="blocks.2.hook_resid_post")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def cli(args: list[str], home: Path, *, crash: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "LATENTPEDIA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("LATENTPEDIA_CRASH_AT", None)
    if crash:
        env["LATENTPEDIA_CRASH_AT"] = crash
    proc = subprocess.run([sys.executable, "-m", "latentpedia.cli", *args], env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def build_args(tiny_dir: Path, corpus_file: Path, sae_dir: Path, db: str) -> list[str]:
    return [
        "build", "--model", str(tiny_dir), "--layers", "1,3", "--source", str(sae_dir), "--corpus", str(corpus_file),
        "--tokens", str(N_TOKENS), "--window", "32", "--batch-size", "4", "--checkpoint-seconds", "0",
        "--no-progress", "--db", db,
    ]  # fmt: skip


def dump(url: str) -> dict:
    """Everything a build writes, without timestamps."""
    store = Store.open(url)
    out = {}
    for src in store.list_sources():
        latents = store.list_latents(src.id, limit=10**6)
        examples = [store.get_examples(src.id, lat["idx"]) for lat in latents]
        out[src.name] = {
            "source": (src.kind, src.hook_name, src.d_sae, src.status, src.n_tokens),
            "latents": [{**lat, **store.get_latent(src.id, lat["idx"])} for lat in latents],
            "examples": examples,
        }
    store.close()
    return out


@pytest.fixture(scope="module")
def reference(tiny_dir, corpus_file, sae_dir, tmp_path_factory) -> dict:
    """An uninterrupted build (SQLite), the reference every interrupted build must equal."""
    home = tmp_path_factory.mktemp("reference")
    url = f"sqlite:///{home}/ref.db"
    cli(build_args(tiny_dir, corpus_file, sae_dir, url), home)
    return dump(url)


def test_statistics_match_a_brute_force_pass(db_url, home, tiny_dir, corpus_file, sae_dir):
    from latentpedia.sources import load_sae

    store = Store.open(db_url)
    request = BuildRequest(model=str(tiny_dir), sources=["1-mlp", str(sae_dir)], corpus=str(corpus_file), n_tokens=N_TOKENS, window_len=32, progress=False)
    summary = build(store, request, log=lambda *_: None)
    assert summary["built"] == ["1-mlp", "2-res-topk-96"]
    model = load_model(tiny_dir)
    corpus = store.list_corpora(model.id)[0]
    windows = store.get_windows(corpus.id, np.arange(corpus.n_windows))
    acts = run_with_cache(model, torch.from_numpy(windows).long(), ["blocks.1.mlp.hook_post", "blocks.2.hook_resid_post"])
    neurons = acts["blocks.1.mlp.hook_post"][:, 1:, :]
    latents = load_sae(sae_dir).encode(acts["blocks.2.hook_resid_post"])[:, 1:, :]
    for name, x in (("1-mlp", neurons), ("2-res-topk-96", latents)):
        src = store.get_source(model.id, name)
        assert src.status == "ready" and src.n_tokens == x.shape[0] * x.shape[1]
        rows = {r["idx"]: r for r in store.list_latents(src.id, limit=10**6)}
        flat = x.reshape(-1, x.shape[-1])
        np.testing.assert_allclose([rows[i]["max_act"] for i in range(flat.shape[1])], flat.max(0).values, rtol=1e-5)
        np.testing.assert_allclose([rows[i]["frac_nonzero"] for i in range(flat.shape[1])], (flat > 0).float().mean(0), rtol=1e-5)
        best = int(flat.max(0).values.argmax())
        top = [e for e in store.get_examples(src.id, best) if e["kind"] == 0]
        assert top[0]["window"] == int(x[:, :, best].max(1).values.argmax())
        assert top[0]["max_value"] == pytest.approx(float(flat[:, best].max()), rel=1e-2)
        assert len(top) == min(32, int((x[:, :, best].max(1).values > 0).sum()))
    assert store.list_jobs()[0].status == "done"


@pytest.mark.parametrize("crash", ["batch:5", "checkpoint:3", "write:2"])
def test_resume_after_kill_equals_uninterrupted_build(crash, db_url, tmp_path, tiny_dir, corpus_file, sae_dir, reference):
    args = build_args(tiny_dir, corpus_file, sae_dir, db_url)
    killed = cli(args, tmp_path, crash=crash, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert dump(db_url) != reference  # the crash really interrupted the build
    cli(args, tmp_path)
    assert dump(db_url) == reference
    assert not list((tmp_path / "work").glob("build-*/checkpoint.pt"))


def test_kill_at_random_moments_then_resume(tmp_path, tiny_dir, corpus_file, sae_dir, reference):
    url = f"sqlite:///{tmp_path}/atlas.db"
    args = [sys.executable, "-m", "latentpedia.cli", *build_args(tiny_dir, corpus_file, sae_dir, url)]
    env = {**os.environ, "LATENTPEDIA_HOME": str(tmp_path)}
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=float(rng.uniform(3, 9)))
            break
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    cli(args[3:], tmp_path)
    assert dump(url) == reference


def test_import_sae_builds_over_the_atlas_corpus(db_url, tmp_path, tiny_dir, corpus_file):
    cli(["build", "--model", str(tiny_dir), "--layers", "0", "--corpus", str(corpus_file), "--tokens", "2000", "--no-progress", "--db", db_url], tmp_path)
    folder = write_saelens(tmp_path / "my-sae", random_sae("jumprelu", d_in=D_MODEL, d_sae=80, seed=5), hook_name="blocks.1.hook_resid_post")
    out = cli(["import-sae", str(folder), "--model", str(tiny_dir), "--name", "1-res-mine", "--no-progress", "--db", db_url], tmp_path)
    assert "saelens" in out.stderr and "1-res-mine" in out.stderr
    store = Store.open(db_url)
    neurons, sae = store.get_source("tiny-llama", "0-mlp"), store.get_source("tiny-llama", "1-res-mine")
    assert sae.status == "ready" and sae.d_sae == 80 and sae.corpus_id == neurons.corpus_id
    assert store.count_latents(sae.id) == 80 and store.count_examples(sae.id) > 0
    quality = sae.meta["quality"]  # evaluated right after the import
    assert {"l0", "explained_variance", "ce_loss_recovered", "dead_fraction"} <= set(quality) and quality["tokens"] > 0
    info = cli(["info", "--db", db_url], tmp_path)
    assert "1-res-mine" in info.stdout and "ready" in info.stdout


def test_malformed_sae_is_refused_and_writes_nothing(db_url, tmp_path, tiny_dir):
    import safetensors.torch as st

    folder = write_saelens(tmp_path / "bad-sae", random_sae("relu", d_in=D_MODEL, d_sae=32), hook_name="blocks.1.hook_resid_post")
    weights = st.load_file(folder / "sae_weights.safetensors")
    weights["W_dec"][3, 4] = float("nan")
    st.save_file(weights, str(folder / "sae_weights.safetensors"))
    out = cli(["import-sae", str(folder), "--model", str(tiny_dir), "--db", db_url], tmp_path, check=False)
    assert out.returncode == 2
    assert "sae_weights.safetensors" in out.stderr and "NaN" in out.stderr
    assert Store.open(db_url).list_sources() == []


def test_sae_for_another_width_is_refused(tmp_path, tiny_dir):
    folder = write_saelens(tmp_path / "wide", random_sae("relu", d_in=D_MODEL * 2, d_sae=32), hook_name="blocks.1.hook_resid_post")
    out = cli(["import-sae", str(folder), "--model", str(tiny_dir)], tmp_path, check=False)
    assert out.returncode == 2 and "d_in is 128" in out.stderr and "width 64" in out.stderr


def test_unknown_layer_is_a_clear_error(tmp_path, tiny_dir):
    out = cli(["build", "--model", str(tiny_dir), "--layers", "9"], tmp_path, check=False)
    assert out.returncode == 2 and "layer 9 does not exist" in out.stderr


def test_activation_cache_holds_the_hook_activations(home, tiny_dir, corpus_file):
    store = Store.open(f"sqlite:///{home}/atlas.db")
    request = BuildRequest(
        model=str(tiny_dir), sources=["0-mlp"], corpus=str(corpus_file), n_tokens=1500, window_len=32, progress=False,
        cache_hooks=["blocks.2.hook_resid_post"], cache_tokens=1000, checkpoint_seconds=0,
    )  # fmt: skip
    build(store, request, log=lambda *_: None)
    model = load_model(tiny_dir)
    corpus = store.list_corpora(model.id)[0]
    folder = activation_dir(model.id, corpus.content_hash)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["tokens"] == 1000 and manifest["hooks"] == ["blocks.2.hook_resid_post"]
    from safetensors.torch import load_file

    shards = sorted(folder.glob("shard-*.safetensors"))
    cached = torch.cat([load_file(s)["blocks.2.hook_resid_post"] for s in shards])
    windows = store.get_windows(corpus.id, np.arange(corpus.n_windows))
    expected = run_with_cache(model, torch.from_numpy(windows).long(), ["blocks.2.hook_resid_post"])["blocks.2.hook_resid_post"]
    expected = expected[:, 1:, :].reshape(-1, D_MODEL)[:1000]
    assert cached.shape == (1000, D_MODEL)
    torch.testing.assert_close(cached.float(), expected, atol=1e-2, rtol=1e-2)
    again = build(store, request, log=lambda *_: None)
    assert again["built"] == []  # nothing left to do


def test_sae_dashboards_from_cached_activations_match_a_forward_pass(db_url, home, tiny_dir, corpus_file, sae_dir):
    """A source whose hook is cached is built from the cache (no forward pass) over the windows
    the cache covers, with the statistics of a forward pass over those windows."""
    from latentpedia.sources import load_sae

    store = Store.open(db_url)
    base = dict(model=str(tiny_dir), corpus=str(corpus_file), n_tokens=1500, window_len=32, progress=False, checkpoint_seconds=0)
    build(store, BuildRequest(sources=["0-mlp"], cache_hooks=["blocks.2.hook_resid_post"], cache_tokens=1000, **base), log=lambda *_: None)
    messages: list[str] = []
    summary = build(store, BuildRequest(sources=[str(sae_dir)], from_cache=True, **base), log=messages.append)
    assert summary["built"] == ["2-res-topk-96"] and any("no forward pass" in m for m in messages)
    model = load_model(tiny_dir)
    corpus = store.list_corpora(model.id)[0]
    n_windows = 1000 // 31  # whole windows the cache covers
    windows = store.get_windows(corpus.id, np.arange(n_windows))
    resid = run_with_cache(model, torch.from_numpy(windows).long(), ["blocks.2.hook_resid_post"])["blocks.2.hook_resid_post"]
    latents = load_sae(sae_dir).encode(resid)[:, 1:, :].reshape(-1, 96)
    src = store.get_source(model.id, "2-res-topk-96")
    assert src.status == "ready" and src.n_tokens == n_windows * 31
    rows = {r["idx"]: r for r in store.list_latents(src.id, limit=10**6)}
    np.testing.assert_allclose([rows[i]["max_act"] for i in range(96)], latents.max(0).values, rtol=2e-2, atol=2e-2)
    fired = np.array([rows[i]["frac_nonzero"] for i in range(96)])
    assert np.abs(fired - (latents > 0).float().mean(0).numpy()).max() < 0.02  # float16 inputs flip a few TopK choices
