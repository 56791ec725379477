"""Latent maps: UMAP of decoder directions computed in the build (resumable, once per source) and
by `latentpedia build-maps`; the map JSON, page, thumbnail, feature-page position, Neuronpedia's
`/api/umap` and lasso -> list on SQLite and PostgreSQL; the page in Chromium (no JS errors, a
lasso makes a list of exactly the selected latents, a click opens a latent, 65k points draw)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentpedia.dashboards.maps import MapConfig, cluster, embed, unit_directions
from latentpedia.dashboards.pipeline import BuildRequest, build
from latentpedia.store.api import Store
from latentpedia.web import create_app
from tests.browser import CHROMIUM, chromium, chromium_installed, serve
from tests.community_fixtures import CommunityAtlas, community_atlas
from tests.sae_builders import random_sae, write_saelens
from tests.tiny import D_MLP, D_MODEL, tiny_llama

SOURCE = "1-mlp"
N_TOKENS = 3000


# ---------------------------------------------------------------- the computation


def planted_directions(n_groups: int = 4, per_group: int = 40, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Directions in tight groups around random centres (and their group labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, dim))
    labels = np.repeat(np.arange(n_groups), per_group)
    points = centres[labels] + 0.05 * rng.normal(size=(len(labels), dim))
    return (points * rng.uniform(0.5, 3.0, size=(len(labels), 1))).astype(np.float32), labels  # scale must not matter


def test_map_places_similar_directions_together_and_clusters_them():
    directions, labels = planted_directions()
    xy = embed(directions, MapConfig(seed=0))
    assert xy.shape == (len(labels), 2) and np.isfinite(xy).all()
    centroid = np.stack([xy[labels == g].mean(0) for g in range(4)])
    within = np.mean([np.linalg.norm(xy[labels == g] - centroid[g], axis=1).mean() for g in range(4)])
    between = np.min([np.linalg.norm(centroid[a] - centroid[b]) for a in range(4) for b in range(a + 1, 4)])
    assert between > 3 * within
    clusters = cluster(xy, MapConfig(seed=0))
    for g in range(4):  # every planted group falls in one cluster (k-means may split none across groups)
        assert len(set(clusters[labels == g].tolist())) == 1
    assert np.array_equal(xy, embed(directions, MapConfig(seed=0)))  # fixed seed: the same map


def test_unit_directions_keep_zero_rows():
    rows = unit_directions(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


def test_cli_and_web_start_without_importing_umap():
    code = "import sys, latentpedia.cli, latentpedia.web.app; print([m for m in ('umap', 'numba', 'pynndescent', 'sklearn') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- the build


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    from latentpedia.corpus.default import pydoc_documents

    path = tmp_path_factory.mktemp("corpus") / "topics.jsonl"
    path.write_text("\n".join(json.dumps({"text": d.text}) for d in pydoc_documents()[:20]))
    return path


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory) -> Path:
    ref = random_sae("topk", d_in=D_MODEL, d_sae=96, k=6, seed=5)
    return write_saelens(tmp_path_factory.mktemp("sae") / "res-topk", ref, hook_name="blocks.2.hook_resid_post")


def build_args(tiny_dir: Path, corpus_file: Path, sae_dir: Path, db: str) -> list[str]:
    return ["build", "--model", str(tiny_dir), "--layers", "1,3", "--source", str(sae_dir), "--corpus", str(corpus_file),
            "--tokens", str(N_TOKENS), "--window", "32", "--checkpoint-seconds", "0", "--no-progress", "--db", db]  # fmt: skip


def cli(args: list[str], home: Path, *, crash: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "LATENTPEDIA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("LATENTPEDIA_CRASH_AT", None)
    if crash:
        env["LATENTPEDIA_CRASH_AT"] = crash
    proc = subprocess.run([sys.executable, "-m", "latentpedia.cli", *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def map_infos(url: str) -> dict[str, dict | None]:
    """Each source's `meta["map"]` (None: no map) and a check that a map has a row per latent."""
    store = Store.open(url)
    try:
        out = {}
        for record in store.list_sources():
            found = store.get_map(record.id)
            info = (record.meta or {}).get("map")
            assert (found is None) == (info is None)
            if found is not None:
                assert found.index.tolist() == list(range(record.d_sae))
            out[record.name] = info
        return out
    finally:
        store.close()


