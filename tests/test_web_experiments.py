"""Experiment routes over the seeded tiny atlas (SQLite): steer (+ NDJSON stream), ablate,
patch, logit lens, DLA, the /experiments page and the feature page's panel; bad input -> 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from fastapi.testclient import TestClient

from latentpedia.experiments.common import Latent
from latentpedia.experiments.lens import latent_logit_effect
from latentpedia.models import encode_text
from latentpedia.sources import NeuronSource
from latentpedia.web import create_app
from latentpedia.web.compute import COMPUTE_EXTENSION
from latentpedia.web.ratelimit import RateLimiter
from tests.web_atlas import SeededAtlas, atlas_model, sqlite_atlas

PROMPT = "The function returns a list of the values"
ROUTES = ("/api/steer", "/api/steer/stream", "/api/ablate", "/api/patch", "/api/logit-lens", "/api/dla")


@pytest.fixture(scope="module")
def atlas(tmp_path_factory) -> SeededAtlas:
    return sqlite_atlas(tmp_path_factory)


@pytest.fixture(scope="module")
def model(atlas):
    return atlas_model(atlas)


@pytest.fixture(scope="module")
def client(atlas: SeededAtlas) -> Iterator[TestClient]:
    app = create_app(atlas.url)
    with TestClient(app) as test_client:
        app.state.rate_limiter = RateLimiter(per_minute=0)
        yield test_client


def _feature(atlas, strength=0.0, index=3):
    return {"modelId": atlas.model, "layer": atlas.sources[0], "index": index, "strength": strength}


def _steer_body(atlas, **kw):
    body = {"prompt": PROMPT, "modelId": atlas.model, "features": [_feature(atlas)], "n_completion_tokens": 8,
            "temperature": 0.8, "seed": 5}  # fmt: skip
    return {**body, **kw}


def test_routes_are_compute_routes_in_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ROUTES:
        assert paths[route]["post"].get(COMPUTE_EXTENSION) is True, route


def test_steer_strength_zero_gives_the_default_completion(client, atlas):
    r = client.post("/api/steer", json=_steer_body(atlas))
    assert r.status_code == 200, r.text
    body = r.json()
    out = {o["type"]: o for o in body["outputs"]}
    assert out["STEERED"]["token_ids"] == out["DEFAULT"]["token_ids"]
    assert body["STEERED"] == body["DEFAULT"] and body["STEERED"].startswith(PROMPT)


def test_steer_strong_feature_changes_the_completion(client, atlas):
    body = _steer_body(atlas, features=[_feature(atlas, 300.0)], strength_multiplier=2, steer_method="ORTHOGONAL_DECOMP")
    body["steer_method"] = "SIMPLE_ADDITIVE"
    out = {o["type"]: o["token_ids"] for o in client.post("/api/steer", json=body).json()["outputs"]}
    assert out["STEERED"] != out["DEFAULT"]


def test_steer_stream_ndjson(client, atlas):
    with client.stream("POST", "/api/steer/stream", json=_steer_body(atlas, n_completion_tokens=4)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in r.iter_lines() if line.strip()]
    assert events[-1] == {"event": "end"}
    tokens = [e for e in events if "token" in e]
    assert {e["type"] for e in tokens} == {"STEERED", "DEFAULT"} and all("token_str" in e for e in tokens)
    done = {e["type"]: e for e in events if e.get("done")}
    assert done["STEERED"]["tokens"] == done["DEFAULT"]["tokens"]


def test_steer_with_a_raw_vector(client, atlas, model):
    body = _steer_body(atlas, features=[], vectors=[{"hook": "blocks.1.hook_resid_post", "vector": [0.0] * model.d_model, "strength": 1}])
    r = client.post("/api/steer", json=body)
    assert r.status_code == 422 and "zero" in r.json()["detail"]
    body["vectors"][0]["vector"] = [1.0] * model.d_model
    assert client.post("/api/steer", json=body).status_code == 200


@pytest.mark.parametrize(
    "change,status,needle",
    [
        ({"features": [{"layer": "9-mlp", "index": 0, "strength": 1}]}, 404, "no source"),
        ({"features": [{"layer": "1-mlp", "index": 10**6, "strength": 1}]}, 404, "does not exist"),
        ({"modelId": "nope"}, 404, "unknown model"),
        ({"vectors": [{"hook": "blocks.99.hook_resid_post", "vector": [1.0], "strength": 1}], "features": []}, 422, "unknown hook"),
        ({"steer_method": "MAGIC"}, 422, "steer_method"),
        ({"n_completion_tokens": 100000}, 422, "n_tokens"),
        ({"prompt": " "}, 422, "empty"),
        ({"prompt": "word " * 5000}, 413, "limit"),
    ],
)
def test_steer_bad_input(client, atlas, change, status, needle):
    r = client.post("/api/steer", json=_steer_body(atlas, **change))
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_steer_nan_strength_is_422(client, atlas):
    raw = json.dumps(_steer_body(atlas)).replace('"strength": 0.0', '"strength": NaN')
    r = client.post("/api/steer", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.json()["detail"]
    r = client.post("/api/steer/stream", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_ablate_modes(client, atlas, model):
    base = {"modelId": atlas.model, "layer": atlas.sources[0], "index": 3, "prompt": PROMPT, "target_tokens": [5]}
    for mode in ("zero", "mean", "resample"):
        r = client.post("/api/ablate", json={**base, "mode": mode})
        assert r.status_code == 200, r.text
        body = r.json()
        n = len(encode_text(model, PROMPT))
        assert len(body["loss_before"]) == len(body["loss_after"]) == len(body["tokens"]) == n
        assert body["targets"][0]["token_id"] == 5
    assert "stored mean_act" in client.post("/api/ablate", json={**base, "mode": "mean"}).json()["replacement"]
    r = client.post("/api/ablate", json={**base, "positions": [999]})
    assert r.status_code == 422 and "outside the prompt" in r.json()["detail"]


def test_patch_route_and_page(client, atlas, model):
    ids = encode_text(model, PROMPT)
    body = {"modelId": atlas.model, "clean_prompt": PROMPT, "corrupted_prompt": "The function returns a list of the names",
            "answer_token": 5, "foil_token": 6, "hook": "resid_pre"}  # fmt: skip
    corrupted_ids = encode_text(model, body["corrupted_prompt"])
    if len(corrupted_ids) != len(ids):
        pytest.skip("tokenizer splits the prompts differently")
    r = client.post("/api/patch", json=body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert len(result["scores"]) == model.n_layers and len(result["scores"][0]) == len(ids)
    assert result["n_forward"] < result["n_patched"]
    r = client.post("/api/patch", json={**body, "corrupted_prompt": "short"})
    assert r.status_code == 422 and "same number of tokens" in r.json()["detail"]
    r = client.post("/api/patch", json={**body, "hook": "latent", "layer": atlas.sources[0], "index": 2})
    assert r.status_code == 200 and len(r.json()["scores"]) == 1
    page = client.get("/experiments", params={**body, "model": atlas.model, "tool": "patch"})
    assert page.status_code == 200 and 'id="patch-heatmap"' in page.text
    twin = client.get(page.headers["link"].split(">")[0].lstrip("<"))
    as_text = client.post("/api/patch", json={**body, "answer_token": "5", "foil_token": "6"}).json()  # the form sends text
    assert twin.status_code == 200 and twin.json()["patch"]["scores"] == as_text["scores"]


def test_logit_lens_route_and_page(client, atlas, model):
    r = client.post("/api/logit-lens", json={"modelId": atlas.model, "prompt": PROMPT, "k": 3, "target_token": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = encode_text(model, PROMPT)
    with torch.inference_mode():
        top = torch.topk(model.hf(input_ids=torch.tensor([ids])).logits[0], 3, dim=-1).indices
    assert [[t["id"] for t in cell] for cell in body["top"][-1]] == top.tolist()
    page = client.get("/experiments", params={"tool": "lens", "prompt": "<script>x</script>", "model": atlas.model})
    assert page.status_code == 200 and 'id="lens-table"' in page.text and "<script>x</script>" not in page.text
    assert "not valid" not in client.get("/experiments").text


def test_dla_routes_sum_to_the_target_logit(client, atlas, model):
    base = {"modelId": atlas.model, "prompt": PROMPT, "target_token": 9}
    for extra in ({}, {"layer": atlas.sources[1]}):
        body = client.post("/api/dla", json={**base, **extra}).json()
        total = sum(i["contribution"] for i in body["items"]) + body["others"] + body["remainder"]
        assert total == pytest.approx(body["target_logit"], abs=1e-4)
    body = client.post("/api/dla", json={**base, "layer": atlas.sources[0], "index": 3}).json()
    expected = latent_logit_effect(Latent(NeuronSource(model, 1), 3), model, 9)
    assert body["items"][0]["per_unit"] == pytest.approx(expected, abs=1e-5)
    assert len(body["contributions"]) == len(body["tokens"])
    r = client.post("/api/dla", json={**base, "target_token": "two tokens here"})
    assert r.status_code == 422 and "not one" in r.json()["detail"]


def test_feature_page_has_the_experiments_panel(client, atlas):
    page = client.get(f"/{atlas.model}/{atlas.sources[0]}/3", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert 'id="experiments"' in page.text and "/static/experiments.js" in page.text
    assert client.get("/static/experiments.js").status_code == 200
