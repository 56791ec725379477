"""Automatic interpretation routes on SQLite and PostgreSQL: generate an explanation, score one
(beside a baseline), role checks, clear errors, and the feature page's actions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from latentpedia.web import create_app
from latentpedia.interp.registry import EXPLAINERS, SCORERS
from tests.community_fixtures import CommunityAtlas, community_atlas
from tests.conftest import BACKENDS

SOURCE = "1-mlp"


@pytest.fixture(scope="module", params=BACKENDS)
def catlas(request, tmp_path_factory) -> Iterator[CommunityAtlas]:
    mp = pytest.MonkeyPatch()
    mp.setenv("LATENTPEDIA_HOME", str(tmp_path_factory.mktemp("interp-home")))  # build checkpoints of our own
    with community_atlas(request.param, request, tmp_path_factory) as found:
        yield found
    mp.undo()


@pytest.fixture(scope="module")
def client(catlas) -> Iterator[TestClient]:
    with TestClient(create_app(catlas.url, private=False)) as test_client:
        yield test_client


def ref(catlas: CommunityAtlas, index: int) -> dict:
    return {"modelId": catlas.model, "layer": SOURCE, "index": index}


def test_generate_needs_a_user_and_llm_needs_an_admin(client, catlas, monkeypatch) -> None:
    assert client.post("/api/explanation/generate", json=ref(catlas, 2)).status_code == 401
    as_alice = catlas.key("alice")
    denied = client.post("/api/explanation/generate", json={**ref(catlas, 2), "explainer": "llm"}, headers=as_alice)
    assert denied.status_code == 403 and "admin" in denied.json()["detail"]
    monkeypatch.delenv("LATENTPEDIA_LLM_BASE_URL", raising=False)
    no_endpoint = client.post("/api/explanation/generate", json={**ref(catlas, 2), "explainer": "llm"}, headers=catlas.key("root"))
    assert no_endpoint.status_code == 400 and "no LLM endpoint" in no_endpoint.json()["detail"]


def test_generate_offline_with_embedding_score(client, catlas) -> None:
    response = client.post("/api/explanation/generate", json=ref(catlas, 3), headers=catlas.key("alice"))
    assert response.status_code == 200, response.text
    (expl,) = response.json()
    assert expl["method"] == "offline" and expl["author"] is None and expl["prompt_version"] == "offline-v1"
    (score,) = expl["scores"]
    assert score["scorer"] == "embedding" and score["status"] == "ok"
    assert 0 <= score["score"] <= 1 and score["baseline_score"] is not None
    again = client.post("/api/explanation/generate", json=ref(catlas, 3), headers=catlas.key("alice"))
    assert [e["id"] for e in again.json()] == [expl["id"]]  # already explained: nothing new
    page = client.get(f"/api/feature/{catlas.model}/{SOURCE}/3").json()
    assert any(e["id"] == expl["id"] and e["scores"] for e in page["explanations"])


def test_score_a_human_explanation(client, catlas) -> None:
    as_bob = catlas.key("bob")
    made = client.post("/api/explanation/new", json={**ref(catlas, 4), "text": "Python keywords"}, headers=as_bob)
    eid = made.json()["id"]
    assert client.post("/api/explanation/score", json={"explanation_id": eid}).status_code == 401
    scored = client.post("/api/explanation/score", json={"explanation_id": eid, "scorer": "embedding"}, headers=as_bob)
    assert scored.status_code == 200, scored.text
    (score,) = scored.json()["scores"]
    assert score["status"] == "ok" and score["baseline_score"] is not None
    assert score["details"]["baseline"]["latent_index"] != 4
    llm = client.post("/api/explanation/score", json={"explanation_id": eid, "scorer": "simulation"}, headers=as_bob)
    assert llm.status_code == 403
    missing = client.post("/api/explanation/score", json={"explanation_id": 10**6}, headers=as_bob)
    assert missing.status_code == 404 and "no explanation" in missing.json()["detail"]
    bad = client.post("/api/explanation/score", json={"explanation_id": eid, "scorer": "astrology"}, headers=as_bob)
    assert bad.status_code == 422


def test_unknown_latents_are_404(client, catlas) -> None:
    as_alice = catlas.key("alice")
    assert client.post("/api/explanation/generate", json=ref(catlas, 10**5), headers=as_alice).status_code == 404
    wrong = client.post("/api/explanation/generate", json={**ref(catlas, 0), "layer": "99-mlp"}, headers=as_alice)
    assert wrong.status_code == 404


def test_feature_page_shows_the_actions_to_users_only(client, catlas) -> None:
    url = f"/{catlas.model}/{SOURCE}/3"
    # the score form shows once the latent has an explanation (whatever ran before this test)
    made = client.post("/api/explanation/new", json={**ref(catlas, 3), "text": "closing brackets"}, headers=catlas.key("bob"))
    assert made.status_code in (200, 201), made.text
    anonymous = TestClient(client.app).get(url, headers={"accept": "text/html"}).text
    assert "generate explanation" not in anonymous
    html = client.get(url, headers={"accept": "text/html", **catlas.key("alice")}).text
    assert 'id="generate-form"' in html and 'data-action="/api/explanation/score"' in html
    assert 'value="llm"' not in html  # LLM actions are offered to admins only
    admin = client.get(url, headers={"accept": "text/html", **catlas.key("root")}).text
    assert 'value="llm"' in admin and 'value="simulation"' in admin
    # The choices are the registries' (a new scorer or explainer shows up without a template edit)
    for kind in [*EXPLAINERS.values(), *SCORERS.values()]:
        option = f'<option value="{kind.name}"'
        assert option in admin
        assert (option in html) == (not kind.needs_llm), kind.name
