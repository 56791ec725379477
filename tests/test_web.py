"""The web atlas over the seeded tiny atlas, on SQLite and PostgreSQL: every page and its JSON
twin, the feature JSON against the store, sorting/filtering/paging, 404s and escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.responses import HTMLResponse

from latentpedia.store.api import Store
from latentpedia.web import create_app
from latentpedia.web.app import ROUTERS
from latentpedia.web.pages import feature_page_data, home_page_data, source_page_data
from latentpedia.web.pages.source import LatentQuery
from latentpedia.engine.tokens import TokenText
from tests.conftest import BACKENDS
from tests.web_atlas import PAYLOAD, SeededAtlas, backend_atlas

HTML = {"accept": "text/html"}


@pytest.fixture(scope="module", params=BACKENDS)
def atlas(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[SeededAtlas]:
    """The seeded atlas on SQLite (shared by the session) or in a fresh PostgreSQL schema."""
    yield from backend_atlas(request, tmp_path_factory, "web-pg")


@pytest.fixture(scope="module")
def client(atlas: SeededAtlas) -> Iterator[TestClient]:
    with TestClient(create_app(atlas.url)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def store(atlas: SeededAtlas) -> Iterator[Store]:
    opened = Store.open(atlas.url)
    yield opened
    opened.close()


def twin_of(response) -> str:
    """The JSON twin URL a page advertises in its Link header."""
    match = re.fullmatch(r'<([^>]+)>; rel="alternate"; type="application/json"', response.headers["link"])
    assert match, response.headers.get("link")
    return match.group(1)


def page_paths(atlas: SeededAtlas) -> list[str]:
    source = atlas.sources[0]
    return ["/", f"/{atlas.model}/{source}", f"/{atlas.model}/{source}?order_by=max_act&desc=true&limit=7&offset=7",
            f"/{atlas.model}/{source}/0", f"/{atlas.model}/{atlas.sources[1]}/5"]  # fmt: skip


def test_every_page_renders_and_its_twin_is_its_page_data(client, atlas, store):
    expected = {
        "/": home_page_data(store),
        f"/{atlas.model}/{atlas.sources[0]}": source_page_data(store, atlas.model, atlas.sources[0]),
        f"/{atlas.model}/{atlas.sources[0]}?order_by=max_act&desc=true&limit=7&offset=7": source_page_data(
            store, atlas.model, atlas.sources[0], LatentQuery("max_act", True, 7, 7)),
        f"/{atlas.model}/{atlas.sources[0]}/0": feature_page_data(store, atlas.model, atlas.sources[0], 0),
        f"/{atlas.model}/{atlas.sources[1]}/5": feature_page_data(store, atlas.model, atlas.sources[1], 5),
    }  # fmt: skip
    assert list(expected) == page_paths(atlas)
    for path, data in expected.items():
        page = client.get(path, headers=HTML)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        twin = client.get(twin_of(page))
        assert twin.status_code == 200 and twin.headers["content-type"] == "application/json", path
        assert twin.json() == data.model_dump(mode="json"), path


ATLAS_PAGES = {"/", "/{model}/{source}", "/{model}/{source}/{index}"}
ATLAS_JSON = {"/api/home", "/api/source/{model}/{source}", "/api/feature/{model}/{source}/{index}"}


def _fill(path: str, atlas: SeededAtlas) -> str:
    return path.format(model=atlas.model, source=atlas.sources[0], index=3)


def test_every_html_route_has_a_json_twin_in_the_openapi_spec(client, atlas):
    spec = client.get("/openapi.json").json()
    json_paths = set(spec["paths"])
    templates = [re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$") for p in json_paths]
    routes = [r for router in ROUTERS for r in router.routes]
    html_routes = [r for r in routes if isinstance(r, APIRoute) and r.response_class is HTMLResponse]
    assert ATLAS_PAGES <= {r.path for r in html_routes}
    for route in html_routes:
        if route.path not in ATLAS_PAGES:  # other pages (accounts, lists, live...) are checked by their own tests
            continue
        page = client.get(_fill(route.path, atlas), headers=HTML)
        assert page.status_code == 200, route.path
        twin_path = twin_of(page).split("?")[0]
        assert any(t.match(twin_path) for t in templates), f"{route.path}: twin {twin_path} not in /openapi.json"
    for path in ATLAS_JSON:  # and every atlas JSON route answers
        assert client.get(_fill(path, atlas)).status_code == 200, path


def test_openapi_describes_the_page_models(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) >= ATLAS_JSON
    feature = spec["components"]["schemas"]["FeaturePage"]["properties"]
    for field in ("pos_str", "pos_values", "neg_str", "neg_values", "frac_nonzero", "freq_hist_data_bar_heights",
                  "freq_hist_data_bar_values", "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
                  "activations", "explanations"):  # fmt: skip
        assert field in feature
    activation = spec["components"]["schemas"]["Activation"]["properties"]
    assert {"tokens", "values", "maxValue", "maxValueTokenIndex", "binMin", "binMax"} <= set(activation)


def test_home_lists_models_sources_and_jobs(client, atlas):
    home = client.get("/api/home").json()
    assert [m["id"] for m in home["models"]] == [atlas.model]
    assert sorted(s["name"] for s in home["sources"]) == sorted(atlas.sources)
    assert all(s["status"] == "ready" and s["width"] == 128 and s["tokens_seen"] > 0 for s in home["sources"])
    assert home["jobs"] and home["jobs"][0]["status"] == "done"
    html = client.get("/").text
    for name in atlas.sources:
        assert f'href="/{atlas.model}/{name}"' in html


def test_feature_json_matches_the_store(client, atlas, store):
    source = store.get_source(atlas.model, atlas.sources[0])
    text = TokenText(store.get_vocab(atlas.model))
    for index in (0, 7, 127):
        page = client.get(f"/api/feature/{atlas.model}/{source.name}/{index}").json()
        latent = store.get_latent(source.id, index)
        assert page["modelId"] == atlas.model and page["layer"] == source.name and page["index"] == str(index)
        assert page["frac_nonzero"] == pytest.approx(latent["frac_nonzero"])
        assert page["pos_str"] == [text(t) for t, _ in latent["logits"]["pos"]]
        assert page["neg_values"] == pytest.approx([v for _, v in latent["logits"]["neg"]])
        assert page["freq_hist_data_bar_heights"] == latent["hist"]["counts"]
        assert len(page["freq_hist_data_bar_values"]) == len(latent["hist"]["counts"])
        assert page["logits_hist_data_bar_heights"] == latent["logits"]["hist"]["counts"]
        assert page["explanations"] == [] and page["logits_basis"] == latent["logits"]["basis"]
        assert [c["index"] for c in page["correlated"]] == [int(i) for i, _ in latent["correlated"]]
        assert [a["dim"] for a in page["aligned"]] == [int(d) for d, _ in latent["aligned"]]
        _check_activations(page["activations"], store.get_examples(source.id, index, with_tokens=True), text)


def _check_activations(activations: list[dict], examples: list[dict], text: TokenText) -> None:
    assert len(activations) == len(examples) > 0
    for act, example in zip(activations, examples, strict=True):
        assert act["token_ids"] == example["tokens"] and act["tokens"] == text.many(example["tokens"])
        assert len(act["values"]) == len(act["tokens"])
        assert [act["values"][p] for p in example["positions"]] == pytest.approx(example["values"])
        assert sum(1 for v in act["values"] if v) == sum(1 for v in example["values"] if v)
        assert act["maxValue"] == pytest.approx(example["max_value"]) and act["maxValueTokenIndex"] == example["max_pos"]
        assert act["kind"] == ("top" if example["kind"] == 0 else "quantile")
        if act["kind"] == "quantile":
            assert act["binMin"] < act["maxValue"] <= act["binMax"] + 1e-3


def test_feature_page_shows_every_panel(client, atlas):
    page = client.get(f"/api/feature/{atlas.model}/{atlas.sources[0]}/5").json()
    html = client.get(page["url"]).text
    assert html.count('<svg class="hist"') == 2  # activation and logit histograms
    assert 'class="tok on' in html and 'id="expand-context"' in html and "Quantile groups" in html
    for link in (page["prev_url"], page["next_url"], page["random_url"], *(c["url"] for c in page["correlated"])):
        assert f'href="{link}"' in html
    first = client.get(f"/api/feature/{atlas.model}/{atlas.sources[0]}/0").json()
    last = client.get(f"/api/feature/{atlas.model}/{atlas.sources[0]}/127").json()
    assert first["prev_url"] is None and last["next_url"] is None


def test_random_latent_redirects_to_a_feature_page(client, atlas):
    response = client.get(f"/{atlas.model}/{atlas.sources[0]}/random", follow_redirects=False)
    assert response.status_code == 307
    assert re.fullmatch(rf"/{atlas.model}/{atlas.sources[0]}/\d+", response.headers["location"])
    assert client.get(response.headers["location"]).status_code == 200


def test_source_table_sorts_filters_and_pages(client, atlas, store):
    base = f"/api/source/{atlas.model}/{atlas.sources[0]}"
    rows = client.get(base, params={"order_by": "max_act", "desc": "true", "limit": 500}).json()["latents"]
    maxima = [r["max_act"] for r in rows]
    assert len(rows) == 128 and maxima == sorted(maxima, reverse=True)
    densities = sorted(r["frac_nonzero"] for r in rows)
    low, high = densities[20], densities[90]
    page = client.get(base, params={"min_density": low, "max_density": high, "order_by": "frac_nonzero", "limit": 10}).json()
    assert page["total"] == sum(low <= d <= high for d in densities) == store.count_latents(
        store.get_source(atlas.model, atlas.sources[0]).id, min_density=low, max_density=high)
    assert all(low <= r["frac_nonzero"] <= high for r in page["latents"]) and len(page["latents"]) == 10
    assert page["prev_url"] is None and page["next_url"]
    second = client.get(page["next_url"], headers=HTML)
    assert second.status_code == 200
    nxt = client.get(twin_of(second)).json()
    assert nxt["offset"] == 10 and nxt["min_density"] == low and nxt["prev_url"]
    assert {r["index"] for r in nxt["latents"]}.isdisjoint(r["index"] for r in page["latents"])


@pytest.mark.parametrize("path, message", [
    ("/api/feature/nope/1-mlp/0", "unknown model 'nope'"),
    ("/api/feature/{model}/9-mlp/0", "no source '9-mlp'"),
    ("/api/feature/{model}/1-mlp/128", "no built latent 128"),
    ("/api/feature/{model}/1-mlp/-1", "no built latent -1"),
    ("/api/source/{model}/nope", "no source 'nope'"),
    ("/{model}/1-mlp/100000", "no built latent 100000"),
    ("/{model}/nope", "no source 'nope'"),
])  # fmt: skip
def test_unknown_things_are_clear_404s(client, atlas, path, message):
    response = client.get(path.format(model=atlas.model))
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    assert message in response.json()["detail"]
    if not path.startswith("/api/"):  # browsers get an HTML page saying the same
        page = client.get(path.format(model=atlas.model), headers=HTML)
        assert page.status_code == 404 and "Not found" in page.text


def test_bad_query_parameters_are_422(client, atlas):
    base = f"/api/source/{atlas.model}/{atlas.sources[0]}"
    for params in ({"order_by": "nonsense"}, {"limit": 0}, {"min_density": 2}, {"offset": -1}):
        assert client.get(base, params=params).status_code == 422
    blank_form = client.get(base, params={"min_density": "", "max_density": ""})  # an unfilled HTML form
    assert blank_form.status_code == 200 and blank_form.json()["total"] == 128


class ScriptCounter(HTMLParser):
    """Collects the <script> elements of a page and its visible text."""

    def __init__(self):
        super().__init__()
        self.scripts: list[dict] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> ScriptCounter:
    parser = ScriptCounter()
    parser.feed(html)
    return parser


def test_corpus_and_vocab_text_is_escaped(client, atlas):
    source, index = atlas.payload_feature
    pages = [client.get(f"/{atlas.model}/{source}/{index}").text, client.get(f"/{atlas.model}/{atlas.sources[0]}/0").text]
    for html in pages:
        parsed = parse(html)
        assert {"src": "/static/atlas.js", "defer": None} in parsed.scripts  # only ours: no inline scripts
        assert all(s.get("src", "").startswith("/static/") for s in parsed.scripts), parsed.scripts
        assert PAYLOAD in "".join(parsed.text)  # shown as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]  # the vocab token, whole
    feature = client.get(f"/api/feature/{atlas.model}/{atlas.sources[0]}/0").json()
    assert feature["pos_str"][0] == PAYLOAD and feature["pos_token_ids"][0] == atlas.payload_token_ids[0]


def test_concurrent_requests_all_succeed(client, atlas):
    from concurrent.futures import ThreadPoolExecutor

    paths = [f"/api/feature/{atlas.model}/{atlas.sources[i % 2]}/{i}" for i in range(24)] + ["/api/home", "/"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda path: client.get(path).status_code, paths))
    assert statuses == [200] * len(paths)
