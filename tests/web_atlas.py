"""The seeded atlas the web tests serve: the tiny LLaMA, two neuron sources, a small corpus.

Script payloads are planted in a corpus document and in vocabulary tokens so that every page
showing corpus or vocab text is an XSS test. `seed_atlas(url)` builds it into any store; the
SQLite copy is built once per test session (`sqlite_atlas`) and shared by the web test modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from latentpedia.dashboards.pipeline import BuildRequest, build
from latentpedia.store.api import Store
from tests.tiny import tiny_llama

PAYLOAD = "<script>alert(1)</script>"
SOURCES = ("1-mlp", "3-mlp")
N_TOKENS = 2000


@dataclass(frozen=True)
class SeededAtlas:
    url: str
    model: str
    sources: tuple[str, ...]
    payload_token_ids: tuple[int, ...]  # vocab entries replaced by PAYLOAD
    payload_feature: tuple[str, int]  # a latent with an example window containing the corpus PAYLOAD


def _corpus_file(folder: Path) -> Path:
    from latentpedia.corpus.default import pydoc_documents

    docs = [f"Hello {PAYLOAD} world & friends. {PAYLOAD} again."] + [d.text for d in pydoc_documents()[:8]]
    path = folder / "corpus.jsonl"
    path.write_text("\n".join(json.dumps({"text": text}) for text in docs))
    return path


def _plant_vocab_payload(store: Store, model: str, source_id: int) -> tuple[int, ...]:
    """Replace the vocab entries of latent 0's top promoted token and top-example max token."""
    latent = store.get_latent(source_id, 0)
    top = store.get_examples(source_id, 0, kind=0, with_tokens=True)[0]
    ids = (int(latent["logits"]["pos"][0][0]), int(top["tokens"][top["max_pos"]]))
    vocab = list(store.get_vocab(model))
    for token_id in ids:
        vocab[token_id] = PAYLOAD
    store.set_vocab(model, vocab)
    return ids


def _feature_showing_corpus_payload(store: Store, model: str) -> tuple[str, int]:
    """A (source, index) one of whose examples' windows holds the corpus payload."""
    from latentpedia.engine.tokens import TokenText

    text = TokenText(store.get_vocab(model))
    for name in SOURCES:
        source = store.get_source(model, name)
        for index in range(source.d_sae):
            for example in store.get_examples(source.id, index, with_tokens=True):
                if "<script>alert" in "".join(text.many(example["tokens"][1:])):
                    return name, index
    raise AssertionError("no example window holds the corpus payload")


def seed_atlas(url: str, folder: Path) -> SeededAtlas:
    """Build the seeded atlas into the store at `url` (`folder` keeps the model and corpus)."""
    folder.mkdir(parents=True, exist_ok=True)
    model_dir = tiny_llama(folder / "tiny")
    store = Store.open(url)
    try:
        request = BuildRequest(model=str(model_dir), sources=list(SOURCES), corpus=str(_corpus_file(folder)),
                               n_tokens=N_TOKENS, window_len=32, progress=False)  # fmt: skip
        build(store, request, log=lambda *_: None)
        model = store.list_models()[0].id
        feature = _feature_showing_corpus_payload(store, model)  # before the vocab is altered
        ids = _plant_vocab_payload(store, model, store.get_source(model, SOURCES[0]).id)
    finally:
        store.close()
    return SeededAtlas(url, model, SOURCES, ids, feature)


_SQLITE: dict[str, SeededAtlas] = {}


def sqlite_atlas(tmp_path_factory) -> SeededAtlas:
    """The SQLite seeded atlas, built on first use and shared by the whole test session."""
    if "atlas" not in _SQLITE:
        folder = tmp_path_factory.mktemp("web-atlas")
        _SQLITE["atlas"] = seed_atlas(f"sqlite:///{folder / 'atlas.db'}", folder)
    return _SQLITE["atlas"]


def backend_atlas(request, tmp_path_factory, name: str) -> Iterator[SeededAtlas]:
    """The seeded atlas on the backend of `request.param` ("sqlite": the session's shared copy;
    "postgres": seeded into a fresh schema), for a module fixture parametrised by BACKENDS."""
    from tests.conftest import pg_schema_url

    if request.param == "sqlite":
        yield sqlite_atlas(tmp_path_factory)
        return
    with pg_schema_url(request.getfixturevalue("pg_server_url")) as url:
        yield seed_atlas(url, Path(tmp_path_factory.mktemp(name)))


def atlas_model(atlas: SeededAtlas):
    """The atlas's tiny model, loaded the way the server loads it."""
    from latentpedia.models.loader import load_model

    store = Store.open(atlas.url)
    try:
        return load_model(store.get_model(atlas.model).spec["path"])
    finally:
        store.close()
