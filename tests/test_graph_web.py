"""Attribution-graph routes and pages over a tiny atlas with transcoders (SQLite and PostgreSQL): generate,
read, upload, subgraphs; anonymous writes refused; bad input 4xx; user text escaped."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from latentpedia.web import create_app
from latentpedia.web.compute import COMPUTE_EXTENSION
from latentpedia.web.ratelimit import PromptLimits, RateLimiter
from tests.conftest import BACKENDS
from tests.graph_atlas import graph_atlas

PROMPT = "The function returns a list of the values"


@pytest.fixture(scope="module", params=BACKENDS)
def atlas(request, tmp_path_factory):
    with graph_atlas(request, tmp_path_factory, request.param) as value:
        yield value


@pytest.fixture(scope="module")
def client(atlas):
    app = create_app(atlas[0].url)
    with TestClient(app) as test_client:
        app.state.rate_limiter = RateLimiter(per_minute=0)
        yield test_client


@pytest.fixture(scope="module")
def generated(client, atlas):
    r = client.post("/api/graph/generate", json={"modelId": atlas[0].model, "prompt": PROMPT, "maxFeatureNodes": 48})
    assert r.status_code == 200, r.text
    return r.json()


def test_generate_saves_a_graph_in_neuronpedia_schema(client, atlas, generated):
    community, names = atlas
    assert generated["url"] == f"/graph/{generated['id']}"
    graph = client.get(generated["json_url"]).json()
    assert set(graph) == {"metadata", "qParams", "nodes", "links"}
    assert graph["metadata"]["scan"] == community.model and graph["metadata"]["transcoder_list"] == names
    assert len(graph["nodes"]) == generated["n_nodes"] and len(graph["links"]) == generated["n_links"]
    latents = [n for n in graph["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert latents and all(n["source"] in names for n in latents)


def test_graph_page_links_its_json_twin(client, generated):
    r = client.get(generated["url"], headers={"accept": "text/html"})
    assert r.status_code == 200
    assert f'<{generated["json_url"]}>; rel="alternate"' in r.headers["link"]
    assert 'id="graph-svg"' in r.text and "/static/graph.js" in r.text
    index = client.get("/graph", headers={"accept": "text/html"})
    assert generated["url"] in index.text and 'id="graph-generate"' in index.text
    assert generated["id"] in [g["id"] for g in client.get("/api/graphs").json()["graphs"]]


def test_generate_is_a_compute_route_and_refuses_bad_input(client, atlas):
    model = atlas[0].model
    assert client.get("/openapi.json").json()["paths"]["/api/graph/generate"]["post"].get(COMPUTE_EXTENSION) is True
    assert client.post("/api/graph/generate", json={"modelId": "nope", "prompt": PROMPT}).status_code == 404
    assert client.post("/api/graph/generate", json={"modelId": model, "prompt": ""}).status_code == 422
    r = client.post("/api/graph/generate", json={"modelId": model, "prompt": PROMPT, "sources": [atlas[0].atlas.sources[0]]})
    assert r.status_code == 422 and "not a transcoder" in r.json()["detail"]
    r = client.post("/api/graph/generate", json={"modelId": model, "prompt": PROMPT, "sources": ["9-tc-none"]})
    assert r.status_code == 404
    assert client.get("/api/graph/unknown").status_code == 404
    client.app.state.prompt_limits = PromptLimits(max_chars=10_000, max_tokens=5)
    try:
        r = client.post("/api/graph/generate", json={"modelId": model, "prompt": PROMPT})
        assert r.status_code == 413 and "tokens" in r.json()["detail"]
    finally:
        del client.app.state.prompt_limits


def test_subgraphs_need_a_user_and_real_nodes(client, atlas, generated):
    community, _ = atlas
    graph = client.get(generated["json_url"]).json()
    ids = [n["node_id"] for n in graph["nodes"]][:2]
    body = {"pinnedIds": ids, "supernodes": [["my group", *ids]]}
    url = f"/api/graph/{generated['id']}/subgraph"
    assert client.post(url, json=body).status_code == 401
    r = client.post(url, json=body, headers=community.key("alice"))
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["id"] != generated["id"]
    q = client.get(saved["json_url"]).json()["qParams"]
    assert q["pinnedIds"] == ids and q["supernodes"] == [["my group", *ids]]
    page = client.get(saved["url"], headers={"accept": "text/html"}).text
    assert generated["url"] in page  # links its parent
    bad = client.post(url, json={"pinnedIds": ["99_1_1"]}, headers=community.key("alice"))
    assert bad.status_code == 422 and "not in this graph" in bad.json()["detail"]


def test_upload_checks_the_document_and_escapes_its_text(client, atlas):
    community, _ = atlas
    doc = {"metadata": {"slug": "<script>alert(1)</script>", "scan": "elsewhere", "prompt": "<b>hi</b>",
                        "prompt_tokens": ["<b>", "hi"]},
           "nodes": [{"node_id": "E_1_0", "feature_type": "embedding", "layer": "E", "ctx_idx": 0}], "links": []}
    assert client.post("/api/graph/upload", json=doc).status_code == 401
    r = client.post("/api/graph/upload", json=doc, headers=community.key("bob"))
    assert r.status_code == 200, r.text
    page = client.get(r.json()["url"], headers={"accept": "text/html"}).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    broken = {**doc, "links": [{"source": "E_1_0", "target": "nowhere", "weight": 1.0}]}
    r = client.post("/api/graph/upload", json=broken, headers=community.key("bob"))
    assert r.status_code == 422 and "names no node" in r.json()["detail"]