def test_build_maps_every_source_from_its_decoder(db_url, tmp_path, tiny_dir, corpus_file, sae_dir, monkeypatch):
    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path))
    from latentpedia.models.loader import load_model
    from latentpedia.sources import NeuronSource

    store = Store.open(db_url)
    request = BuildRequest(model=str(tiny_dir), sources=["1-mlp", "3-mlp", str(sae_dir)], corpus=str(corpus_file),
                           n_tokens=N_TOKENS, window_len=32, progress=False)  # fmt: skip
    summary = build(store, request, log=lambda *_: None)
    assert sorted(summary["mapped"]) == sorted(summary["built"])
    infos = map_infos(db_url)
    assert len(infos) == 3
    for name, info in infos.items():
        assert info["method"] == "umap" and info["n_clusters"] >= 2 and info["seed"] == 0
    record = store.get_source(store.list_models()[0].id, "1-mlp")
    # the neuron map is the UMAP of the output weights (down_proj columns), recomputed identically
    model = load_model(str(tiny_dir))
    assert infos["1-mlp"]["space"] == NeuronSource(model, 1).output_hook
    expected = embed(NeuronSource(model, 1).decoder().numpy(), MapConfig())
    found = store.get_map(record.id)
    assert found.x.shape == (D_MLP,)
    assert np.allclose(np.stack([found.x, found.y], 1), expected, atol=1e-4)
    assert not np.allclose(found.x, store.get_map(store.get_source(record.model_id, "3-mlp").id).x)
    # a second build finds every map and computes none
    again = build(store, request, log=lambda *_: None)
    assert again["built"] == [] and again["mapped"] == []
    store.close()


def test_killed_build_computes_the_missing_maps_once_on_resume(db_url, tmp_path, tiny_dir, corpus_file, sae_dir):
    args = build_args(tiny_dir, corpus_file, sae_dir, db_url)
    killed = cli(args, tmp_path, crash="map:2", check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = map_infos(db_url)
    assert sum(info is not None for info in before.values()) == 1  # the pass and the first map were done
    first = next(name for name, info in before.items() if info is not None)
    resumed = cli(args, tmp_path)
    after = map_infos(db_url)
    assert all(info is not None for info in after.values())
    assert after[first] == before[first]  # not recomputed
    assert len(re.findall(r"map \d+/\d+: \S+ done in", resumed.stdout + resumed.stderr)) == 2  # only the two missing


def test_build_maps_command_maps_an_atlas_built_without_maps(db_url, tmp_path, tiny_dir, corpus_file, monkeypatch):
    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path))
    store = Store.open(db_url)
    request = BuildRequest(model=str(tiny_dir), sources=["1-mlp"], corpus=str(corpus_file), n_tokens=N_TOKENS,
                           window_len=32, progress=False, maps=False)  # fmt: skip
    build(store, request, log=lambda *_: None)
    store.close()
    assert map_infos(db_url) == {"1-mlp": None}
    done = cli(["build-maps", "--model", str(tiny_dir), "--db", db_url], tmp_path)
    assert "mapped 1-mlp" in done.stderr + done.stdout
    first = map_infos(db_url)["1-mlp"]
    assert first["method"] == "umap"
    again = cli(["build-maps", "--model", str(tiny_dir), "--db", db_url], tmp_path)
    assert "already has its map" in again.stderr + again.stdout
    assert map_infos(db_url)["1-mlp"] == first
    cli(["build-maps", "--model", str(tiny_dir), "--redo", "--init", "pca", "--db", db_url], tmp_path)
    redone = map_infos(db_url)["1-mlp"]
    assert redone["init"] == "pca" and redone["computed_at"] != first["computed_at"]


# ---------------------------------------------------------------- the web routes


@pytest.fixture(scope="module")
def client(catlas) -> Iterator[TestClient]:
    with TestClient(create_app(catlas.url, private=False)) as test_client:
        yield test_client


PAYLOAD = "<script>window.__pwned = 1</script> python exceptions"


@pytest.fixture(scope="module")
def explained(catlas) -> int:
    """Latent 5 of SOURCE explained (the text carries a script payload) and scored 0.75."""
    store = Store.open(catlas.url)
    try:
        record = store.get_source(catlas.model, SOURCE)
        explanation = store.add_explanation(record.id, 5, PAYLOAD, "offline")
        store.add_score(explanation, "embedding", status="ok", score=0.75, baseline_score=0.1)
        return 5
    finally:
        store.close()


