"""The embedded SmolLM2-135M: GGUF conversion, the float32 cache, BOS, hooks at full size (slow)."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from latentpedia.models import encode_text, hook_width, load_model, run_with_cache, unembed, write_matrix

pytestmark = pytest.mark.slow

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(model converted from the GGUF, cache dir, seconds it took). The 500 MB cache is removed after."""
    cache = tmp_path_factory.mktemp("smollm2-cache")
    start = time.perf_counter()
    model = load_model(cache_dir=cache)
    yield model, cache, time.perf_counter() - start
    shutil.rmtree(cache, ignore_errors=True)


def _logits(m, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return m.hf(input_ids=torch.tensor([ids])).logits


def test_embedded_model_shape(converted):
    m, _, _ = converted
    sizes = (m.id, m.family, m.n_layers, m.d_model, m.d_mlp, m.vocab_size)
    assert sizes == ("smollm2-135m", "llama", 30, 576, 1536, 49152)
    assert m.spec["kind"] == "embedded" and m.spec["path"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert m.hf.dtype == torch.float32 and not m.hf.training
    assert not any(p.requires_grad for p in m.hf.parameters())
    assert hook_width(m, "blocks.6.mlp.hook_post") == 1536
    assert write_matrix(m, "blocks.6.mlp.hook_post").shape == (1536, 576)
    scale, w_u = unembed(m)
    assert scale.shape == (576,) and w_u.shape == (49152, 576)


def test_cache_reload_is_fast_and_identical(converted):
    m, cache, convert_seconds = converted
    start = time.perf_counter()
    again = load_model(cache_dir=cache)
    reload_seconds = time.perf_counter() - start
    print(f"GGUF conversion {convert_seconds:.1f} s, cache reload {reload_seconds:.2f} s")
    assert again.spec == m.spec and again.bos_id == m.bos_id
    ids = encode_text(m, TEXT)
    assert encode_text(again, TEXT) == ids
    assert torch.equal(_logits(m, ids), _logits(again, ids))
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]


def test_bos_is_endoftext(converted):
    m, _, _ = converted
    assert m.bos_id == 0 == m.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = encode_text(m, TEXT)
    assert ids[0] == 0 and ids[1:] == m.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert 0 not in ids[1:] and encode_text(m, TEXT, add_bos=False) == ids[1:]
    assert m.tokenizer.decode(ids[1:]) == TEXT


def test_stop_early_matches_full_forward(converted):
    m, _, _ = converted
    ids = torch.tensor([encode_text(m, TEXT)] * 2)
    names = ["blocks.15.hook_resid_post", "blocks.6.mlp.hook_post"]
    early = run_with_cache(m, ids, names)
    full = run_with_cache(m, ids, names, stop_early=False)
    assert all(torch.equal(early[n], full[n]) for n in names)
    # the attention sink: with BOS first, position 0 dwarfs the others
    norms = early["blocks.15.hook_resid_post"][0].norm(dim=-1)
    assert norms[0] > 10 * norms[1:].median()
