"""`POST /api/feature/upload-batch` (Neuronpedia's feature upload shape) on SQLite and
PostgreSQL: admins only; creates a static source when given `dSae`, replaces a latent uploaded
again, refuses built sources and malformed features without writing anything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from latentpedia.engine.tokens import TokenText
from latentpedia.store.api import Store
from latentpedia.web.app import create_app
from tests.community_fixtures import CommunityAtlas, community_atlas
from tests.conftest import BACKENDS
from tests.test_cli_bad_input import store_digest

NEW_SOURCE = "2-res-upload"


@pytest.fixture(scope="module", params=BACKENDS)
def atlas(request, tmp_path_factory) -> Iterator[CommunityAtlas]:
    with community_atlas(request.param, request, tmp_path_factory) as community:
        yield community


@pytest.fixture(scope="module")
def client(atlas) -> Iterator[TestClient]:
    with TestClient(create_app(atlas.url)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def words(atlas) -> list[str]:
    """Display texts of real vocabulary entries of the tiny model (distinct ones)."""
    store = Store.open(atlas.url)
    texts = TokenText(store.get_vocab(atlas.model)).texts
    store.close()
    unique = [t for t in texts[10:400] if t.strip() and texts.index(t) == texts.index(t, 0)]
    return list(dict.fromkeys(unique))[:8]


def batch(atlas, words, source=NEW_SOURCE, index=3, **extra) -> dict:
    feature = {
        "index": index, "density": 0.25,
        "topLogits": [{"token": words[0], "value": 1.5}], "bottomLogits": [{"token": words[1], "value": -0.5}],
        "explanations": [{"text": "uploaded words", "methodName": "np_method", "modelName": "gpt-4o"}],
        "activations": [
            {"tokens": words[:4], "values": [0, 2.5, 0, 1.0]},
            {"tokens": words[2:5], "values": [0.5, 0, 0], "quantileMin": 0.0, "quantileMax": 1.0},
        ],
    }  # fmt: skip
    return {"modelId": atlas.model, "source": source, "features": [feature], **extra}


def test_only_admins_may_upload(client, atlas, words):
    assert client.post("/api/feature/upload-batch", json=batch(atlas, words, dSae=16)).status_code == 401
    response = client.post("/api/feature/upload-batch", json=batch(atlas, words, dSae=16), headers=atlas.key("alice"))
    assert response.status_code == 403


def test_an_upload_creates_a_static_source_and_a_second_replaces_the_latent(client, atlas, words):
    response = client.post("/api/feature/upload-batch", json=batch(atlas, words, dSae=16), headers=atlas.key("root"))
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "1 features created.", "features": 1, "activations": 2, "explanations": 1}
    page = client.get(f"/api/feature/{atlas.model}/{NEW_SOURCE}/3").json()
    assert page["activations"][0]["tokens"] == words[:4] and page["activations"][0]["values"] == [0, 2.5, 0, 1.0]
    assert page["max_act"] == 2.5 and page["frac_nonzero"] == 0.25 and page["pos_str"] == [words[0]]
    assert [(x["text"], x["method"], x["author"]) for x in page["explanations"]] == [("uploaded words", "np_method", "root")]
    assert page["source"]["width"] == 16
    again = batch(atlas, words)
    again["features"][0]["activations"] = [{"tokens": words[5:7], "values": [3.0, 0.0]}]
    assert client.post("/api/feature/upload-batch", json=again, headers=atlas.key("root")).status_code == 200
    page = client.get(f"/api/feature/{atlas.model}/{NEW_SOURCE}/3").json()
    assert [a["tokens"][:2] for a in page["activations"]] == [words[5:7]] and page["max_act"] == 3.0
    assert len(page["explanations"]) == 2


@pytest.mark.parametrize(("change", "status", "needle"), [
    ({"source": "1-mlp"}, 409, "built from the model"),
    ({"source": "9-res-none"}, 404, "give dSae"),
    ({"modelId": "no-such-model"}, 404, "unknown model"),
    ({"values": [1.0]}, 400, "features[0].activations[0].values"),
    ({"token": "\u2603 not a token \u2603"}, 400, "features[0].activations[0].tokens[0]"),
    ({"index": 99}, 400, "outside the source's 16 latents"),
    ({"features": []}, 422, "features"),
], ids=["built-source", "unknown-source", "unknown-model", "value-count", "unknown-token", "index", "empty"])
def test_bad_uploads_are_refused_and_write_nothing(client, atlas, words, change, status, needle):
    body = batch(atlas, words, source=change.get("source", NEW_SOURCE), index=change.get("index", 3))
    body["modelId"] = change.get("modelId", body["modelId"])
    if "values" in change:
        body["features"][0]["activations"][0]["values"] = change["values"]
    if "token" in change:
        body["features"][0]["activations"][0]["tokens"][0] = change["token"]
    if "features" in change:
        body["features"] = change["features"]
    if status == 400 and change.get("index") is None:  # make sure the source exists, so the feature is what fails
        client.post("/api/feature/upload-batch", json=batch(atlas, words, dSae=16), headers=atlas.key("root"))
    before = store_digest(atlas.url)
    response = client.post("/api/feature/upload-batch", json=body, headers=atlas.key("root"))
    assert response.status_code == status, response.text
    assert needle in response.text
    assert store_digest(atlas.url) == before
