"""The fast feature JSON (pre-serialised static part, community parts spliced in) parses to
exactly `feature_page_data`'s dump for every latent of the seeded atlas, on SQLite and
PostgreSQL, before and after explanations and comments are added."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from latentpedia.store.api import Store
from latentpedia.web import create_app
from latentpedia.web.featurejson import FeatureJson
from latentpedia.web.pages import feature_page_data
from latentpedia.web.pages.common import NotFoundError
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
    from latentpedia.web.featurejson import _LRU

    lru = _LRU(100)
    for i in range(10):
        lru.put(i, b"x" * 30, 30)
    assert lru.size <= 100 and lru.get(9) is not None and lru.get(0) is None


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
            assert httpx.get(f"{base}/api/feature/{atlas.model}/{atlas.sources[0]}/{index}").json()["index"] == index
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
