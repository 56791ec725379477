"""The lab's web side: /toy and its twins (bounded, rate-limited compute on the torch worker),
/benchmarks and /api/benchmarks on SQLite and PostgreSQL (names escaped), the SAEBench-style
metrics run for real on the tiny model, and both pages rendered by Chromium without JS errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from latentpedia.store.api import Store
from latentpedia.web import create_app
from latentpedia.web.compute import COMPUTE_EXTENSION
from latentpedia.web.ratelimit import RateLimiter
from tests.browser import chromium, needs_chromium, serve

PAYLOAD = "<script>alert(1)</script>"
SMALL_TOY = {"n_features": 12, "n_hidden": 3, "steps": 150, "sparsity": 0.9}


def seed_benchmarks(url: str) -> None:
    """A model with two SAE sources (one benchmarked, one not) and a neuron source."""
    store = Store.open(url)
    try:
        store.upsert_model("toy-lm", "llama", 4, 64, 128, 600, 0)
        measured = store.add_source("toy-lm", f"2-res-{PAYLOAD}", "sae", "blocks.2.hook_resid_post", 2, 64, 256,
                                    meta={"architecture": "topk"})
        store.set_source_quality(measured, {"l0": 31.5, "explained_variance": 0.81, "ce_loss_recovered": 0.93, "dead_fraction": 0.02,
                                            "bench": {"absorption": 0.125, "absorption_miss_rate": 0.3, "sparse_probing_top1": 0.75,
                                                      "sparse_probing_top5": 0.875, "sparse_probing_hook": 0.97, "autointerp_score": 0.61,
                                                      "autointerp_beats_baseline": 0.7, "sparse_probing": {"code_vs_prose": {"top1": 0.75}},
                                                      "bench_seconds": {"absorption": 1.5, "sparse_probing": 2.25}}})
        plain = store.add_source("toy-lm", "3-res-relu-512", "sae", "blocks.3.hook_resid_post", 3, 64, 512)
        store.set_source_quality(plain, {"l0": 60.0, "ce_loss_recovered": 0.88})
        store.add_source("toy-lm", "1-mlp", "mlp", "blocks.1.mlp.hook_post", 1, 128, 128)
    finally:
        store.close()


@pytest.fixture
def bench_client(db_url: str) -> Iterator[TestClient]:
    seed_benchmarks(db_url)
    with TestClient(create_app(db_url)) as client:
        yield client


def test_benchmarks_page_and_twin(bench_client):
    data = bench_client.get("/api/benchmarks").json()
    rows = {r["source"]: r for r in data["rows"]}
    assert set(rows) == {f"2-res-{PAYLOAD}", "3-res-relu-512"} and data["measured"] == 1  # neurons are not SAEs
    measured = rows[f"2-res-{PAYLOAD}"]
    assert measured["absorption"] == 0.125 and measured["sparse_probing_top5"] == 0.875 and measured["l0"] == 31.5
    assert measured["bench_seconds"] == {"absorption": 1.5, "sparse_probing": 2.25}
    assert rows["3-res-relu-512"]["absorption"] is None
    page = bench_client.get("/benchmarks", headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["link"] == '</api/benchmarks>; rel="alternate"; type="application/json"'
    assert PAYLOAD not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert page.text.count("<svg class=\"chart\"") == 4
    assert page.text.count('<circle class="point"') == 5  # L0-CE: 2 SAEs; width-absorption, L0-probing, L0-autointerp: 1 each


def test_empty_atlas_benchmarks_page(db_url):
    with TestClient(create_app(db_url)) as client:
        page = client.get("/benchmarks")
        assert page.status_code == 200 and 'id="bench-empty"' in page.text
        assert client.get("/api/benchmarks").json() == {"rows": [], "measured": 0}


# ---------------------------------------------------------------------------- /toy


@pytest.fixture(scope="module")
def toy_client(tmp_path_factory) -> Iterator[TestClient]:
    app = create_app(f"sqlite:///{tmp_path_factory.mktemp('toy') / 'atlas.db'}")
    with TestClient(app) as client:
        app.state.rate_limiter = RateLimiter(per_minute=0)
        yield client


def test_toy_page_trains_on_the_worker_and_renders(toy_client):
    page = toy_client.get("/toy", params=SMALL_TOY, headers={"accept": "text/html"})
    assert page.status_code == 200, page.text
    assert page.headers["link"].startswith("</api/toy?n_features=12&n_hidden=3")
    for part in ('id="toy-staircase"', '<svg class="heatmap"', '<svg class="bars"', 'id="toy-geometry"'):
        assert part in page.text
    twin = toy_client.get("/api/toy", params=SMALL_TOY).json()
    result = twin["result"]
    assert twin["form"]["n_features"] == 12 and result["instances"][result["selected"]]["sparsity"] == pytest.approx(0.9)
    assert len(result["wtw"]) == 12 and all(len(row) == 12 for row in result["wtw"])
    posted = toy_client.post("/api/toy", json=SMALL_TOY).json()
    assert posted == result  # the same request is answered from the cache
    assert toy_client.app.state.live._models == {}  # no language model was loaded for it


def test_toy_requests_are_bounded(toy_client):
    for bad in ({"n_features": 10, "n_hidden": 10}, {"n_features": 5000}, {"steps": 10**6}, {"sparsity": 1.0}, {"importance_decay": 0}):
        assert toy_client.post("/api/toy", json=bad).status_code == 422, bad
    page = toy_client.get("/toy", params={"n_features": 5, "n_hidden": 9})
    assert page.status_code == 200 and 'id="toy-error"' in page.text and "n_hidden" in page.text
    assert toy_client.get("/api/toy", params={"n_features": 5, "n_hidden": 9}).json()["result"] is None


def test_toy_routes_are_rate_limited_compute(toy_client):
    paths = toy_client.get("/openapi.json").json()["paths"]
    assert paths["/api/toy"]["post"].get(COMPUTE_EXTENSION) and paths["/api/toy"]["get"].get(COMPUTE_EXTENSION)
    toy_client.app.state.rate_limiter = RateLimiter(per_minute=1, burst=1)
    try:
        codes = [toy_client.post("/api/toy", json=SMALL_TOY).status_code for _ in range(3)]
    finally:
        toy_client.app.state.rate_limiter = RateLimiter(per_minute=0)
    assert codes[0] == 200 and 429 in codes[1:]


# ---------------------------------------------------------------------------- SAEBench metrics on the tiny model


@pytest.fixture(scope="module")
def tiny_sae_atlas(tmp_path_factory) -> tuple[str, str]:
    """The tiny LLaMA with a random ReLU SAE on layer 2's residual stream, built over 2k tokens."""
    from latentpedia.dashboards.pipeline import BuildRequest, build
    from tests.sae_builders import random_sae, write_saelens
    from tests.tiny import D_MODEL, tiny_llama
    from tests.web_atlas import _corpus_file

    folder = tmp_path_factory.mktemp("saebench")
    model_dir = tiny_llama(folder / "tiny")
    sae_dir = write_saelens(folder / "sae", random_sae("relu", d_in=D_MODEL, d_sae=96), hook_name="blocks.2.hook_resid_post")
    url = f"sqlite:///{folder / 'atlas.db'}"
    store = Store.open(url)
    try:
        build(store, BuildRequest(model=str(model_dir), sources=[str(sae_dir)], corpus=str(_corpus_file(folder)), n_tokens=2000,
                                  window_len=32, progress=False), log=lambda *_: None)
    finally:
        store.close()
    return url, str(model_dir)


