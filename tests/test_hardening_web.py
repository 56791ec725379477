"""Bad input as an attacker or a careless user sends it, on SQLite and PostgreSQL.

- Unstorable text: every route of the OpenAPI spec (path and query parameters, every string
  field of its JSON body, arrays of objects included), the HTML pages' path parameters and
  the login form get a NUL character and a lone surrogate. No answer is a 5xx, both databases
  answer alike, nothing unstorable is stored, and the PostgreSQL pool still works afterwards.
- Logins from any origin but the server's own (`Origin: null` included) are refused.
- Rate limits key on the real client: `X-Forwarded-For` counts only from trusted proxies, and
  password changes are limited per address and per account.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import String, Text, select, text

from latentpedia.store.metadata import Base
from latentpedia.web import create_app
from latentpedia.web.ratelimit import RateLimiter
from tests.community_fixtures import PASSWORD, CommunityAtlas, community_atlas
from tests.conftest import BACKENDS

NUL, SURROGATE = "bad\x00name", "bad\ud800name"  # what a JSON body can carry
URL_NUL, URL_SURROGATE = "bad%00name", "bad%ED%A0%80name"  # what a URL or a form can carry
SOURCE = "1-mlp"
UNLIMITED = ("rate_limiter", "login_limiter", "password_limiter")


def no_limits(app) -> None:
    for name in UNLIMITED:
        setattr(app.state, name, RateLimiter(per_minute=0))


# ---- example values for the parameters and fields the spec names


def plain_value(name: str, catlas: CommunityAtlas) -> Any:
    values = {"modelId": catlas.model, "model": catlas.model, "layer": SOURCE, "source": SOURCE, "username": "alice",
              "password": PASSWORD, "old_password": PASSWORD, "new_password": PASSWORD, "token": "no-such-token",
              "answer_token": " the", "foil_token": " a", "target_token": " the", "hook": "blocks.1.hook_resid_post"}  # fmt: skip
    return values.get(name, "the cat sat on the mat")


def resolve(spec: dict, schema: dict) -> dict:
    """`schema` with a `$ref` followed and an `anyOf` reduced to its first non-null branch."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        string = [b for b in branches if b.get("type") == "string"]
        return resolve(spec, (string or branches)[0])
    return schema


def example(spec: dict, schema: dict, name: str, catlas: CommunityAtlas) -> Any:
    """A plausible value for a field (objects: their required fields only)."""
    schema = resolve(spec, schema)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {k: example(spec, s, k, catlas) for k, s in schema.get("properties", {}).items() if k in schema.get("required", [])}
    if kind == "array":
        item = resolve(spec, schema.get("items", {}))
        return [example(spec, item, name, catlas)] if "properties" in item else []
    return {"string": lambda: plain_value(name, catlas), "integer": lambda: 1 if "id" in name else 0,
            "number": lambda: 0.5, "boolean": lambda: False}.get(kind, lambda: None)()  # fmt: skip


def string_fields(spec: dict, schema: dict) -> Iterator[tuple[tuple, dict]]:
    """(path, schema) of every string field, also inside arrays of objects."""
    schema = resolve(spec, schema)
    for name, sub in schema.get("properties", {}).items():
        sub = resolve(spec, sub)
        if sub.get("type") == "string":
            yield (name,), sub
        elif sub.get("type") == "array" and "properties" in resolve(spec, sub.get("items", {})):
            for inner, _ in string_fields(spec, sub["items"]):
                yield (name, 0, *inner), sub


def injected_body(spec: dict, schema: dict, path: tuple, bad: str, catlas: CommunityAtlas) -> dict:
    """A plausible body with the string at `path` (names and array indices) set to `bad`."""
    body = example(spec, schema, "", catlas)
    target, sub = body, resolve(spec, schema)
    for step in path[:-1]:
        if isinstance(step, int):  # into an array: make sure it has an item
            sub = resolve(spec, sub["items"])
            if not target:
                target.append(example(spec, sub, "", catlas))
        else:
            sub = resolve(spec, sub["properties"][step])
            if not target.get(step):
                target[step] = [] if sub.get("type") == "array" else example(spec, sub, step, catlas)
        target = target[step]
    target[path[-1]] = bad
    return body


# ---- the walk


