"""Neuronpedia's error body and string `index` on our routes, on SQLite and PostgreSQL.

- Every JSON error carries Neuronpedia's `error` (one line) beside FastAPI's `detail`, with the
  status codes and headers (Retry-After, WWW-Authenticate, Allow) unchanged: 401, 403, 404,
  405, 422 (a schema refusal, unpaired surrogates, unstorable text), 429, 503, 504.
- The feature JSON, its explanations and comments, and what /api/explanation/new and
  /api/comment/new answer carry `index` as a decimal string, as Neuronpedia's objects do; the
  HTML page still counts with it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from latentpedia.engine.worker import LiveBusyError, LiveTimeoutError
from latentpedia.web import create_app
from latentpedia.web.errors import MAX_LISTED, error_message
from latentpedia.web.ratelimit import RateLimiter

SOURCE = "1-mlp"


@pytest.fixture(scope="module")
def client(catlas) -> Iterator[TestClient]:
    app = create_app(catlas.url, private=False)

    async def busy():
        raise LiveBusyError("the live model is busy: 4 requests are queued")

    async def too_slow():
        raise LiveTimeoutError("the request took longer than 0.3 s")

    for path, endpoint in (("/api/test-busy", busy), ("/api/test-slow", too_slow)):
        app.add_api_route(path, endpoint)
        app.router.routes.insert(0, app.router.routes.pop())  # before the /{model}/{source} pages
    with TestClient(app) as test_client:
        app.state.rate_limiter = RateLimiter(per_minute=0)
        yield test_client


def error_of(response, status: int) -> dict:
    """The JSON error body of `response`, checked: the status, `error` a non-empty line, and
    `detail` the same message when it is one."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"].strip() and "\n" not in body["error"], body
    if isinstance(body["detail"], str):
        assert body["error"] == " ".join(body["detail"].split()), body
    return body


# ---- error bodies