def test_saebench_metrics_on_the_tiny_model(tiny_sae_atlas):
    from latentpedia.lab.saebench import bench_atlas

    url, model_dir = tiny_sae_atlas
    store = Store.open(url)
    try:
        results = bench_atlas(store, model_dir, metrics=("absorption", "sparse_probing", "autointerp"), explain_limit=8, log=lambda *_: None)
        (name, bench), = results.items()
        assert set(bench["bench_seconds"]) == {"absorption", "sparse_probing", "autointerp"}
        assert bench["absorption_words"] > 0
        if bench["absorption"] is not None:
            assert 0 <= bench["absorption"] <= 1 and 0 <= bench["absorption_miss_rate"] <= 1
        assert set(bench["sparse_probing"]) == {"code_vs_prose", "function_word", "python_keyword"}
        # code and prose use different tokens: a probe on the whole hook separates them even in a random model
        assert bench["sparse_probing"]["code_vs_prose"]["hook"] >= 0.8
        for task in bench["sparse_probing"].values():
            assert all(0 <= task[k] <= 1 for k in ("top1", "top5", "hook"))
        # up to 8 latents explained (latents that never fired have nothing to explain) and scored against a baseline
        assert 1 <= bench["autointerp"]["embedding"]["n"] <= 8 and 0 <= bench["autointerp_beats_baseline"] <= 1
        record = store.get_source(store.list_models()[0].id, name)
        assert record.meta["quality"]["bench"]["sparse_probing_top1"] == bench["sparse_probing_top1"]
    finally:
        store.close()
    with TestClient(create_app(url)) as client:
        (row,) = client.get("/api/benchmarks").json()["rows"]
        assert row["sparse_probing_top1"] == pytest.approx(bench["sparse_probing_top1"]) and row["bench_seconds"]


def test_saebench_refuses_unknown_metrics_and_sources(tiny_sae_atlas):
    from latentpedia.errors import InvalidInputError, NotFoundError
    from latentpedia.lab.saebench import bench_atlas

    url, model_dir = tiny_sae_atlas
    store = Store.open(url)
    try:
        with pytest.raises(InvalidInputError, match="unknown metric"):
            bench_atlas(store, model_dir, metrics=("vibes",))
        with pytest.raises(NotFoundError, match="no-such-sae"):
            bench_atlas(store, model_dir, sources=["no-such-sae"])
    finally:
        store.close()


# ---------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('served')) / 'atlas.db'}"
    seed_benchmarks(url)
    with serve(create_app(url)) as base:
        yield base


@needs_chromium
def test_lab_pages_render_in_chromium(served):
    with chromium() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
        page.on("dialog", lambda dialog: (errors.append(dialog.message), dialog.dismiss()))
        page.goto(f"{served}/benchmarks")
        assert page.locator("#bench-table tbody tr").count() == 2
        assert page.locator("svg.chart circle.point").count() == 5
        box = page.locator("svg.chart").first.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100  # the plots are laid out, not collapsed
        page.goto(f"{served}/toy?n_features=12&n_hidden=3&steps=150&sparsity=0.9")
        assert page.locator("#toy-staircase svg circle.point").count() > 0
        page.fill("input[name=n_hidden]", "4")
        page.click("#toy-form button")
        page.wait_for_url("**n_hidden=4**")
        assert page.locator("#toy-geometry tbody tr").count() >= 10
        assert errors == []