@dataclass
class Walk:
    statuses: dict[str, int] = field(default_factory=dict)  # request -> status
    server_errors: list[str] = field(default_factory=list)
    no_detail: list[str] = field(default_factory=list)
    stored_bad_text: list[str] = field(default_factory=list)

    def record(self, label: str, response) -> None:
        self.statuses[label] = response.status_code
        if response.status_code >= 500:
            self.server_errors.append(f"{label}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400 and label.split()[1].startswith("/api/") and "detail" not in response.json():
            self.no_detail.append(label)


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


def path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)(?::\w+)?\}", path)


def walk_paths(client: TestClient, catlas: CommunityAtlas, walk: Walk, routes: list[tuple[str, str]], headers: dict) -> None:
    """Each string path parameter of each (method, path) replaced by unstorable text."""
    for method, path in routes:
        plain = {p: "1" if p.endswith("id") or p == "index" else str(plain_value(p, catlas)) for p in path_params(path)}
        for param in [p for p in plain if plain[p] != "1"]:
            for bad in (URL_NUL, URL_SURROGATE):
                response = client.request(method, fill(path, {**plain, param: bad}), headers=headers)
                walk.record(f"{method} {path} path:{param}={bad}", response)


def walk_spec(client: TestClient, catlas: CommunityAtlas, walk: Walk) -> None:
    spec = client.get("/openapi.json").json()
    headers = catlas.key("root")
    operations = [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    walk_paths(client, catlas, walk, [(m, p) for m, p, _ in operations], headers)
    for method, path, op in operations:
        url = fill(path, {p: "1" if p.endswith("id") or p == "index" else str(plain_value(p, catlas)) for p in path_params(path)})
        for param in op.get("parameters", []):
            if param["in"] == "query" and resolve(spec, param["schema"]).get("type") == "string":
                for bad in (URL_NUL, URL_SURROGATE):
                    walk.record(f"{method} {path} query:{param['name']}={bad}", client.request(method, f"{url}?{param['name']}={bad}", headers=headers))
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        for where, _ in string_fields(spec, body) if body else ():
            for bad in (NUL, SURROGATE):
                sent = injected_body(spec, body, where, bad, catlas)
                raw = json.dumps(sent)  # ASCII escapes: a lone surrogate travels as \\ud800
                response = client.request(method, url, content=raw, headers={**headers, "content-type": "application/json"})
                walk.record(f"{method} {path} body:{'.'.join(map(str, where))}={bad!r}", response)


def walk_pages_and_login_form(client: TestClient, catlas: CommunityAtlas, walk: Walk) -> None:
    hidden = [("GET", r.path) for r in client.app.routes if isinstance(r, APIRoute) and not r.include_in_schema and "GET" in r.methods]
    walk_paths(client, catlas, walk, hidden, {"accept": "text/html"})
    form = {"username": "alice", "password": PASSWORD, "next": "/"}
    for name in form:
        for bad in (URL_NUL, URL_SURROGATE):
            body = "&".join(f"{k}={bad if k == name else v}" for k, v in form.items())
            response = client.post("/login", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
            walk.record(f"POST /login form:{name}={bad}", response)


def unstorable_text_in_store(engine) -> list[str]:
    """Every stored text holding a NUL or a lone surrogate ("table.column: value")."""
    found = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for column in [c for c in table.columns if isinstance(c.type, String | Text)]:
                for (value,) in conn.execute(select(column).where(column.is_not(None))):
                    if "\x00" in value or re.search("[\ud800-\udfff]", value):
                        found.append(f"{table.name}.{column.name}: {value!r}")
    return found


def pool_still_works(client: TestClient) -> None:
    engine = client.app.state.store.engine
    held = [engine.connect() for _ in range(engine.pool.size())]  # every pooled connection, at once
    try:
        assert all(conn.execute(text("SELECT 1")).scalar() == 1 for conn in held)
    finally:
        for conn in held:
            conn.close()
    assert client.get("/api/home").status_code == 200
    assert client.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 200


_WALKS: dict[str, Walk] = {}


def walked(backend: str, request, tmp_path_factory) -> Walk:
    """The walk over one backend's community atlas (run once per test session)."""
    if backend not in _WALKS:
        with community_atlas(backend, request, tmp_path_factory) as catlas:
            app = create_app(catlas.url, private=False)
            with TestClient(app, raise_server_exceptions=False) as client:
                no_limits(app)
                walk = Walk()
                walk_spec(client, catlas, walk)
                walk_pages_and_login_form(client, catlas, walk)
                pool_still_works(client)
                walk.stored_bad_text = unstorable_text_in_store(app.state.store.engine)
        _WALKS[backend] = walk
    return _WALKS[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_route_fails_on_unstorable_text(backend, request, tmp_path_factory):
    walk = walked(backend, request, tmp_path_factory)
    assert len(walk.statuses) > 150  # the walk reached every route
    assert walk.server_errors == [], "\n".join(walk.server_errors)
    assert walk.no_detail == []
    assert walk.stored_bad_text == []
    assert walk.statuses["POST /api/login body:username='bad\\x00name'"] == 422
    assert walk.statuses["POST /api/comment/new body:text='bad\\ud800name'"] == 422
    assert walk.statuses["GET /api/user/{username} path:username=bad%00name"] == 422


@pytest.mark.postgres
def test_both_databases_answer_unstorable_text_alike(request, tmp_path_factory):
    sqlite, postgres = (walked(backend, request, tmp_path_factory) for backend in ("sqlite", "postgres"))
    differ = {k: (v, postgres.statuses.get(k)) for k, v in sqlite.statuses.items() if postgres.statuses.get(k) != v}
    assert differ == {} and sqlite.statuses.keys() == postgres.statuses.keys()


def test_the_store_refuses_unstorable_text_in_every_kind_of_statement(store):
    from latentpedia.store.textcheck import InvalidTextError
    from tests.test_store_community import seed

    source_id = seed(store)
    rows = [{"source_id": source_id, "index": i, "text": f"latent {i}", "method": "offline"} for i in range(5)]
    for bad, problem in ((NUL, "NUL character"), (SURROGATE, "unpaired surrogate")):
        with pytest.raises(InvalidTextError, match=f"^text: .*{problem}"):  # a multi-row INSERT, one bad row
            store.add_explanations_bulk([*rows, {**rows[0], "text": bad}])
        with pytest.raises(InvalidTextError, match=f"^username: .*{problem}"):  # a lookup
            store.get_user(bad)
        with pytest.raises(InvalidTextError, match=f"^password: .*{problem}"):  # hashed, never bound
            store.authenticate("alice", bad)
    assert store.explained_indices(source_id) == set()  # all or nothing
    assert store.add_explanations_bulk(rows) and store.explained_indices(source_id) == set(range(5))


# ---- login CSRF: only the server's own origin


@pytest.fixture(scope="module")
def catlas(request, tmp_path_factory) -> Iterator[CommunityAtlas]:
    """The community atlas on SQLite (these checks are above the database)."""
    with community_atlas("sqlite", request, tmp_path_factory) as found:
        yield found


@pytest.fixture
def app(catlas):
    made = create_app(catlas.url, private=False)
    with TestClient(made):
        no_limits(made)
        yield made


LOGIN = {"username": "alice", "password": PASSWORD}
FOREIGN = [{"origin": "null"}, {"origin": "http://evil.example"}, {"origin": "http://testserver.evil.example"},
           {"origin": "file://"}, {"referer": "http://evil.example/page"}, {"sec-fetch-site": "cross-site"},
           {"sec-fetch-site": "same-site", "origin": "http://testserver"}]  # fmt: skip
OWN = [{}, {"origin": "http://testserver"}, {"referer": "http://testserver/login?next=/"},
       {"origin": "http://testserver", "sec-fetch-site": "same-origin"}]  # fmt: skip


@pytest.mark.parametrize("headers", FOREIGN)
def test_logins_from_any_other_origin_are_refused(app, headers):
    browser = TestClient(app, follow_redirects=False)
    for response in (browser.post("/api/login", json=LOGIN, headers=headers), browser.post("/login", data=LOGIN, headers=headers)):
        assert response.status_code == 403 and "cross-site login refused" in response.json()["detail"]
        assert "set-cookie" not in response.headers


@pytest.mark.parametrize("headers", OWN)
def test_logins_from_the_own_origin_or_scripts_pass(app, headers):
    browser = TestClient(app, follow_redirects=False)
    assert browser.post("/api/login", json=LOGIN, headers=headers).status_code == 200
    assert browser.post("/login", data=LOGIN, headers=headers).status_code == 303


def test_an_https_server_refuses_a_plain_http_origin(app):
    browser = TestClient(app, base_url="https://testserver")
    assert browser.post("/api/login", json=LOGIN, headers={"origin": "http://testserver"}).status_code == 403
    assert browser.post("/api/login", json=LOGIN, headers={"origin": "https://testserver"}).status_code == 200


# ---- client addresses and rate limits


def test_trusted_proxies_parse_and_refuse_nonsense():
    from latentpedia.errors import InvalidInputError
    from latentpedia.web.proxies import forwarded_client, parse_proxies

    proxies = parse_proxies(["127.0.0.1, 10.0.0.0/8", "::1"])
    assert [str(p) for p in proxies] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert forwarded_client("10.1.1.1", ["6.6.6.6", "203.0.113.5", "10.2.2.2"], proxies) == "203.0.113.5"
    assert forwarded_client("10.1.1.1", ["unknown"], proxies) == "10.1.1.1"
    assert forwarded_client("192.0.2.1", ["203.0.113.5"], proxies) == "192.0.2.1"
    with pytest.raises(InvalidInputError, match="'example.com' is not an IP address"):
        parse_proxies(["10.0.0.1 example.com"])


def failed_logins(client: TestClient, forwarded_for: str) -> int:
    return client.post("/api/login", json={"username": "alice", "password": "guess"}, headers={"x-forwarded-for": forwarded_for}).status_code


def test_forwarded_for_from_an_untrusted_peer_is_ignored(app):
    app.state.login_limiter = RateLimiter(per_minute=1, burst=2)
    client = TestClient(app, client=("192.0.2.9", 4000))
    assert [failed_logins(client, f"203.0.113.{i}") for i in range(3)] == [401, 401, 429]


def test_a_trusted_proxy_speaks_for_its_clients(catlas, monkeypatch):
    monkeypatch.setenv("LATENTPEDIA_TRUSTED_PROXIES", "10.0.0.0/8")
    made = create_app(catlas.url, private=False)
    with TestClient(made, client=("10.0.0.7", 4000)) as proxy:
        made.state.login_limiter = RateLimiter(per_minute=1, burst=2)
        assert [failed_logins(proxy, "203.0.113.1") for _ in range(2)] == [401, 401]
        assert failed_logins(proxy, "6.6.6.6, 203.0.113.1") == 429  # a forged left part changes nothing
        assert failed_logins(proxy, "203.0.113.2") == 401  # another client behind the proxy
        made.state.login_limiter = RateLimiter(per_minute=0)
        secure = proxy.post("/api/login", json=LOGIN, headers={"x-forwarded-for": "203.0.113.3", "x-forwarded-proto": "https",
                                                             "origin": "https://testserver"})  # fmt: skip
        assert secure.status_code == 200 and "secure" in secure.headers["set-cookie"].lower()


def test_password_changes_are_limited_per_account_and_per_address(app, catlas):
    app.state.password_limiter = RateLimiter(per_minute=1, burst=2)
    wrong = {"old_password": "not the password", "new_password": "a new long password"}
    here, there = (TestClient(app, client=(ip, 4000)) for ip in ("192.0.2.1", "192.0.2.2"))
    change = "/api/account/password"
    assert [here.post(change, json=wrong, headers=catlas.key("alice")).status_code for _ in range(2)] == [403, 403]
    elsewhere = there.post(change, json=wrong, headers=catlas.key("alice"))
    assert elsewhere.status_code == 429 and "for this account" in elsewhere.json()["detail"]
    other_user = here.post(change, json=wrong, headers=catlas.key("bob"))
    assert other_user.status_code == 429 and "from your address" in other_user.json()["detail"]
    assert int(other_user.headers["retry-after"]) > 0


def test_serve_trusts_only_the_proxies_it_is_given(monkeypatch, tmp_path):
    import uvicorn
    from typer.testing import CliRunner

    from latentpedia.cli import app as cli

    monkeypatch.setenv("LATENTPEDIA_TRUSTED_PROXIES", "")  # restored after the test
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    db = ["--db", f"sqlite:///{tmp_path / 'atlas.db'}"]
    ran = CliRunner().invoke(cli, ["serve", *db, "--trusted-proxy", "10.0.0.1", "--trusted-proxy", "192.168.0.0/16"])
    assert ran.exit_code == 0, ran.output
    assert calls[-1]["proxy_headers"] is False
    assert os.environ["LATENTPEDIA_TRUSTED_PROXIES"] == "10.0.0.1,192.168.0.0/16"
    monkeypatch.setenv("LATENTPEDIA_TRUSTED_PROXIES", "")
    assert CliRunner().invoke(cli, ["serve", *db]).exit_code == 0 and calls[-1]["proxy_headers"] is False
    bad = CliRunner().invoke(cli, ["serve", *db, "--trusted-proxy", "proxy.example"])
    assert bad.exit_code == 2 and "'proxy.example' is not an IP address" in bad.output
