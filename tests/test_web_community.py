"""Accounts and community routes on SQLite and PostgreSQL: login, sessions, CSRF, API keys,
roles, private atlases; explanations, votes, comments, lists, user pages, the explained filter.
The security walk sends every write route of the OpenAPI spec anonymously and expects 401/403."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from latentpedia.web import create_app
from latentpedia.web.auth import SESSION_COOKIE
from tests.community_fixtures import client, store  # noqa: F401  (module fixtures)
from tests.community_fixtures import PASSWORD, CommunityAtlas

HTML = {"accept": "text/html"}
SOURCE = "1-mlp"
COMPUTE_EXT, LOGIN_EXT, READ_EXT = "x-latentpedia-compute", "x-latentpedia-login", "x-latentpedia-read"
WRITE_METHODS = ("post", "put", "patch", "delete")


def login(app_client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the JSON route; returns the session's CSRF token (the cookie is kept)."""
    response = app_client.post("/api/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


def ref(catlas: CommunityAtlas, index: int, layer: str = SOURCE) -> dict:
    return {"modelId": catlas.model, "layer": layer, "index": index}


def feature(client: TestClient, catlas: CommunityAtlas, index: int) -> dict:
    response = client.get(f"/api/feature/{catlas.model}/{SOURCE}/{index}")
    assert response.status_code == 200
    return response.json()


# the security walk


def _fill(path: str, catlas: CommunityAtlas) -> str:
    values = {"model": catlas.model, "source": SOURCE, "index": "0", "username": "alice", "token": "x"}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "1"), path)


def write_operations(client: TestClient) -> list[tuple[str, str, dict]]:
    spec = client.get("/openapi.json").json()
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items() if method in WRITE_METHODS]


def test_every_write_route_refuses_anonymous_callers(client, catlas):
    anonymous = TestClient(client.app)
    checked, logins, reads = [], [], []
    for method, path, op in write_operations(client):
        if op.get(COMPUTE_EXT):
            continue
        if op.get(READ_EXT):  # a read whose query is a POST body, as in Neuronpedia's API
            reads.append(path)
            continue
        if op.get(LOGIN_EXT):
            logins.append(path)
            continue
        response = anonymous.request(method.upper(), _fill(path, catlas), json={})
        assert response.status_code in (401, 403), f"{method.upper()} {path} answered {response.status_code} anonymously"
        checked.append(path)
    assert sorted(logins) == ["/api/login", "/api/play/signup"]  # signing in, and the game's self sign-up
    assert sorted(reads) == ["/api/list/get", "/api/umap"]
    assert {"/api/explanation/new", "/api/comment/new", "/api/list/new", "/api/key/new", "/api/user/new"} <= set(checked)
    for path in ("/logout", "/form"):  # HTML form routes (not in the spec)
        assert anonymous.post(path).status_code == 401


def test_every_write_route_refuses_a_session_without_csrf_token(client, catlas):
    session = TestClient(client.app)
    login(session, "alice")
    for method, path, op in write_operations(client):
        if op.get(COMPUTE_EXT) or op.get(LOGIN_EXT) or op.get(READ_EXT):
            continue
        response = session.request(method.upper(), _fill(path, catlas), json={})
        assert response.status_code == 403, f"{method.upper()} {path} answered {response.status_code} without CSRF token"
        assert "CSRF" in response.json()["detail"]
    wrong = session.post("/api/comment/new", json={**ref(catlas, 1), "text": "x"}, headers={"x-csrf-token": "wrong"})
    assert wrong.status_code == 403


def test_admin_routes_refuse_users(client, catlas, store):
    store.add_source(catlas.model, "9-mlp", "mlp", "blocks.9.mlp.hook_post", 9, 8, 4)  # a throwaway source
    assert client.delete(f"/api/source/{catlas.model}/9-mlp", headers=catlas.key("alice")).status_code == 403
    body = {"username": "carol", "password": "long enough"}
    assert client.post("/api/user/new", json=body, headers=catlas.key("bob")).status_code == 403
    made = client.post("/api/user/new", json=body, headers=catlas.key("root"))
    assert made.status_code == 200 and made.json()["role"] == "user"
    assert client.post("/api/user/new", json=body, headers=catlas.key("root")).status_code == 409
    bad = client.post("/api/user/new", json={**body, "username": "<script>"}, headers=catlas.key("root"))
    assert bad.status_code == 400 and "invalid username" in bad.json()["detail"]
    assert client.delete(f"/api/source/{catlas.model}/9-mlp", headers=catlas.key("root")).json()["ok"]
    assert store.get_source(catlas.model, "9-mlp") is None
    assert client.delete(f"/api/source/{catlas.model}/9-mlp", headers=catlas.key("root")).status_code == 404


