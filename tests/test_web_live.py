"""Live routes over the seeded tiny atlas, on SQLite and PostgreSQL: per-token values and
search results checked against a direct forward pass, limits (413/422/429), timeouts (504),
busy (503), the search page."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch
from fastapi.testclient import TestClient

from latentpedia.models import encode_text, run_with_cache
from latentpedia.store.api import Store
from latentpedia.web import create_app
from latentpedia.web.compute import COMPUTE_EXTENSION
from latentpedia.engine.worker import LiveConfig
from latentpedia.web.ratelimit import PromptLimits, RateLimiter
from tests.conftest import BACKENDS
from tests.web_atlas import SeededAtlas, atlas_model, backend_atlas

TEXT = "The quick brown fox jumps over the lazy dog. def main(): return 42"
LIVE_ROUTES = ("/api/activation/new", "/api/search-all", "/api/search-topk-by-token")


@pytest.fixture(scope="module", params=BACKENDS)
def atlas(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[SeededAtlas]:
    yield from backend_atlas(request, tmp_path_factory, "live-pg")


@pytest.fixture(scope="module")
def model(atlas):
    return atlas_model(atlas)


@pytest.fixture(scope="module")
def client(atlas: SeededAtlas) -> Iterator[TestClient]:
    app = create_app(atlas.url)
    with TestClient(app) as test_client:
        app.state.rate_limiter = RateLimiter(per_minute=0)  # off, except in the rate-limit test
        yield test_client


def _hooks(model, text: str, hooks: list[str]) -> tuple[list[int], dict[str, torch.Tensor]]:
    ids = encode_text(model, text)
    cache = run_with_cache(model, [ids], hooks)
    return ids, {name: acts[0] for name, acts in cache.items()}


def test_activation_new_equals_the_hook_values(client, atlas, model):
    source, layer = atlas.sources[1], int(atlas.sources[1].split("-")[0])
    ids, acts = _hooks(model, TEXT, [f"blocks.{layer}.mlp.hook_post"])
    expected = acts[f"blocks.{layer}.mlp.hook_post"][:, 7].tolist()
    body = client.post("/api/activation/new", json={"modelId": atlas.model, "layer": source, "index": 7, "text": TEXT})
    assert body.status_code == 200, body.text
    data = body.json()
    assert data["token_ids"] == ids and len(data["tokens"]) == len(ids)
    assert data["values"] == pytest.approx(expected, abs=1e-5)
    peak = max(range(1, len(ids)), key=lambda i: expected[i])
    assert data["maxValueIndex"] == peak and data["maxValue"] == pytest.approx(expected[peak], abs=1e-5)
    assert data["url"] == f"/{atlas.model}/{source}/7"


def test_activation_new_accepts_neuronpedia_aliases(client, atlas):
    body = {"modelId": atlas.model, "source": atlas.sources[0], "index": 0, "customText": "hello"}
    assert client.post("/api/activation/new", json=body).status_code == 200


def test_search_all_top_result_is_the_latents_activation(client, atlas, model):
    hooks = [f"blocks.{s.split('-')[0]}.mlp.hook_post" for s in atlas.sources]
    ids, acts = _hooks(model, TEXT, hooks)
    data = client.post("/api/search-all", json={"modelId": atlas.model, "text": TEXT, "numResults": 5}).json()
    assert data["sources"] == list(atlas.sources) and data["token_ids"] == ids
    best = max(float(a[1:].max()) for a in acts.values())
    top = data["result"][0]
    column = acts[hooks[atlas.sources.index(top["layer"])]][:, int(top["index"])]  # a string, as in Neuronpedia
    assert top["value"] == pytest.approx(best, abs=1e-5)
    assert top["maxValue"] == pytest.approx(float(column[top["maxValueIndex"]]), abs=1e-5)
    assert top["values"] == pytest.approx(column.tolist(), abs=1e-5)
    assert top["url"] == f"/{atlas.model}/{top['layer']}/{top['index']}"
    assert [r["value"] for r in data["result"]] == sorted((r["value"] for r in data["result"]), reverse=True)
    assert len(data["result"]) == 5


def test_search_all_filters(client, atlas, model):
    source = atlas.sources[0]
    hook = f"blocks.{source.split('-')[0]}.mlp.hook_post"
    ids, acts = _hooks(model, TEXT, [hook])
    position = 3
    body = {"modelId": atlas.model, "text": TEXT, "layers": [source], "sortIndexes": [position], "numResults": 3}
    data = client.post("/api/search-all", json=body).json()
    assert {r["layer"] for r in data["result"]} == {source} and data["sortIndexes"] == [position]
    assert data["result"][0]["value"] == pytest.approx(float(acts[hook][position].max()), abs=1e-5)
    ceiling = _median_density(atlas, source)
    dense = client.post("/api/search-all", json={**body, "sortIndexes": [], "numResults": 50, "densityThreshold": ceiling}).json()
    assert dense["result"] and all(r["frac_nonzero"] <= ceiling for r in dense["result"])
    unfiltered = client.post("/api/search-all", json={**body, "sortIndexes": [], "numResults": 50}).json()
    assert any(r["frac_nonzero"] > ceiling for r in unfiltered["result"])
    with_bos = client.post("/api/search-all", json={**body, "sortIndexes": [0], "ignoreBos": False}).json()
    assert with_bos["result"][0]["value"] == pytest.approx(float(acts[hook][0].max()), abs=1e-5)


def _median_density(atlas, source: str) -> float:
    store = Store.open(atlas.url)
    try:
        rows = store.list_latents(store.get_source(atlas.model, source).id, limit=None)
    finally:
        store.close()
    return sorted(r["frac_nonzero"] for r in rows)[len(rows) // 2]


def test_topk_by_token(client, atlas, model):
    hooks = [f"blocks.{s.split('-')[0]}.mlp.hook_post" for s in atlas.sources]
    ids, acts = _hooks(model, TEXT, hooks)
    data = client.post("/api/search-topk-by-token", json={"modelId": atlas.model, "text": TEXT, "k": 3}).json()
    assert len(data["results"]) == len(ids) and data["results"][0]["top"] == []
    for position in (1, len(ids) - 1):
        best = max(float(a[position].max()) for a in acts.values())
        top = data["results"][position]["top"]
        assert len(top) == 3 and top[0]["value"] == pytest.approx(best, abs=1e-5)
        assert data["results"][position]["token"] == data["tokens"][position]


@pytest.mark.parametrize("route", LIVE_ROUTES)
def test_bad_text_is_422_and_long_text_413(client, atlas, route):
    body = {"modelId": atlas.model, "layer": atlas.sources[0], "index": 0}
    for text in ("", "   "):
        response = client.post(route, json={**body, "text": text})
        assert response.status_code == 422 and "empty" in response.json()["detail"]
    surrogate = client.post(route, content=b'{"modelId": "%s", "layer": "1-mlp", "index": 0, "text": "a\\ud800b"}' % atlas.model.encode(),
                            headers={"content-type": "application/json"})  # fmt: skip
    assert surrogate.status_code == 422
    limits = client.app.state.prompt_limits = PromptLimits(max_chars=50, max_tokens=8)
    try:
        too_long = client.post(route, json={**body, "text": "x" * 51})
        assert too_long.status_code == 413 and "50 characters" in too_long.json()["detail"]
        many_tokens = client.post(route, json={**body, "text": "one two three four five six seven eight nine"})
        assert many_tokens.status_code == 413 and f"{limits.max_tokens} tokens" in many_tokens.json()["detail"]
    finally:
        client.app.state.prompt_limits = None


def test_unknown_things_are_404_and_bad_positions_422(client, atlas):
    assert client.post("/api/activation/new", json={"modelId": "nope", "layer": "1-mlp", "index": 0, "text": "a"}).status_code == 404
    body = {"modelId": atlas.model, "layer": "9-mlp", "index": 0, "text": "a"}
    assert "no source" in client.post("/api/activation/new", json=body).json()["detail"]
    assert client.post("/api/activation/new", json={**body, "layer": atlas.sources[0], "index": 10**6}).status_code == 404
    assert client.post("/api/search-all", json={"modelId": atlas.model, "text": "a b", "sources": ["9-mlp"]}).status_code == 404
    bad = client.post("/api/search-all", json={"modelId": atlas.model, "text": "a b", "sortIndexes": [99]})
    assert bad.status_code == 422 and "sortIndexes" in bad.json()["detail"]


def test_rate_limit_is_429_with_retry_after(client, atlas):
    client.app.state.rate_limiter = RateLimiter(per_minute=6, burst=2)
    try:
        body = {"modelId": atlas.model, "layer": atlas.sources[0], "index": 0, "text": "hi"}
        codes = [client.post("/api/activation/new", json=body).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = client.post("/api/search-all", json={"modelId": atlas.model, "text": "hi"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "per minute" in refused.json()["detail"]
    finally:
        client.app.state.rate_limiter = RateLimiter(per_minute=0)


def test_rate_limiter_refills():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=1, clock=lambda: now[0])
    assert limiter.acquire("a") == 0 and limiter.acquire("a") == pytest.approx(1.0)
    assert limiter.acquire("b") == 0
    now[0] = 1.0
    assert limiter.acquire("a") == 0


def test_live_routes_are_marked_compute_and_meta_lists_sources(client, atlas):
    spec = client.get("/openapi.json").json()
    for route in LIVE_ROUTES:
        assert spec["paths"][route]["post"][COMPUTE_EXTENSION] is True
    meta = client.get("/api/search").json()
    assert meta["models"][atlas.model] == list(atlas.sources) and meta["max_chars"] > 0


def test_slow_request_times_out_with_504(atlas):
    gate = threading.Event()
    app = create_app(atlas.url, live_config=LiveConfig(timeout=0.3))
    with TestClient(app) as client:
        app.state.rate_limiter = RateLimiter(per_minute=0)
        live = app.state.live

        async def hold(_request=None):
            return await live.run(atlas.model, lambda m: gate.wait(10))

        app.add_api_route("/test-slow", hold)
        try:
            response = client.get("/test-slow")
            assert response.status_code == 504 and "longer than 0.3 s" in response.json()["detail"]
        finally:
            gate.set()


def test_queue_full_is_503(atlas):
    gate, started = threading.Event(), threading.Event()
    app = create_app(atlas.url, live_config=LiveConfig(max_queue=0, timeout=5))
    with TestClient(app) as client:
        app.state.rate_limiter = RateLimiter(per_minute=0)
        live = app.state.live

        def block(_m):
            started.set()
            gate.wait(10)

        async def hold():
            return await live.run(atlas.model, block)

        app.add_api_route("/test-hold", hold)
        blocker = threading.Thread(target=client.get, args=("/test-hold",))
        try:
            live.config.max_queue = 1
            blocker.start()
            assert started.wait(10)
            live.config.max_queue = 0
            response = client.post("/api/search-all", json={"modelId": atlas.model, "text": "hi"})
            assert response.status_code == 503 and response.headers["retry-after"] == "1" and "busy" in response.json()["detail"]
        finally:
            gate.set()
            blocker.join()


def test_concurrent_activation_requests_share_one_forward_pass(atlas, model):
    """Requests queued behind a running job on the same source are run as one padded batch,
    with the same values as alone."""
    gate, started = threading.Event(), threading.Event()
    app = create_app(atlas.url)
    texts = ["alpha beta", "a much longer text about the gamma function", "x"]
    with TestClient(app) as client:
        app.state.rate_limiter = RateLimiter(per_minute=0)
        live = app.state.live

        def block(_m):
            started.set()
            gate.wait(10)

        async def hold():
            return await live.run(atlas.model, block)

        app.add_api_route("/test-hold", hold)
        results: dict[str, dict] = {}

        def ask(text: str) -> None:
            body = {"modelId": atlas.model, "layer": atlas.sources[0], "index": 3, "text": text}
            results[text] = client.post("/api/activation/new", json=body).json()

        blocker = threading.Thread(target=client.get, args=("/test-hold",))
        blocker.start()
        assert started.wait(10)
        askers = [threading.Thread(target=ask, args=(t,)) for t in texts]
        for thread in askers:
            thread.start()
        for _ in range(500):
            if live.queued == len(texts):
                break
            threading.Event().wait(0.01)
        gate.set()
        for thread in [blocker, *askers]:
            thread.join()
    assert live.batches[-1] == len(texts)
    hook = f"blocks.{atlas.sources[0].split('-')[0]}.mlp.hook_post"
    for text in texts:
        _, acts = _hooks(model, text, [hook])
        assert results[text]["values"] == pytest.approx(acts[hook][:, 3].tolist(), abs=1e-5)


def test_search_page_runs_search_all_and_topk(client, atlas):
    empty = client.get("/search", headers={"accept": "text/html"})
    assert empty.status_code == 200 and 'id="search-form"' in empty.text and "/api/search" in empty.headers["link"]
    assert 'href="/search"' in client.get("/").text
    query = {"model": atlas.model, "text": "Hello <b>world</b>", "sources": atlas.sources[0], "n": 4}
    page = client.get("/search", params=query)
    assert page.status_code == 200 and page.text.count('class="hit"') == 4
    api = client.post("/api/search-all", json={"modelId": atlas.model, "text": query["text"], "sources": [atlas.sources[0]], "numResults": 4}).json()
    for hit in api["result"]:
        assert f'href="{hit["url"]}"' in page.text
    assert "<b>world" not in page.text and "&lt;b&gt;" in page.text
    sorted_page = client.get("/search", params={**query, "sort": [2]})
    assert 'name="sort" value="2" checked' in sorted_page.text
    topk = client.get("/search", params={**query, "view": "topk", "k": 2})
    assert topk.status_code == 200 and 'id="topk-results"' in topk.text
    bad = client.get("/search", params={**query, "text": "   "})
    assert bad.status_code == 422 and "empty" in bad.text


def test_feature_page_has_the_test_your_text_panel(client, atlas):
    page = client.get(f"/{atlas.model}/{atlas.sources[0]}/0", headers={"accept": "text/html"})
    assert 'id="test-text"' in page.text and "/static/live.js" in page.text
    assert client.get("/static/live.js").status_code == 200
