"""The API never answers 500: property-based fuzzing of the whole OpenAPI spec (schemathesis +
hypothesis) against the ASGI app on a seeded atlas with its tiny live model, on SQLite and
PostgreSQL, plus hostile bodies sent to every operation (huge, lone surrogates, invalid UTF-8,
extreme floats, boundary integers, deep nesting).

Calls are made as a signed-in user (an API key), so write routes get past authentication and
their input checks are fuzzed too. Checks: no 5xx except 503/504 with Retry-After (a busy or too
slow live worker), and for 2xx answers, conformance to the declared response schema.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient

from latentpedia.engine.worker import LiveConfig
from latentpedia.store.api import Store
from latentpedia.web import create_app
from latentpedia.web.ratelimit import RateLimiter
from tests.conftest import BACKENDS, pg_schema_url
from tests.web_atlas import seed_atlas

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("LATENTPEDIA_FUZZ_EXAMPLES", 3))  # per operation, mode and database (~2.5 min per database here); raise it for a longer hunt
BUSY = (503, 504)  # the live worker's answers: must carry Retry-After
SKIPPED = {("POST", "/api/toy")}  # trains a toy model per call (seconds each): its bounds are tested in test_lab_web


class Fuzzed:
    def __init__(self, app, client: TestClient, key: str):
        self.app, self.client, self.key = app, client, key


def _user_key(url: str) -> str:
    store = Store.open(url)
    try:
        user = store.add_user("fuzzer", "a long enough password")
        return store.create_api_key(user.id, "fuzz")[0]
    finally:
        store.close()


@pytest.fixture(scope="module", params=BACKENDS)
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Fuzzed]:
    if request.param == "sqlite":
        folder = Path(tmp_path_factory.mktemp("fuzz"))
        yield from _app(seed_atlas(f"sqlite:///{folder / 'atlas.db'}", folder).url)
        return
    with pg_schema_url(request.getfixturevalue("pg_server_url")) as url:
        yield from _app(seed_atlas(url, Path(tmp_path_factory.mktemp("fuzz-pg"))).url)


def _app(url: str) -> Iterator[Fuzzed]:
    key = _user_key(url)
    app = create_app(url, live_config=LiveConfig(timeout=5.0, max_queue=4))
    with TestClient(app, raise_server_exceptions=False) as client:  # runs the lifespan (store, live worker)
        app.state.rate_limiter = RateLimiter(per_minute=0)
        yield Fuzzed(app, client, key)


def _problem(response) -> str | None:
    """What is wrong with an answer, if anything: a 5xx other than a busy/slow live worker, or a
    503/504 without Retry-After."""
    if response.status_code in BUSY:
        return None if "retry-after" in {k.lower() for k in response.headers} else f"{response.status_code} without Retry-After"
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    return None


def _fuzz(operation, key: str, mode) -> list[str]:
    """Run `operation` on generated cases of `mode`; the first problem of each kind, as text."""
    found: dict[str, str] = {}

    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        try:
            response = case.call(headers={"x-api-key": key}, timeout=30)
        except requests.exceptions.Timeout:
            found.setdefault("slow", f"{case.method} {case.formatted_path} ({mode}): no answer within 30 s")
            return
        except Exception as err:  # the in-process transport re-raises what the app did not handle: a 500
            found.setdefault("server", f"{case.as_curl_command()[:300]} ({mode}): 500 {type(err).__name__}: {str(err)[:200]}")
            return
        problem = _problem(response)
        if problem and "server" not in found:
            found["server"] = f"{case.method} {case.formatted_path} ({mode}): {problem}\n    {case.as_curl_command()[:400]}"
        if 200 <= response.status_code < 300 and "json" in response.headers.get("content-type", "") and "schema" not in found:
            try:
                case.validate_response(response, checks=[response_schema_conformance])
            except Exception as err:  # schemathesis' FailureGroup: the answer does not match its declared schema
                found["schema"] = f"{case.method} {case.formatted_path}: response does not match its schema: {str(err)[:300]}"

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
        pass
    return list(found.values())


def test_no_operation_answers_500(fuzzed: Fuzzed):
    """Every operation of the spec, data that fits the schema and data that does not."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if (op.method.upper(), op.path) not in SKIPPED]
    assert len(operations) > 40
    problems = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            problems += _fuzz(operation, fuzzed.key, mode)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------- hostile bodies

