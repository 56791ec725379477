"""The feature JSON (the `FeaturePage` of `feature_page_data`, its static part cached as bytes,
the community parts spliced in per request) parses to exactly the page data's dump for every
latent of the seeded atlas, on SQLite and PostgreSQL: before and after explanations and comments
are added, after the source's metadata changes and after the source is rebuilt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentpedia.store.api import Store
from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults
from latentpedia.web import create_app
from latentpedia.web.featurejson import FeatureJson, static_json
from latentpedia.web.pages import feature_page_data
from latentpedia.web.pages.feature import COMMUNITY_FIELDS, feature_page
from latentpedia.web.pages.common import NotFoundError
from latentpedia.web.pages.feature_reader import FeatureReader, LRUCache, ObjectIds
from latentpedia.web.schemas import FeaturePage
from latentpedia.engine.tokens import TokenText
from tests.conftest import BACKENDS, pg_schema_url
from tests.web_atlas import SeededAtlas, seed_atlas, sqlite_atlas


@pytest.fixture(scope="module", params=BACKENDS)
def atlas(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[SeededAtlas]:
    if request.param == "sqlite":  # a copy: this module writes explanations
        folder = tmp_path_factory.mktemp("featurejson")
        yield seed_atlas(f"sqlite:///{folder / 'atlas.db'}", Path(folder))
        return
    with pg_schema_url(request.getfixturevalue("pg_server_url")) as url:
        yield seed_atlas(url, Path(tmp_path_factory.mktemp("featurejson-pg")))


@pytest.fixture(scope="module")
def store(atlas) -> Iterator[Store]:
    opened = Store.open(atlas.url)
    yield opened
    opened.close()


def test_every_latent_matches_the_page_data(atlas, store):
    text = TokenText(store.get_vocab(atlas.model))
    fast = FeatureJson()
    for source in atlas.sources:
        for index in range(store.get_source(atlas.model, source).d_sae):
            expected = feature_page_data(store, atlas.model, source, index, text).model_dump(mode="json")
            assert json.loads(fast.body(store, text, atlas.model, source, index)) == expected, (source, index)
            assert json.loads(fast.body(store, text, atlas.model, source, index)) == expected  # from the cache


def test_page_data_built_without_validation_is_what_validation_gives(atlas, store):
    """Activations are built without validation (`model_copy(update=...)`): validating their
    dump changes nothing (not even an int where a float belongs, which the JSON text shows)."""
    reader, kinds = FeatureReader(), set()
    for source in atlas.sources:
        for index in (0, 5, 9):
            page = feature_page_data(store, atlas.model, source, index, reader=reader)
            kinds.update(a.kind for a in page.activations)
            assert FeaturePage.model_validate(page.model_dump()).model_dump_json() == page.model_dump_json()
    assert kinds == {"top", "quantile"}


def test_window_json_is_spliced_only_for_the_windows_own_lists(atlas, store):
    """`static_json` takes an activation's tokens from its window's cached JSON only when they
    are that window's lists; a changed page is dumped by pydantic as it is."""
    reader = FeatureReader()
    inputs = reader.read(store, atlas.model, atlas.sources[0], 4)
    page = feature_page(inputs)
    assert json.loads(static_json(page, inputs.windows)) == page.model_dump(mode="json", exclude=COMMUNITY_FIELDS)
    changed = page.model_copy(update={"activations": [a.model_copy(update={"tokens": ["x"] * len(a.tokens)}) for a in page.activations]})
    assert json.loads(static_json(changed, inputs.windows)) == changed.model_dump(mode="json", exclude=COMMUNITY_FIELDS)
    assert all(a["tokens"] == ["x"] * len(a["tokens"]) for a in json.loads(static_json(changed, inputs.windows))["activations"])


def test_shared_reader_gives_the_same_pages_as_a_fresh_one(atlas, store):
    text = TokenText(store.get_vocab(atlas.model))
    shared = FeatureReader()
    for _ in range(2):  # the second pass reads every window from the cache
        for index in range(0, 40, 3):
            cached = feature_page_data(store, atlas.model, atlas.sources[0], index, text, reader=shared)
            assert cached.model_dump_json() == feature_page_data(store, atlas.model, atlas.sources[0], index, text).model_dump_json()
    assert shared.windows.size > 0


def test_explanations_and_comments_are_spliced_in_fresh(atlas, store):
    text = TokenText(store.get_vocab(atlas.model))
    fast = FeatureJson()
    source = store.get_source(atlas.model, atlas.sources[0])
    assert json.loads(fast.body(store, text, atlas.model, source.name, 2))["explanations"] == []
    user = store.add_user("featurejson-tester", "a long enough password 123")
    store.add_explanation(source.id, 2, "fires on <b>code</b>", "manual", author_id=user.id)
    store.add_comment(source.id, 2, user.id, "nice <i>one</i>")
    data = json.loads(fast.body(store, text, atlas.model, source.name, 2))
    assert [e["description"] for e in data["explanations"]] == ["fires on <b>code</b>"]
    assert [c["text"] for c in data["comments"]] == ["nice <i>one</i>"]
    assert data == feature_page_data(store, atlas.model, source.name, 2, text).model_dump(mode="json")


