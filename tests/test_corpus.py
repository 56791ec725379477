"""Corpora: the default offline corpus, user corpus files, and packing into windows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentpedia.corpus.default import Document, default_documents, interleave, pydoc_documents
from latentpedia.corpus.readers import read_corpus
from latentpedia.corpus.windows import TokenizedCorpus, pack_windows
from latentpedia.errors import InvalidInputError


def char_tokenize(texts: list[str]) -> list[list[int]]:
    return [[3 + (ord(c) % 200) for c in t] for t in texts]


def test_default_corpus_mixes_prose_and_code_deterministically():
    prose, code = default_documents(seed=1)
    again_prose, _ = default_documents(seed=1)
    other_prose, _ = default_documents(seed=2)
    assert [d.origin for d in prose] == [d.origin for d in again_prose]
    assert [d.origin for d in prose] != [d.origin for d in other_prose]
    assert any(d.origin.startswith("pydoc:") for d in prose) and any(d.origin.startswith("stdlib-doc:") for d in prose)
    assert all(d.kind == "code" for d in code) and "def " in code[0].text + code[1].text + code[2].text
    assert len({d.text for d in prose}) == len(prose)  # deduplicated
    mixed = list(interleave(prose, code))[:200]
    chars = {k: sum(len(d.text) for d in mixed if d.kind == k) for k in ("prose", "code")}
    assert 0.7 < chars["prose"] / chars["code"] < 1.4


def test_pack_windows_puts_bos_first_and_separates_documents():
    docs = [Document("abcdef", "text", "a"), Document("ghij", "text", "b"), Document("klmnopqrstu", "text", "c")]
    corpus = pack_windows(docs, char_tokenize, bos_id=0, sep_id=1, window_len=5, max_tokens=12)
    assert corpus.windows.shape == (3, 5) and corpus.windows.dtype == np.int32
    assert (corpus.windows[:, 0] == 0).all()
    stream = corpus.windows[:, 1:].flatten().tolist()
    expected = char_tokenize(["abcdef"])[0] + [1] + char_tokenize(["ghij"])[0] + [1]
    assert stream == expected[:12]
    assert corpus.n_tokens == 12 and corpus.composition["tokens"]["text"] == 12
    again = pack_windows(docs, char_tokenize, bos_id=0, sep_id=1, window_len=5, max_tokens=12)
    assert again.content_hash == corpus.content_hash


def test_too_little_text_is_an_error():
    with pytest.raises(InvalidInputError, match="fewer tokens than one window"):
        pack_windows([Document("ab", "text", "a")], char_tokenize, bos_id=0, sep_id=1, window_len=10, max_tokens=100)


def test_reads_txt_jsonl_parquet_and_folders(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("plain text file")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "first"}) + "\n\n" + json.dumps({"text": "second"}) + "\n")
    pq.write_table(pa.table({"body": ["p1", "p2", None]}), tmp_path / "c.parquet")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    texts = [d.text for d in read_corpus(tmp_path / "b.jsonl")]
    assert texts == ["first", "second"]
    assert [d.text for d in read_corpus(tmp_path / "c.parquet", text_field="body")] == ["p1", "p2"]
    (tmp_path / "c.parquet").unlink()
    assert [d.text for d in read_corpus(tmp_path)] == ["plain text file", "first", "second"]


def test_reads_a_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["one", "two"], "n": [1, 2]}).save_to_disk(str(tmp_path / "ds"))
    assert [d.text for d in read_corpus(tmp_path / "ds")] == ["one", "two"]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"content": ["x"]})}).save_to_disk(str(tmp_path / "dd"))
    assert [d.text for d in read_corpus(tmp_path / "dd", text_field="content")] == ["x"]
    with pytest.raises(InvalidInputError, match="no column 'text'"):
        list(read_corpus(tmp_path / "dd"))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.txt", b"ok \xff\xfe broken", "not valid UTF-8 at byte 3"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": broken\n', "line 2 is not valid JSON"),
        ("bad2.jsonl", b'{"text": "ok"}\n{"body": "x"}\n', "line 2 has no string field 'text'"),
        ("bad.parquet", b"not parquet at all", "cannot read parquet file"),
        ("bad.csv", b"a,b", "unsupported corpus file type '.csv'"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidInputError) as err:
        list(read_corpus(path))
    assert message in str(err.value) and name in str(err.value)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        list(read_corpus(tmp_path / "nope"))
    with pytest.raises(InvalidInputError, match="no corpus files"):
        list(read_corpus(tmp_path))


def test_pydoc_topics_are_present():
    docs = pydoc_documents()
    assert len(docs) > 50 and all(d.kind == "prose" for d in docs)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from latentpedia.models.loader import load_model
    from tests.tiny import tiny_llama

    return load_model(tiny_llama(tmp_path_factory.mktemp("tiny") / "llama"))


def test_tokenized_windows_are_cached_until_an_input_changes(tiny_model, tmp_path, monkeypatch):
    """The second read of the same corpus comes from the cache (no tokenizing) with the same
    windows; a changed file, budget or window length is tokenized again."""
    from latentpedia import corpus as corpora
    from latentpedia.corpus import cache

    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    text = tmp_path / "texts.jsonl"
    text.write_text("\n".join(json.dumps({"text": d.text}) for d in pydoc_documents()[:40]))
    calls = []
    real = corpora.pack_windows
    monkeypatch.setattr(corpora, "pack_windows", lambda *a, **k: calls.append(1) or real(*a, **k))

    first = corpora.prepare_corpus(tiny_model, text, n_tokens=3000, window_len=32)
    again = corpora.prepare_corpus(tiny_model, text, n_tokens=3000, window_len=32)
    assert len(calls) == 1 and len(list(cache.cache_dir().glob("*.npz"))) == 1
    assert again.content_hash == first.content_hash and again.composition == first.composition
    assert again.spec == first.spec and np.array_equal(again.windows, first.windows)

    corpora.prepare_corpus(tiny_model, text, n_tokens=3000, window_len=16)
    corpora.prepare_corpus(tiny_model, text, n_tokens=2000, window_len=32)
    assert len(calls) == 3
    text.write_text(text.read_text().replace("the", "a"))  # new content: new size
    changed = corpora.prepare_corpus(tiny_model, text, n_tokens=3000, window_len=32)
    assert len(calls) == 4 and changed.content_hash != first.content_hash


def test_a_broken_cache_entry_is_tokenized_again(tiny_model, tmp_path, monkeypatch):
    from latentpedia import corpus as corpora
    from latentpedia.corpus import cache

    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    text = tmp_path / "a.txt"
    text.write_text(" ".join(d.text for d in pydoc_documents()[:5]))
    first = corpora.prepare_corpus(tiny_model, text, n_tokens=500, window_len=32)
    [entry] = cache.cache_dir().glob("*.npz")
    entry.write_bytes(b"not an npz file")
    again = corpora.prepare_corpus(tiny_model, text, n_tokens=500, window_len=32)
    assert np.array_equal(again.windows, first.windows)
    assert cache.load(entry.stem, TokenizedCorpus) is not None  # rewritten


def test_the_default_corpus_from_the_cache_equals_a_fresh_read(tiny_model, tmp_path, monkeypatch):
    from latentpedia.corpus import prepare_corpus
    from latentpedia.corpus.default import default_documents, interleave
    from latentpedia.corpus.windows import pack_windows

    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    fresh = pack_windows(interleave(*default_documents()), lambda texts: tiny_model.tokenizer(texts, add_special_tokens=False)["input_ids"],
                         bos_id=tiny_model.bos_id, sep_id=tiny_model.tokenizer.eos_token_id, window_len=64, max_tokens=5000)  # fmt: skip
    for _ in range(2):  # tokenized, then read from the cache
        got = prepare_corpus(tiny_model, n_tokens=5000, window_len=64)
        assert np.array_equal(got.windows, fresh.windows) and got.composition == fresh.composition


def test_stdlib_files_skip_tests_and_site_packages():
    from latentpedia.corpus.default import stdlib_files

    files = stdlib_files()
    assert len(files) > 300 and files == sorted(files)
    assert not any({"site-packages", "test", "tests", "__pycache__"} & set(p.parts) for p in files)


def test_parsed_stdlib_documents_are_kept_and_a_broken_file_is_parsed_again(tmp_path, monkeypatch):
    from latentpedia.corpus import cache, default

    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    parsed = []
    docs = ([Document("a docstring " * 20, "prose", "stdlib-doc:x.py")], [Document("def f(): pass\n" * 20, "code", "stdlib:x.py")])
    monkeypatch.setattr(default, "_parse_stdlib", lambda files: parsed.append(len(files)) or docs)
    default.stdlib_documents.cache_clear()
    try:
        first = default.stdlib_documents()
        default.stdlib_documents.cache_clear()
        again = default.stdlib_documents()
        assert parsed == [len(default.stdlib_files())] and again == first == (tuple(docs[0]), tuple(docs[1]))
        [kept] = cache.cache_dir().glob("documents-*.json.gz")
        kept.write_bytes(b"garbage")
        default.stdlib_documents.cache_clear()
        assert default.stdlib_documents() == first and len(parsed) == 2
    finally:
        default.stdlib_documents.cache_clear()