def test_map_json_has_every_latent_as_parallel_arrays(client, catlas, explained):
    response = client.get(f"/api/map/{catlas.model}/{SOURCE}")
    assert response.status_code == 200, response.text
    page = response.json()
    n = page["n"]
    assert n == D_MLP and page["index"] == list(range(n))
    for key in ("x", "y", "density", "score", "cluster", "explanation"):
        assert len(page[key]) == n, key
    store = Store.open(catlas.url)
    record = store.get_source(catlas.model, SOURCE)
    found = store.get_map(record.id)
    densities = {row["idx"]: row["frac_nonzero"] for row in store.list_latents(record.id, limit=10**6)}
    store.close()
    assert np.allclose(page["x"], found.x, atol=1e-3) and page["cluster"] == found.cluster.tolist()
    assert page["density"] == [densities[i] for i in range(n)]
    assert page["explanation"][explained] == PAYLOAD and page["score"][explained] == pytest.approx(0.75)
    assert sum(e is not None for e in page["explanation"]) == 1 and page["score"].count(None) == n - 1
    assert page["n_clusters"] == max(page["cluster"]) + 1 and page["info"]["method"] == "umap"
    assert page["feature_url"].replace("{index}", "7") == f"/{catlas.model}/{SOURCE}/7"


def test_map_page_embeds_its_data_escaped_and_links_plotly(client, catlas, explained):
    response = client.get(f"/{catlas.model}/{SOURCE}/map", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert f"/api/map/{catlas.model}/{SOURCE}" in response.headers["link"]
    html = response.text
    assert '<script src="/vendor/plotly.min.js"' in html and "/static/map.js" in html
    assert "<script>window.__pwned" not in html  # the explanation is in the JSON, escaped
    data = html.split('<script id="map-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["explanation"][explained] == PAYLOAD
    assert "Log in" in html  # anonymous: told to log in to save a selection


def test_plotly_js_is_served_from_the_installed_package(client):
    import plotly

    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    shipped = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert response.content == shipped.read_bytes()
    assert not list(Path(__file__).resolve().parents[1].joinpath("latentpedia").rglob("plotly*.js"))  # no copy in the repo


def test_thumbnail_feature_position_and_home(client, catlas):
    svg = client.get(f"/api/map/{catlas.model}/{SOURCE}/thumbnail.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.count("<rect") == D_MLP + 1  # background + one per latent
    feature = client.get(f"/api/feature/{catlas.model}/{SOURCE}/9").json()
    where = feature["map"]
    store = Store.open(catlas.url)
    x, y, c = store.map_position(store.get_source(catlas.model, SOURCE).id, 9)
    store.close()
    assert where["x"] == pytest.approx(x) and where["y"] == pytest.approx(y) and where["cluster"] == c
    assert 0 <= where["u"] <= 1 and 0 <= where["v"] <= 1
    assert where["url"] == f"/{catlas.model}/{SOURCE}/map?highlight=9"
    html = client.get(f"/{catlas.model}/{SOURCE}/9", headers={"accept": "text/html"}).text
    assert 'id="map-position"' in html and where["thumbnail_url"].replace("&", "&amp;") in html
    home = client.get("/", headers={"accept": "text/html"}).text
    assert home.count('class="map-thumb"') == len(catlas.atlas.sources)
    sources = client.get("/api/home").json()["sources"]
    assert all(s["map_url"] == f"/{catlas.model}/{s['name']}/map" for s in sources)


def test_neuronpedia_umap_route(client, catlas, explained):
    response = client.post("/api/umap", json={"modelId": catlas.model, "layers": [SOURCE]})
    assert response.status_code == 200, response.text
    points = response.json()[SOURCE]
    assert len(points) == D_MLP
    point = points[explained]
    assert point["index"] == str(explained) and point["layer"] == SOURCE and point["description"] == PAYLOAD
    assert set(point) == {"modelId", "layer", "index", "description", "umap_x", "umap_y", "umap_cluster", "umap_log_feature_sparsity"}
    assert client.post("/api/umap", json={"modelId": catlas.model, "layers": ["nope"]}).status_code == 404


def test_unknown_or_unmapped_sources_are_404s(client, catlas):
    assert client.get(f"/api/map/{catlas.model}/nope").status_code == 404
    assert client.get(f"/api/map/nobody/{SOURCE}").status_code == 404
    store = Store.open(catlas.url)
    model = catlas.model
    store.add_source(model, "0-mlp", "mlp", "blocks.0.mlp.hook_post", 0, D_MODEL, D_MLP)
    store.close()
    missing = client.get(f"/api/map/{model}/0-mlp")
    assert missing.status_code == 404 and "build-maps" in missing.json()["detail"]
    assert client.get(f"/{model}/0-mlp/map", headers={"accept": "text/html"}).status_code == 404


def test_a_selection_becomes_a_list_of_exactly_those_latents(client, catlas):
    url = f"/api/map/{catlas.model}/{SOURCE}/list"
    assert client.post(url, json={"name": "anon", "indices": [1]}).status_code == 401
    store = Store.open(catlas.url)
    alice = store.get_user("alice")
    n_lists = len(store.lists_of(alice.id))
    for bad in ({"name": "x", "indices": [1, D_MLP]}, {"name": "x", "indices": [-1]}, {"name": " ", "indices": [1]},
                {"name": "x", "indices": []}):
        response = client.post(url, json=bad, headers=catlas.key("alice"))
        assert response.status_code in (400, 422), (bad, response.text)
    assert len(store.lists_of(alice.id)) == n_lists  # nothing written
    made = client.post(url, json={"name": "lasso", "indices": [7, 3, 3, 11]}, headers=catlas.key("alice"))
    assert made.status_code == 200, made.text
    out = made.json()
    assert out["n_items"] == 3 and out["url"] == f"/list/{out['id']}"
    items = store.list_items(out["id"])
    assert sorted(i.latent_index for i in items) == [3, 7, 11] and {i.source for i in items} == {SOURCE}
    assert store.get_list(out["id"]).owner == "alice"
    store.close()


# ---------------------------------------------------------------- in Chromium


VIEWPORT = {"width": 1280, "height": 1100}  # the whole plot on screen
SYNTH = "0-res-synth-65k"
N_SYNTH = 65_536


@pytest.fixture(scope="module")
def served(request, tmp_path_factory) -> Iterator[tuple[str, CommunityAtlas]]:
    """A private SQLite copy of the seeded atlas with accounts and a synthetic 65,536-latent
    source that has only a map, served by uvicorn in a thread."""
    if not chromium_installed():
        pytest.skip(f"{CHROMIUM} is not installed")

    with community_atlas("sqlite", request, tmp_path_factory) as found:
        store = Store.open(found.url)
        pk = store.add_source(found.model, SYNTH, "sae", "blocks.0.hook_resid_post", 0, D_MODEL, N_SYNTH)
        rng = np.random.default_rng(0)
        xy = rng.normal(size=(N_SYNTH, 2)) * [3.0, 1.5]
        store.write_map(pk, xy, rng.integers(0, 30, N_SYNTH), {"method": "synthetic", "bounds": [float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max())]})
        store.close()
        with serve(create_app(found.url, private=False)) as base:
            yield base, found


@pytest.fixture(scope="module")
def browser():
    with chromium(webgl=True) as launched:  # scattergl needs a WebGL context; headless has no GPU
        yield launched


class MapTab:
    """A browser tab on a map page recording console errors, page errors and dialogs."""

    def __init__(self, browser, url: str, context=None):
        self.context = context or browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        # a failed resource shows as a console error without its URL: failed responses are
        # recorded with their URL instead (the browser's own /favicon.ico probe excepted)
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on("dialog", lambda dialog: (self.errors.append("dialog " + dialog.message), dialog.dismiss()))
        self.page.goto(url)
        self.page.wait_for_selector("#map-plot[data-ready='1']", timeout=60_000)

    def screen_points(self) -> list[list[float]]:
        """Each latent's position on screen (CSS pixels), from plotly's own axes."""
        return self.page.evaluate("""() => {
            const gd = document.getElementById('map-plot'), d = window.latentMap.data;
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
            return d.x.map((x, i) => [r.left + xa._offset + xa.l2p(x), r.top + ya._offset + ya.l2p(d.y[i])]);
        }""")


def login(context, base: str, username: str = "alice") -> None:
    from tests.community_fixtures import PASSWORD

    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#logout")
    page.close()


def test_map_page_renders_without_errors(served, browser):
    base, catlas = served
    tab = MapTab(browser, f"{base}/{catlas.model}/{SOURCE}/map")
    assert tab.page.locator("#map-plot canvas").count() > 0  # WebGL canvases drawn by scattergl
    assert tab.page.evaluate("document.getElementById('map-plot').data[0].type") == "scattergl"
    for by in ("score", "cluster", "density"):
        tab.page.select_option("#map-colour", by)
    assert tab.page.evaluate("document.getElementById('map-plot').data[0].marker.color.length") == D_MLP
    assert tab.page.locator("#map-login").count() == 1
    assert tab.errors == []
    tab.context.close()


def test_lasso_makes_a_list_of_exactly_the_selected_latents(served, browser):
    base, catlas = served
    context = browser.new_context(viewport=VIEWPORT)
    login(context, base)
    tab = MapTab(browser, f"{base}/{catlas.model}/{SOURCE}/map", context)
    points = np.array(tab.screen_points())
    box = tab.page.locator("#map-plot .nsewdrag").first.bounding_box()
    left, right = np.percentile(points[:, 0], [25, 75])
    top, bottom = np.percentile(points[:, 1], [25, 75])
    tab.page.evaluate("Plotly.relayout('map-plot', {dragmode: 'lasso'})")
    mouse = tab.page.mouse
    mouse.move(left, top)
    mouse.down()
    for x, y in ((right, top), (right, bottom), (left, bottom), (left, top + 1)):
        mouse.move(x, y, steps=8)
    mouse.up()
    tab.page.wait_for_function("window.latentMap.selected.length > 0")
    selected = tab.page.evaluate("window.latentMap.selected")
    inside = [i for i, (x, y) in enumerate(points) if left + 2 < x < right - 2 and top + 2 < y < bottom - 2]
    near_edge = {i for i, (x, y) in enumerate(points) if left - 2 <= x <= right + 2 and top - 2 <= y <= bottom + 2}
    assert set(inside) <= set(selected) <= near_edge and box is not None
    tab.page.fill("#map-list-name", "<b>lasso</b>")
    tab.page.click("#map-make-list")
    link = tab.page.wait_for_selector("#map-list-link")
    list_id = int(link.get_attribute("href").rsplit("/", 1)[1])
    store = Store.open(catlas.url)
    items = store.list_items(list_id)
    assert sorted(i.latent_index for i in items) == sorted(selected) and store.get_list(list_id).name == "<b>lasso</b>"
    store.close()
    assert tab.errors == []
    context.close()


def test_clicking_a_point_opens_its_latent(served, browser):
    base, catlas = served
    tab = MapTab(browser, f"{base}/{catlas.model}/{SOURCE}/map")
    points = np.array(tab.screen_points())
    gaps = np.linalg.norm(points[:, None] - points[None], axis=2) + np.eye(len(points)) * 1e9
    index = int(gaps.min(1).argmax())  # the most isolated point: nothing else under the cursor
    tab.page.mouse.move(*points[index])
    tab.page.mouse.click(*points[index])
    tab.page.wait_for_url(f"**/{SOURCE}/{index}")
    assert tab.errors == []
    tab.context.close()


def test_sixty_five_thousand_points_draw(served, browser):
    base, catlas = served
    tab = MapTab(browser, f"{base}/{catlas.model}/{SYNTH}/map")
    assert tab.page.evaluate("document.getElementById('map-plot').data[0].x.length") == N_SYNTH
    assert tab.page.locator("#map-plot canvas").count() > 0
    tab.page.select_option("#map-colour", "cluster")
    tab.page.mouse.wheel(0, -300)  # zoom
    assert tab.errors == []
    tab.context.close()


def test_feature_page_shows_its_place_on_the_map(served, browser):
    base, catlas = served
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/{catlas.model}/{SOURCE}/4")
    thumb = page.locator("#map-position img")
    thumb.wait_for()
    page.wait_for_function("document.querySelector('#map-position img').complete")
    assert page.evaluate("document.querySelector('#map-position img').naturalWidth") == 160  # the SVG loaded
    page.click("#map-position a")
    page.wait_for_url("**/map?highlight=4")
    page.wait_for_selector("#map-plot[data-ready='1']")
    assert page.evaluate("document.getElementById('map-plot').data.length") == 2  # the latent ringed
    context.close()
