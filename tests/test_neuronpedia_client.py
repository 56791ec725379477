"""The official Neuronpedia Python client (PyPI `neuronpedia`), unchanged, against a live
`latentpedia serve` (a real uvicorn process) on the seeded tiny atlas, SQLite and PostgreSQL.

The client is pointed at the server the way its users do it (`NPRequest.BASE_URL`) and sends
an API key made for a user of the atlas. Every call that maps to something the atlas has is
driven here; the values are checked against our own routes (whose values test_web_live checks
against a direct forward pass).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from latentpedia.store.api import Store
from tests.conftest import BACKENDS, pg_schema_url
from tests.test_web_serve import free_port, wait_until_up
from tests.web_atlas import SeededAtlas, seed_atlas, sqlite_atlas

neuronpedia = pytest.importorskip("neuronpedia")
from neuronpedia.np_feature import SteerFeature  # noqa: E402
from neuronpedia.np_list import NPList, NPListItem  # noqa: E402
from neuronpedia.np_vector import NPVector  # noqa: E402
from neuronpedia.requests.activation_request import ActivationRequest  # noqa: E402
from neuronpedia.requests.base_request import NPRequest  # noqa: E402
from neuronpedia.requests.feature_request import FeatureRequest  # noqa: E402
from neuronpedia.requests.list_request import ListRequest  # noqa: E402
from neuronpedia.requests.sae_feature_request import SAEFeatureRequest  # noqa: E402
from neuronpedia.requests.source_activation_request import SourceActivationRequest  # noqa: E402
from neuronpedia.requests.steer_request import SteerChatRequest, SteerCompletionRequest  # noqa: E402
from neuronpedia.requests.topk_by_token_request import TopKByTokenRequest  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog."
TEXTS = [TEXT, "def main(): return 42"]
EXPLANATION = "foxes & <dogs>"


class Server:
    def __init__(self, atlas: SeededAtlas, base: str, key: str, source: str, index: int):
        self.atlas, self.base, self.key, self.source, self.index = atlas, base, key, source, index
        self.model = atlas.model

    def post(self, path: str, body: dict) -> httpx.Response:
        return httpx.post(f"{self.base}{path}", json=body, headers={"x-api-key": self.key}, timeout=120)


def _user_key_and_explanation(atlas: SeededAtlas) -> tuple[str, str, int]:
    store = Store.open(atlas.url)
    try:
        user = store.add_user("np-client", "a long enough password")
        key, _ = store.create_api_key(user.id, "neuronpedia client")
        source = store.get_source(atlas.model, atlas.sources[0])
        index = max(range(source.d_sae), key=lambda i: store.get_latent(source.id, i)["max_act"] or 0)
        store.add_explanation(source.id, index, EXPLANATION, "offline", explainer_model="offline-v1")
        return key, source.name, index
    finally:
        store.close()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Server]:
    if request.param == "sqlite":
        folder = Path(tmp_path_factory.mktemp("np-client"))
        atlas = seed_atlas(f"sqlite:///{folder / 'atlas.db'}", folder)  # its own copy: this test adds a user
        yield from _serve(atlas)
        return
    with pg_schema_url(request.getfixturevalue("pg_server_url")) as url:
        yield from _serve(seed_atlas(url, Path(tmp_path_factory.mktemp("np-client-pg"))))


def _serve(atlas: SeededAtlas) -> Iterator[Server]:
    key, source, index = _user_key_and_explanation(atlas)
    port = free_port()
    env = {**os.environ, "LATENTPEDIA_LIVE_BURST": "1000", "LATENTPEDIA_LIVE_RATE": "1000"}
    cmd = [sys.executable, "-m", "latentpedia.cli", "serve", "--db", atlas.url, "--port", str(port)]
    # its own process group: `serve` may start helpers (a job worker) that must stop with it
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    old_base = NPRequest.BASE_URL
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/api/home", proc)
        NPRequest.BASE_URL = f"{base}/api"  # how a user points the client at their own instance
        neuronpedia.set_api_key(key)
        yield Server(atlas, base, key, source, index)
    finally:
        NPRequest.BASE_URL = old_base
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_feature_get(server):
    feature = FeatureRequest().get(server.model, server.source, server.index)
    assert (feature.modelId, feature.source, feature.index) == (server.model, server.source, str(server.index))
    assert 0 < feature.density <= 1
    assert [e.text for e in feature.explanations] == [EXPLANATION]
    assert feature.explanations[0].method == "offline" and feature.explanations[0].explainer_model == "offline-v1"
    assert feature.activations and all(len(a.tokens) == len(a.values) for a in feature.activations)
    assert all(a.source == server.source and a.index == server.index for a in feature.activations)
    quantiles = [a for a in feature.activations if a.quantileMin is not None]
    assert quantiles and all(0 <= a.quantileMin < a.quantileMax for a in quantiles)
    raw = json.loads(SAEFeatureRequest().get(server.model, server.source, str(server.index)).jsonData)
    assert raw["index"] == str(server.index) and raw["layer"] == server.source  # a string, as Neuronpedia's
    assert all(e["index"] == str(server.index) for e in raw["explanations"]) and raw["explanations"]
    for row in raw["activations"]:
        assert row["index"] == str(server.index) and row["source"] == server.source
        assert {"modelId", "layer", "index", "binMin", "binMax", "binContains", "maxValueTokenIndex"} <= row.keys()
    for name in ("topkCosSimIndices", "topkCosSimValues", "neuron_alignment_indices", "neuron_alignment_values",
                 "correlated_features_indices", "correlated_features_pearson"):  # fmt: skip
        assert isinstance(raw[name], list), name


def test_activation_for_one_text_and_a_list(server):
    ours = server.post("/api/activation/new", {"modelId": server.model, "layer": server.source, "index": server.index, "text": TEXT}).json()
    one = ActivationRequest().compute_activation_for_text(server.model, server.source, server.index, TEXT)
    assert one.tokens == ours["tokens"] and one.values == pytest.approx(ours["values"])
    many = ActivationRequest().compute_activation_for_texts(server.model, server.source, str(server.index), TEXTS)
    assert [len(a.values) for a in many][0] == len(ours["values"]) and len(many) == 2
    assert many[0].values == pytest.approx(ours["values"])


def test_all_latents_of_a_source(server):
    single = ActivationRequest().compute_activation_for_text(server.model, server.source, server.index, TEXT)
    results = ActivationRequest().compute_all_source_activations_for_text(server.model, server.source, TEXT)
    assert len(results) == 1 and results[0]["tokens"] == single.tokens
    active = dict(results[0]["activeFeatures"].get(str(server.index), []))
    for position, value in enumerate(single.values):
        if position > 0:
            assert active.get(position, 0.0) == pytest.approx(value, abs=1e-5)
    both = ActivationRequest().compute_all_source_activations_for_text(server.model, server.source, TEXTS)
    assert len(both) == 2 and both[0]["activeFeatures"] == results[0]["activeFeatures"]


def test_search_all_for_one_text_and_a_list(server):
    top = SourceActivationRequest().compute_top_features_for_text(server.model, server.source, TEXT, num_results=5)
    assert 0 < len(top) <= 5 and all(a.source == server.source for a in top)
    best = top[0]
    check = ActivationRequest().compute_activation_for_text(server.model, server.source, best.index, TEXT)
    assert best.values == pytest.approx(check.values) and best.tokens == check.tokens
    batch = SourceActivationRequest().compute_top_features_for_texts(server.model, list(server.atlas.sources), TEXTS, num_results=3)
    assert len(batch) == 2 and [a.index for a in batch[0]] == [a.index for a in top[:3]] or len(batch[0]) == 3


def test_topk_by_token_for_one_text_and_a_list(server):
    rows = TopKByTokenRequest().compute_top_features_by_token_for_text(server.model, server.source, TEXT, num_results=3)
    single = ActivationRequest().compute_activation_for_text(server.model, server.source, server.index, TEXT)
    assert [r.token for r in rows] == single.tokens
    assert all(len(r.topFeatures) <= 3 for r in rows) and any(r.topFeatures for r in rows[1:])
    first = next(r for r in rows[1:] if r.topFeatures)
    hit = first.topFeatures[0]
    values = ActivationRequest().compute_activation_for_text(server.model, server.source, hit.feature.index, TEXT).values
    assert hit.activationValue == pytest.approx(values[first.position], abs=1e-5)
    batch = TopKByTokenRequest().compute_top_features_by_token_for_texts(server.model, server.source, TEXTS, num_results=2)
    assert len(batch) == 2 and [r.token for r in batch[0]] == single.tokens


def test_steer_completion_and_chat(server):
    feature = SteerFeature(modelId=server.model, source=server.source, index=server.index, strength=40.0)
    completion = SteerCompletionRequest().steer_features(server.model, [feature], prompt="Hello", n_tokens=4, temperature=0)
    assert completion["STEERED"].startswith("Hello") and completion["DEFAULT"].startswith("Hello")
    vector = NPVector(label="v", model_id=server.model, source=server.source, index=str(server.index), values=[],
                      hook_name="", default_steer_strength=40.0)  # fmt: skip
    again = SteerCompletionRequest().steer(server.model, [vector], prompt="Hello", n_tokens=4, temperature=0)
    assert again["STEERED"] == completion["STEERED"] and again["DEFAULT"] == completion["DEFAULT"]
    messages = [{"role": "user", "content": "Write a one sentence story."}]
    chat = SteerChatRequest().steer_features(server.model, [feature], messages, messages, n_tokens=4, temperature=0)
    for kind in ("STEERED", "DEFAULT"):
        assert chat[kind]["chatTemplate"][:-1] == messages and chat[kind]["chatTemplate"][-1]["role"] == "assistant"
        assert chat[kind]["raw"].endswith(chat[kind]["chatTemplate"][-1]["content"])
    # every answer to a signed-in caller is kept: its share link shows it again
    for answer, kind in ((completion, "completion"), (chat, "chat")):
        assert answer["shareUrl"].endswith(f"/steer/{answer['id']}")
        shared = httpx.get(f"{server.base}/api/steer/{answer['id']}").json()
        assert shared["kind"] == kind and shared["result"]["STEERED"] == answer["STEERED"]
        assert shared["result"]["features"][0]["index"] == server.index
        page = httpx.get(answer["shareUrl"], headers={"accept": "text/html"})
        assert page.status_code == 200 and "Steered" in page.text
    anonymous = httpx.post(f"{server.base}/api/steer", json={"modelId": server.model, "prompt": "Hi", "n_tokens": 2, "features": [{"modelId": server.model, "layer": server.source, "index": server.index, "strength": 40.0}]}, timeout=60)
    assert anonymous.status_code == 200, anonymous.text
    assert anonymous.json()["id"] is None and anonymous.json()["shareUrl"] is None
    assert httpx.get(f"{server.base}/api/steer/nope").status_code == 404


def _events(response: httpx.Response) -> list[dict]:
    assert response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(block[len("data: "):]) for block in response.text.split("\n\n") if block.startswith("data: ")]


def test_steer_streams_as_neuronpedia_does(server):
    feature = {"modelId": server.model, "layer": server.source, "index": str(server.index), "strength": 40.0}
    body = {"modelId": server.model, "features": [feature], "prompt": "Hello", "n_tokens": 4, "temperature": 0}
    whole = server.post("/api/steer", body).json()
    events = _events(server.post("/api/steer", {**body, "stream": True}))
    assert len(events) >= 2 and events[-1]["STEERED"] == whole["STEERED"] and events[-1]["DEFAULT"] == whole["DEFAULT"]
    messages = [{"role": "user", "content": "Hi"}]
    chat = {"modelId": server.model, "features": [feature], "defaultChatMessages": messages, "steeredChatMessages": messages,
            "n_tokens": 3, "temperature": 0}  # fmt: skip
    whole_chat = server.post("/api/steer-chat", chat).json()
    chat_events = _events(server.post("/api/steer-chat", {**chat, "stream": True}))
    assert chat_events[-1]["STEERED"] == whole_chat["STEERED"] and chat_events[-1]["DEFAULT"] == whole_chat["DEFAULT"]
    bad = server.post("/api/steer", {**body, "stream": True, "features": [{**feature, "layer": "9-nope"}]})
    assert bad.status_code == 404


def test_lists(server):
    made = ListRequest().new("client list", "made by the neuronpedia client")
    assert made.name == "client list"
    NPList.add_items(made, [NPListItem(model_id=server.model, source=server.source, index=str(server.index), description="a note")])
    assert [(i.source, str(i.index)) for i in made.items] == [(server.source, str(server.index))]
    got = ListRequest().get(made.id)
    assert (got.name, got.description) == ("client list", "made by the neuronpedia client")
    assert [(i.model_id, i.source, i.index) for i in got.items] == [(server.model, server.source, str(server.index))]
    assert str(made.id) in [lst.id for lst in ListRequest().get_owned()]
    page = httpx.get(f"{server.base}/list/{made.id}", headers={"x-api-key": server.key, "accept": "text/html"})
    assert page.status_code == 200 and "client list" in page.text


def test_wrong_key_is_refused_like_neuronpedia(server):
    from neuronpedia.requests.base_request import NPUnauthorizedError

    with pytest.raises(NPUnauthorizedError):
        ListRequest(api_key="not-a-key").get_owned()


def test_neuronpedia_urls_embed_and_quick_list(server):
    page = f"{server.base}/{server.model}/{server.source}/{server.index}"
    full = httpx.get(page, headers={"accept": "text/html"})
    assert full.headers["x-frame-options"] == "DENY" and '<header class="top">' in full.text
    embed = httpx.get(f"{page}?embed=true", headers={"accept": "text/html"})
    assert embed.status_code == 200 and "x-frame-options" not in embed.headers
    assert "frame-ancestors *" in embed.headers["content-security-policy"]
    assert '<header class="top">' not in embed.text and "<footer" not in embed.text and "Top examples" in embed.text
    assert "<form" not in embed.text  # no test text, steering, votes or comments in an embed
    # the URL SAELens' get_neuronpedia_quick_list builds (sae_lens/analysis/neuronpedia_integration.py)
    features = [{"modelId": server.model, "layer": server.source, "index": str(i)} for i in (server.index, 0)]
    features.append({"modelId": server.model, "layer": "9-nope", "index": "1"})
    url = f"{server.base}/quick-list/?name={quote('my <list>')}&features={quote(json.dumps(features))}"
    quick = httpx.get(url, headers={"accept": "text/html"}, follow_redirects=True)
    assert quick.status_code == 200 and "my &lt;list&gt;" in quick.text and "foxes &amp; &lt;dogs&gt;" in quick.text
    twin = httpx.get(f"{server.base}{quick.headers['link'].split('>')[0][1:]}").json()
    assert [(f["index"], f["found"]) for f in twin["features"]] == [(str(server.index), True), ("0", True), ("1", False)]
    assert twin["features"][0]["explanation"] == EXPLANATION
    bad = httpx.get(f"{server.base}/api/quick-list", params={"features": "[{]"})
    assert bad.status_code == 422


def test_explanation_search_through_the_clients_transport(server):
    """Client 1.2.1 has no explanation-search call: its request class sends Neuronpedia's bodies."""
    request = NPRequest("explanation")
    bodies = {"search": {"modelId": server.model, "layers": [server.source], "query": "foxes and dogs"},
              "search-model": {"modelId": server.model, "query": "foxes and dogs"}, "search-all": {"query": "foxes and dogs"}}  # fmt: skip
    for uri, body in bodies.items():
        answer = request.send_request(method="POST", uri=uri, json=body)
        hit = next(r for r in answer["results"] if r["description"] == EXPLANATION)
        assert (hit["modelId"], hit["layer"], hit["index"], hit["typeName"]) == (server.model, server.source, str(server.index), "offline")