def test_source_metadata_is_fresh_without_a_rebuild(atlas, store):
    text = TokenText(store.get_vocab(atlas.model))
    fast = FeatureJson()
    source = store.get_source(atlas.model, atlas.sources[0])
    before = json.loads(fast.body(store, text, atlas.model, source.name, 3))
    store.set_source_quality(source.id, {"l0": 12.5})
    after = json.loads(fast.body(store, text, atlas.model, source.name, 3))
    assert after["source"]["quality"]["l0"] == 12.5 and before["source"]["quality"].get("l0") != 12.5
    assert after == feature_page_data(store, atlas.model, source.name, 3, text).model_dump(mode="json")


def _rebuilt_results(d_sae: int, max_window: int) -> SourceResults:
    """Results unlike any real build: latent i has max i + 1 and one top example in window i."""
    max_act = np.arange(1, d_sae + 1, dtype=np.float32)
    hist = {"edges": [0.0, 0.5, 1.0], "counts": [3, 4]}
    stats = LatentStats(
        max_act=max_act, frac_nonzero=np.full(d_sae, 0.25, np.float32), mean_act=max_act / 8,
        hist=[hist] * d_sae, logits=[{"pos": [[1, 2.0]], "neg": [[2, -1.0]], "hist": hist, "basis": "W_U"}] * d_sae,
        aligned=[[[0, 0.5]]] * d_sae, correlated=[[[0, 0.1]]] * d_sae,
    )  # fmt: skip
    examples = ExampleBatch(
        latent=np.arange(d_sae, dtype=np.int32), kind=np.zeros(d_sae, np.int8), group=np.full(d_sae, -1, np.int8),
        rank=np.zeros(d_sae, np.int16), window=(np.arange(d_sae) % max_window).astype(np.int32), max_value=max_act,
        max_pos=np.ones(d_sae, np.int16), offsets=np.arange(d_sae + 1, dtype=np.int64),
        positions=np.ones(d_sae, np.uint16), values=max_act.astype(np.float16),
    )  # fmt: skip
    return SourceResults(stats, examples, n_tokens=1234)


def test_rebuilding_a_source_invalidates_its_cached_json(atlas, store):
    text = TokenText(store.get_vocab(atlas.model))
    fast = FeatureJson()
    source = store.get_source(atlas.model, atlas.sources[1])
    before = {i: json.loads(fast.body(store, text, atlas.model, source.name, i)) for i in (0, 4)}
    n_windows = store.get_corpus(source.corpus_id).n_windows
    store.write_source_results(source.id, _rebuilt_results(source.d_sae, n_windows))
    for index in (0, 4):
        after = json.loads(fast.body(store, text, atlas.model, source.name, index))
        assert after != before[index] and after["max_act"] == index + 1 and len(after["activations"]) == 1
        assert after["activations"][0]["values"][1] == index + 1 and after["source"]["tokens_seen"] == 1234
        assert after == feature_page_data(store, atlas.model, source.name, index, text).model_dump(mode="json")


def test_unknown_latents_are_404(atlas, store):
    text = TokenText(store.get_vocab(atlas.model))
    fast = FeatureJson()
    for model, source, index in ((atlas.model, atlas.sources[0], 10**6), (atlas.model, "9-mlp", 0), ("nope", "1-mlp", 0), (atlas.model, atlas.sources[0], -1)):
        with pytest.raises(NotFoundError):
            fast.body(store, text, model, source, index)
    with TestClient(create_app(atlas.url)) as client:
        assert client.get(f"/api/feature/{atlas.model}/{atlas.sources[0]}/100000").status_code == 404
        response = client.get(f"/api/feature/{atlas.model}/{atlas.sources[0]}/1")
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"


def test_cache_is_bounded():
    lru = LRUCache(100)
    for i in range(10):
        lru.put(i, b"x" * 30, 30)
    assert lru.size <= 100 and lru.get(9) is not None and lru.get(0) is None
    lru.clear()
    assert lru.size == 0 and lru.get(9) is None


def test_object_ids_keep_objects_alive_and_drop_caches_past_the_limit():
    forgotten = []
    ids = ObjectIds(lambda: forgotten.append(True), limit=3)
    objects = [object() for _ in range(3)]
    assert [ids(o) for o in objects] == [id(o) for o in objects] and ids(objects[0]) == id(objects[0])
    assert not forgotten
    ids(object())  # a fourth object: caches keyed by the first three are dropped
    assert forgotten == [True]


def test_serve_with_two_workers(tmp_path_factory):
    import os
    import subprocess
    import sys

    import httpx

    from tests.test_web_serve import free_port, wait_until_up

    atlas = sqlite_atlas(tmp_path_factory)
    port = free_port()
    cmd = [sys.executable, "-m", "latentpedia.cli", "serve", "--db", atlas.url, "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_up(f"{base}/api/home", proc).json()["models"][0]["id"] == atlas.model
        for index in range(4):
            assert httpx.get(f"{base}/api/feature/{atlas.model}/{atlas.sources[0]}/{index}").json()["index"] == str(index)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_fast_path_keeps_security_headers_and_private_mode(atlas):
    url = f"/api/feature/{atlas.model}/{atlas.sources[0]}/1"
    with TestClient(create_app(atlas.url, private=False)) as client:
        response = client.get(url)
        assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff"
        missing = client.get(f"/api/feature/{atlas.model}/9-mlp/1")
        assert missing.status_code == 404 and "9-mlp" in missing.json()["detail"]
    with TestClient(create_app(atlas.url, private=True)) as client:
        assert client.get(url).status_code == 401