def test_not_found_from_the_fast_path_a_route_and_the_router(client, catlas):
    missing = error_of(client.get(f"/api/feature/{catlas.model}/{SOURCE}/999999"), 404)
    assert "999999" in missing["error"]
    assert "9-mlp" in error_of(client.get(f"/api/source/{catlas.model}/9-mlp"), 404)["error"]  # NotFoundError handler
    assert error_of(client.get("/api/no/such/route/at/all"), 404)["error"] == "Not Found"  # the router's HTTPException
    assert error_of(client.get("/api/list/987654"), 404)["error"]
    page = client.get(f"/{catlas.model}/9-mlp", headers={"accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_refused_request_says_every_field_in_one_line(client, catlas):
    body = error_of(client.post("/api/explanation/new", json={"modelId": catlas.model, "layer": SOURCE, "index": "x"},
                                headers=catlas.key("alice")), 422)  # fmt: skip
    assert isinstance(body["detail"], list) and len(body["detail"]) == 2
    assert "body.index" in body["error"] and "body.text" in body["error"]
    assert all(problem["msg"] in body["error"] for problem in body["detail"])
    many = [{"modelId": catlas.model} for _ in range(MAX_LISTED + 2)]
    crowd = error_of(client.post("/api/list/add-features", json={"listId": 1, "featuresToAdd": many}, headers=catlas.key("alice")), 422)
    assert "body.featuresToAdd[0].layer" in crowd["error"]
    assert crowd["error"].endswith(f"and {len(crowd['detail']) - MAX_LISTED} more") and len(crowd["detail"]) > MAX_LISTED


def test_unencodable_and_unstorable_text_are_422_with_both_keys(client, catlas):
    surrogate = client.post("/api/comment/new", content=b'{"modelId": "m", "layer": "1-mlp", "index": 0, "text": "a\\ud800b"}',
                            headers={"content-type": "application/json", **catlas.key("alice")})  # fmt: skip
    assert "body.text" in error_of(surrogate, 422)["error"]
    assert error_of(client.get(f"/api/source/{catlas.model}/bad%00name"), 422)["error"]


def test_auth_refusals_keep_their_headers(client, catlas):
    anonymous = client.post("/api/comment/new", json={"modelId": catlas.model, "layer": SOURCE, "index": 1, "text": "x"})
    assert "sign in" in error_of(anonymous, 401)["error"] and anonymous.headers["www-authenticate"] == "x-api-key"
    bad_key = client.post("/api/comment/new", json={"modelId": catlas.model, "layer": SOURCE, "index": 1, "text": "x"},
                          headers={"x-api-key": "lp_not-a-key"})  # fmt: skip
    assert "API key" in error_of(bad_key, 401)["error"]
    private = TestClient(create_app(catlas.url, private=True))
    with private:
        assert "private" in error_of(private.get(f"/api/feature/{catlas.model}/{SOURCE}/1"), 401)["error"]
        assert private.get(f"/{catlas.model}/{SOURCE}/1", headers={"accept": "text/html"}).headers["content-type"].startswith("text/html")


def test_community_errors_and_method_not_allowed(client, catlas):
    vote = client.post("/api/explanation/987654/vote", json={"value": 1}, headers=catlas.key("alice"))
    assert error_of(vote, 404)["error"]
    admins_only = client.post("/api/jobs", json={}, headers=catlas.key("alice"))
    assert admins_only.status_code in (403, 422) and error_of(admins_only, admins_only.status_code)["error"]
    wrong_method = client.put(f"/api/feature/{catlas.model}/{SOURCE}/1")
    assert error_of(wrong_method, 405)["error"] == "Method Not Allowed" and "GET" in wrong_method.headers["allow"]


def test_live_errors_keep_retry_after(client, catlas):
    busy = client.get("/api/test-busy")
    assert "busy" in error_of(busy, 503)["error"] and busy.headers["retry-after"] == "1"
    slow = client.get("/api/test-slow")
    assert "0.3 s" in error_of(slow, 504)["error"] and slow.headers["retry-after"] == "5"
    client.app.state.rate_limiter = RateLimiter(per_minute=1, burst=1)
    try:
        client.app.state.rate_limiter.acquire("testclient")
        limited = client.post("/api/search-all", json={"modelId": catlas.model, "text": "hi"})
        assert "per minute" in error_of(limited, 429)["error"] and int(limited.headers["retry-after"]) >= 1
    finally:
        client.app.state.rate_limiter = RateLimiter(per_minute=0)


def test_openapi_error_body_names_both_keys(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ErrorBody"]
    assert set(schema["required"]) == {"error", "detail"}


def test_error_message_is_one_line():
    assert error_message("no such\nlatent  here") == "no such latent here"
    problems = [{"loc": ["body", "features", i, "index"], "msg": "Input should be\na valid integer", "type": "int_parsing"}
                for i in range(MAX_LISTED + 3)]  # fmt: skip
    line = error_message(problems)
    assert line.startswith("body.features[0].index: Input should be a valid integer; body.features[1].index")
    assert line.endswith("; and 3 more") and line.count("valid integer") == MAX_LISTED
    assert error_message(["plain text"]) == "plain text" and error_message([]) == "invalid request"
    assert error_message({"loc": ["query", "q"], "msg": "too long"}) == "query.q: too long"


# ---- string index


def test_feature_json_and_its_community_parts_carry_string_index(client, catlas):
    index = 6
    made = client.post("/api/explanation/new", json={"modelId": catlas.model, "layer": SOURCE, "index": index, "text": "shape test"},
                       headers=catlas.key("alice"))  # fmt: skip
    assert made.status_code == 200 and made.json()["index"] == str(index)
    said = client.post("/api/comment/new", json={"modelId": catlas.model, "layer": SOURCE, "index": index, "text": "a comment"},
                       headers=catlas.key("alice"))  # fmt: skip
    assert said.status_code == 200 and said.json()["index"] == str(index)
    feature = client.get(f"/api/feature/{catlas.model}/{SOURCE}/{index}").json()
    assert feature["index"] == str(index) and feature["layer"] == SOURCE
    assert [e["index"] for e in feature["explanations"]] == [str(index)] * len(feature["explanations"]) and feature["explanations"]
    assert [c["index"] for c in feature["comments"]] == [str(index)]
    assert all(a["index"] == str(index) for a in feature["activations"])
    assert all(isinstance(i, int) for i in feature["topkCosSimIndices"] + feature["correlated_features_indices"])  # numbers, as Neuronpedia's
    page = client.get(f"/{catlas.model}/{SOURCE}/{index}", headers={"accept": "text/html"}).text
    assert f"← {index - 1}</a>" in page and f"{index + 1} →</a>" in page  # the page still counts with it


def test_openapi_says_string_where_the_json_has_one(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("FeaturePage", "ExplanationOut", "CommentOut", "ActivationResult", "SearchHit"):
        assert schemas[name]["properties"]["index"]["type"] == "string", name
    assert schemas["LatentRow"]["properties"]["index"]["type"] == "integer"  # our own source page keeps numbers