# sessions, CSRF, API keys


def test_login_form_sets_a_strict_cookie_and_logout_ends_the_session(client, catlas, store):
    browser = TestClient(client.app, follow_redirects=False)
    forged = browser.post("/login", data={"username": "alice", "password": PASSWORD}, headers={"origin": "http://evil.example"})
    assert forged.status_code == 403 and SESSION_COOKIE not in forged.headers.get("set-cookie", "")
    wrong = browser.post("/login", data={"username": "alice", "password": "nope", "next": "/"}, headers=HTML)
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    response = browser.post("/login", data={"username": "alice", "password": PASSWORD, "next": "//evil.example/x"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert response.headers["x-frame-options"] == "DENY" and response.headers["x-content-type-options"] == "nosniff"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    token = browser.cookies[SESSION_COOKIE]
    user, csrf = store.session_user(token)
    assert user.username == "alice"
    page = browser.get("/account", headers=HTML)
    assert page.status_code == 200 and f'name="csrf-token" content="{csrf}"' in page.text
    assert browser.post("/logout").status_code == 403  # no CSRF token
    assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert store.session_user(token) is None
    assert browser.get("/account", headers=HTML).status_code == 303  # to /login


def test_session_with_csrf_header_can_write(client, catlas):
    session = TestClient(client.app)
    csrf = login(session, "bob")
    made = session.post("/api/comment/new", json={**ref(catlas, 2), "text": "via session"}, headers={"x-csrf-token": csrf})
    assert made.status_code == 200 and made.json()["username"] == "bob"
    assert session.get("/api/account").json()["user"]["username"] == "bob"
    assert session.post("/api/logout", headers={"x-csrf-token": csrf}).status_code == 200
    assert session.get("/api/account").status_code == 401


def test_password_change_needs_the_old_password_and_ends_sessions(client, catlas, store):
    store.add_user("dora", PASSWORD)
    session = TestClient(client.app)
    csrf = login(session, "dora")
    body = {"old_password": "wrong password", "new_password": "a new password"}
    assert session.post("/api/account/password", json=body, headers={"x-csrf-token": csrf}).status_code == 403
    body["old_password"] = PASSWORD
    assert session.post("/api/account/password", json=body, headers={"x-csrf-token": csrf}).status_code == 200
    assert session.get("/api/account").status_code == 401  # the session ended
    assert login(session, "dora", "a new password")


def test_api_keys_are_shown_once_listed_by_prefix_and_revocable(client, catlas):
    made = client.post("/api/key/new", json={"name": "script"}, headers=catlas.key("alice"))
    assert made.status_code == 200
    key = made.json()["key"]
    assert made.json()["prefix"] == key[:8]
    listed = client.get("/api/account", headers={"x-api-key": key}).json()["api_keys"]
    assert [k["prefix"] for k in listed if k["name"] == "script"] == [key[:8]] and "key" not in listed[0]
    assert client.delete(f"/api/key/{made.json()['id']}", headers=catlas.key("bob")).status_code == 404  # not bob's
    assert client.delete(f"/api/key/{made.json()['id']}", headers={"x-api-key": key}).json()["revoked_at"]
    refused = client.post("/api/comment/new", json={**ref(catlas, 1), "text": "x"}, headers={"x-api-key": key})
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert client.get("/api/account", headers={"x-api-key": "lp_made_up"}).status_code == 401


def test_private_atlas_refuses_anonymous_reads(catlas):
    with TestClient(create_app(catlas.url, private=True), follow_redirects=False) as private:
        assert private.get("/api/home").status_code == 401
        assert private.get(f"/api/feature/{catlas.model}/{SOURCE}/0").status_code == 401
        page = private.get("/", headers=HTML)
        assert page.status_code == 401 and "/login" in page.text
        assert private.get("/login").status_code == 200 and private.get("/static/style.css").status_code == 200
        assert private.get("/api/home", headers=catlas.key("bob")).status_code == 200
        login(private, "bob")
        assert private.get("/api/home").status_code == 200


# community data


def test_explanations_votes_and_scores_in_the_feature_json(client, catlas, store):
    made = client.post("/api/explanation/new", json={**ref(catlas, 4), "text": " commas in lists "}, headers=catlas.key("alice"))
    assert made.status_code == 200, made.text
    human = made.json()
    assert human["text"] == "commas in lists" and human["author"] == "alice" and human["method"] == "human"
    source_id = store.get_source(catlas.model, SOURCE).id
    auto = store.add_explanation(source_id, 4, "punctuation", "llm-tokact", explainer_model="smollm2-135m")
    store.add_score(auto, "detection", status="ok", score=0.7, baseline_score=0.5, baseline_explanation_id=human["id"])
    vote = lambda who, value, eid=auto: client.post(f"/api/explanation/{eid}/vote", json={"value": value}, headers=catlas.key(who))  # noqa: E731
    assert vote("alice", 1).json()["vote_score"] == 1
    assert vote("bob", 1).json()["vote_score"] == 2
    assert vote("bob", -1).json() == {"explanation_id": auto, "vote_score": 0, "my_vote": -1}  # changed, not added
    assert vote("bob", 5).status_code == 422
    assert vote("bob", 1, eid=99999).status_code == 404
    vote("bob", 1)
    shown = feature(client, catlas, 4)["explanations"]
    assert [e["id"] for e in shown] == [auto, human["id"]]
    assert shown[0]["author"] is None and shown[0]["vote_score"] == 2 and shown[0]["explainer_model"] == "smollm2-135m"
    assert shown[0]["scores"][0] | {"created_at": None} == shown[0]["scores"][0] | {"created_at": None}
    assert (shown[0]["scores"][0]["score"], shown[0]["scores"][0]["baseline_score"]) == (0.7, 0.5)
    html = client.get(f"/{catlas.model}/{SOURCE}/4", headers=HTML).text
    assert "commas in lists" in html and "baseline" in html
    assert client.delete(f"/api/explanation/{human['id']}", headers=catlas.key("bob")).status_code == 403
    assert client.delete(f"/api/explanation/{human['id']}", headers=catlas.key("alice")).status_code == 200
    assert [e["id"] for e in feature(client, catlas, 4)["explanations"]] == [auto]


def test_explanation_input_errors_are_clear(client, catlas):
    post = lambda body: client.post("/api/explanation/new", json=body, headers=catlas.key("alice"))  # noqa: E731
    assert post({**ref(catlas, 0, layer="nope"), "text": "x"}).status_code == 404
    out_of_range = post({**ref(catlas, 10**6), "text": "x"})
    assert out_of_range.status_code == 400 and "latents 0.." in out_of_range.json()["detail"]
    assert post({**ref(catlas, 0), "text": ""}).status_code == 422
    assert post({**ref(catlas, 0), "text": "   "}).status_code == 400
    assert post({**ref(catlas, 0), "text": "x" * 2001}).status_code == 422


def test_comments_and_user_pages(client, catlas):
    made = client.post("/api/comment/new", json={**ref(catlas, 6), "text": "<b>bold?</b>"}, headers=catlas.key("bob"))
    assert made.status_code == 200
    assert feature(client, catlas, 6)["comments"][-1]["text"] == "<b>bold?</b>"
    page = client.get("/user/bob", headers=HTML)
    assert page.status_code == 200 and "&lt;b&gt;bold?&lt;/b&gt;" in page.text
    twin = re.fullmatch(r'<([^>]+)>; rel="alternate"; type="application/json"', page.headers["link"]).group(1)
    data = client.get(twin).json()
    assert data["user"]["username"] == "bob" and any(c["id"] == made.json()["id"] for c in data["comments"])
    assert client.get("/api/user/nobody").status_code == 404
    assert client.delete(f"/api/comment/{made.json()['id']}", headers=catlas.key("alice")).status_code == 403
    assert client.delete(f"/api/comment/{made.json()['id']}", headers=catlas.key("root")).status_code == 200  # admin


def test_lists_private_public_and_shared(client, catlas):
    made = client.post("/api/list/new", json={"name": "my list", "description": "d"}, headers=catlas.key("alice")).json()
    list_id, share_url = made["id"], made["share_url"]
    assert not made["public"] and share_url.startswith("/list/shared/")
    added = client.post(f"/api/list/{list_id}/add", json={**ref(catlas, 3), "note": "n"}, headers=catlas.key("alice"))
    assert added.status_code == 200 and [i["index"] for i in added.json()["items"]] == [3]
    assert client.post(f"/api/list/{list_id}/add", json=ref(catlas, 5), headers=catlas.key("bob")).status_code == 404
    assert client.get(f"/api/list/{list_id}").status_code == 404  # private: anonymous cannot see it
    assert client.get(f"/api/list/{list_id}", headers=catlas.key("bob")).status_code == 404
    shared = client.get("/api" + share_url)
    assert shared.status_code == 200 and shared.json()["list"]["share_url"] is None and not shared.json()["editable"]
    assert client.get(share_url, headers=HTML).status_code == 200
    assert "my list" not in str(client.get("/api/user/alice").json()["lists"])
    client.post(f"/api/list/{list_id}/update", json={"public": True}, headers=catlas.key("alice"))
    assert client.get(f"/api/list/{list_id}").json()["items"][0]["note"] == "n"
    assert client.post(f"/api/list/{list_id}/add", json=ref(catlas, 5), headers=catlas.key("bob")).status_code == 403
    renewed = client.post(f"/api/list/{list_id}/update", json={"new_share_token": True}, headers=catlas.key("alice")).json()
    assert renewed["share_url"] != share_url and client.get("/api" + share_url).status_code == 404
    removed = client.post(f"/api/list/{list_id}/remove", json=ref(catlas, 3), headers=catlas.key("alice"))
    assert removed.json()["items"] == []
    assert client.delete(f"/api/list/{list_id}", headers=catlas.key("alice")).json()["ok"]


def test_source_page_filters_explained_latents(client, catlas, store):
    source_id = store.get_source(catlas.model, SOURCE).id
    store.add_explanation(source_id, 9, "explained latent", "human")
    explained = store.explained_indices(source_id)
    url = f"/api/source/{catlas.model}/{SOURCE}?limit=500"
    only = client.get(url + "&explained=true").json()
    assert {r["index"] for r in only["latents"]} == explained and only["total"] == len(explained)
    assert next(r for r in only["latents"] if r["index"] == 9)["explanation"] == "explained latent"
    rest = client.get(url + "&explained=false").json()
    assert not {r["index"] for r in rest["latents"]} & explained
    assert rest["total"] + only["total"] == client.get(url).json()["total"]
    page = client.get(f"/{catlas.model}/{SOURCE}?explained=true", headers=HTML)
    assert page.status_code == 200 and "explained latent" in page.text and "explained=true" in page.headers["link"]


def test_login_attempts_are_rate_limited(catlas):
    from latentpedia.web.ratelimit import RateLimiter

    app = create_app(catlas.url, private=False)
    with TestClient(app) as fresh:
        app.state.login_limiter = RateLimiter(per_minute=1, burst=2)
        wrong = {"username": "alice", "password": "guess"}
        assert [fresh.post("/api/login", json=wrong).status_code for _ in range(2)] == [401, 401]
        limited = fresh.post("/api/login", json={"username": "alice", "password": PASSWORD})
        assert limited.status_code == 429 and "too many login attempts" in limited.json()["detail"]
        assert int(limited.headers["retry-after"]) > 0


def test_community_pages_advertise_their_json_twins(client, catlas):
    made = client.post("/api/list/new", json={"name": "twins", "public": True}, headers=catlas.key("bob")).json()
    for path in ("/user/bob", made["url"], made["share_url"], "/account"):
        page = client.get(path, headers={**HTML, **catlas.key("bob")})
        assert page.status_code == 200, path
        twin = re.fullmatch(r'<([^>]+)>; rel="alternate"; type="application/json"', page.headers["link"]).group(1)
        data = client.get(twin, headers=catlas.key("bob"))
        assert data.status_code == 200 and data.headers["content-type"] == "application/json", path
    assert client.get("/api/account").status_code == 401


def test_form_bridge_calls_the_json_routes_for_browsers_without_javascript(client, catlas, store):
    browser = TestClient(client.app, follow_redirects=False)
    login(browser, "alice")
    csrf = store.session_user(browser.cookies[SESSION_COOKIE])[1]
    page = f"/{catlas.model}/{SOURCE}/12"
    form = {"_action": "/api/comment/new", "_method": "POST", "_next": page, "_ints": "index", "csrf_token": csrf,
            "modelId": catlas.model, "layer": SOURCE, "index": "12", "text": "posted without JavaScript"}
    assert browser.post("/form", data={**form, "csrf_token": "wrong"}).status_code == 403
    done = browser.post("/form", data=form)
    assert done.status_code == 303 and done.headers["location"] == page
    assert feature(client, catlas, 12)["comments"][-1]["text"] == "posted without JavaScript"
    made = browser.post("/form", data={**form, "_action": "/api/list/new", "_bools": "public", "_ints": "", "name": "no-js"})
    assert made.status_code == 303 and [lst.public for lst in store.lists_of(store.get_user("alice").id) if lst.name == "no-js"] == [False]
    refused = browser.post("/form", data={**form, "text": "   "}, headers=HTML)
    assert refused.status_code == 400 and "the comment is empty" in refused.text
    assert browser.post("/form", data={**form, "_action": "/elsewhere"}).status_code == 400
    assert browser.post("/form", data={**form, "index": "x"}).status_code == 400
    key = browser.post("/form", data={"_action": "/api/key/new", "_then": "show-key", "csrf_token": csrf, "name": "k"})
    assert key.status_code == 200 and re.search(r'<code id="new-key">lp_[\w-]+</code>', key.text)