HOSTILE = {
    "huge": b'{"text": "' + b"a" * 1_000_000 + b'", "modelId": "x"}',
    "lone surrogate": b'{"text": "\\ud800", "prompt": "\\udfff", "modelId": "\\ud800", "name": "\\ud800", "layer": "\\ud800"}',
    "invalid utf-8": b'{"text": "\xff\xfe", "modelId": "\xc3"}',
    "extreme floats": b'{"strength": 1e308, "temperature": -1e308, "densityThreshold": 1e-320, "index": 1e308}',
    "boundary integers": b'{"index": 9223372036854775808, "k": -9223372036854775809, "numResults": 18446744073709551616}',
    "deep nesting": b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "not json": b"\x00\x01 not json",
    "nan": b'{"strength": NaN, "temperature": Infinity, "index": -Infinity}',
}


def _operations(app) -> list[tuple[str, str]]:
    spec = app.openapi()
    fill = {"model": "m", "source": "1-mlp", "index": "9223372036854775808", "list_id": "99999999999999999999"}
    out = []
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("post", "put", "patch", "delete"):
                concrete = path
                for name, value in fill.items():
                    concrete = concrete.replace("{" + name + "}", value)
                out.append((method, concrete.replace("{", "").replace("}", "")))
    return out


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_bodies_never_500(fuzzed: Fuzzed, kind: str):
    failures = []
    for method, path in _operations(fuzzed.app):
        response = fuzzed.client.request(method, path, content=HOSTILE[kind],
                                         headers={"x-api-key": fuzzed.key, "content-type": "application/json"})  # fmt: skip
        if response.status_code >= 500 and response.status_code not in BUSY:
            failures.append(f"{method.upper()} {path}: {response.status_code} {response.text[:200]}")
        if response.status_code in BUSY:
            assert "retry-after" in response.headers
    assert not failures, "\n".join(failures)


def test_huge_path_and_query_values_never_500(fuzzed: Fuzzed):
    paths = [p for p in fuzzed.app.openapi()["paths"] if "get" in fuzzed.app.openapi()["paths"][p]]
    failures = []
    for template in paths:
        for value in ("9223372036854775808", "-1", "%F0%9F%92%A9" * 50, "%ED%A0%80", "x" * 5000):
            path = template
            for name in ("model", "source", "index", "list_id", "graph_id", "username", "token", "key_id"):
                path = path.replace("{" + name + "}", value)
            if "{" in path:
                path = path.replace("{", "").replace("}", "")
            response = fuzzed.client.get(f"{path}?offset={value}&limit={value}&q={value}", headers={"x-api-key": fuzzed.key})
            if response.status_code >= 500 and response.status_code not in BUSY:
                failures.append(f"GET {path[:120]}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures[:40])


def test_blank_and_odd_query_values_never_500(fuzzed: Fuzzed):
    """Every declared query parameter of every GET operation, blank and odd, one at a time."""
    failures = []
    for path, item in fuzzed.app.openapi()["paths"].items():
        if "get" not in item or "{" in path:
            continue
        for param in (p["name"] for p in item["get"].get("parameters", []) if p["in"] == "query"):
            for value in ("", "-1", "1e400", "nan", "%00", "%ED%A0%80", "99999999999999999999"):
                response = fuzzed.client.get(f"{path}?{param}={value}", headers={"x-api-key": fuzzed.key})
                if response.status_code >= 500 and response.status_code not in BUSY:
                    failures.append(f"GET {path}?{param}={value}: {response.status_code} {response.text[:120]}")
    assert not failures, "\n".join(failures[:40])


def test_json_bodies_round_trip_as_valid_json(fuzzed: Fuzzed):
    """A 4xx answer to a hostile body is JSON with a message (never an HTML error or a traceback)."""
    response = fuzzed.client.post("/api/search-all", content=HOSTILE["lone surrogate"], headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500 and json.loads(response.text)
