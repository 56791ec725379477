"""Explanation search on SQLite and PostgreSQL: full text, the vector index (exact and HNSW,
persisted, caught up, pgvector fallback), filters, real MiniLM paraphrase search, the web page,
its JSON twin and Neuronpedia's routes, the CLI backfill, and the header search box in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from latentpedia.engine.explanation_index import ExactIndex, ExplanationIndex, HnswIndex, backend_for, search_explanations
from latentpedia.store.api import Store
from latentpedia.store.community_schema import Explanation
from latentpedia.store.explanation_search import (
    DIM,
    ExplanationEmbedding,
    ExplanationFilter,
    count_embedding_state,
    has_pgvector,
    put_embeddings,
    text_search,
)
from latentpedia.store.schema import Latent
from tests.browser import chromium, needs_chromium, serve
from tests.community_fixtures import CommunityAtlas, community_atlas

MODEL = "m"
PLANTED = "Python exception handling: try and except blocks that catch raised errors"
DISTRACTORS = [
    "closing brackets and parentheses at the end of a call",
    "the word 'the' at the start of a sentence",
    "numbers in dates such as years and months",
    "plural nouns ending in s",
    "indentation whitespace before a def statement",
    "names of colours like red, green and blue",
    "import statements for the os and sys modules",
    "quotation marks opening a string literal",
]
PARAPHRASE = "code recovering from failures at runtime"  # no word in common with PLANTED


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _small_atlas(store: Store) -> dict[str, int]:
    """A model with two sources of 50 latents (densities 0.00, 0.01, ... 0.49), no corpus."""
    store.upsert_model(MODEL, "llama", 2, 8, 16, 100, 0, {})
    ids = {}
    for name in ("0-mlp", "1-mlp"):
        ids[name] = store.add_source(MODEL, name, "mlp", f"blocks.{name[0]}.mlp.hook_post", int(name[0]), 16, 50)
    with store._begin() as session:
        for source_id in ids.values():
            session.add_all(Latent(source_id=source_id, idx=i, max_act=1.0, frac_nonzero=i / 100, mean_act=0.1, hist={},
                                   logits={}, aligned=[], correlated=[]) for i in range(50))  # fmt: skip
    return ids


# ---------------------------------------------------------------- store: full text, filters


def test_full_text_finds_exact_words_with_stemming(store: Store) -> None:
    sources = _small_atlas(store)
    planted = store.add_explanation(sources["0-mlp"], 3, PLANTED, "human")
    others = [store.add_explanation(sources["1-mlp"], i, t, "offline") for i, t in enumerate(DISTRACTORS)]
    assert [i for i, _ in text_search(store, "exceptions", ExplanationFilter(), 10)] == [planted]
    assert [i for i, _ in text_search(store, "EXCEPTION", ExplanationFilter(), 10)] == [planted]  # stemmed, any case
    found = [i for i, _ in text_search(store, "brackets colours", ExplanationFilter(), 10)]
    assert sorted(found) == sorted([others[0], others[5]])
    # query syntax is never interpreted: quotes, operators and NEAR are just words
    assert text_search(store, '" OR * NEAR( -', ExplanationFilter(), 10) == []
    store.delete_explanation(planted)  # the FTS index follows deletes (SQLite triggers, PostgreSQL expression index)
    assert text_search(store, "exceptions", ExplanationFilter(), 10) == []


def test_filters(store: Store) -> None:
    sources = _small_atlas(store)
    alice = store.add_user("alice", "correct horse battery", "user")
    rows = {
        "a": store.add_explanation(sources["0-mlp"], 2, "brackets one", "offline"),
        "b": store.add_explanation(sources["0-mlp"], 30, "brackets two", "human", author_id=alice.id),
        "c": store.add_explanation(sources["1-mlp"], 40, "brackets three", "llm-examples", explainer_model="gpt"),
    }
    store.add_score(rows["a"], "embedding", status="ok", score=0.9, baseline_score=0.5)
    store.add_score(rows["c"], "embedding", status="ok", score=0.6, baseline_score=0.5)
    store.add_score(rows["b"], "detection", status="error", error="down")

    def found(**kw) -> set[str]:
        hits = {i for i, _ in text_search(store, "brackets", ExplanationFilter(**kw), 10)}
        return {k for k, v in rows.items() if v in hits}

    assert found() == {"a", "b", "c"}
    assert found(model=MODEL, sources=("0-mlp",)) == {"a", "b"}
    assert found(model="other") == set()
    assert found(methods=("human", "llm-examples")) == {"b", "c"}
    assert found(author="alice") == {"b"} and found(author="auto") == {"a", "c"}
    assert found(min_score=0.7) == {"a"} and found(min_score=0.5) == {"a", "c"}  # error scores never count
    assert found(min_density=0.25) == {"b", "c"} and found(max_density=0.35) == {"a", "b"}
    assert found(min_density=0.25, max_density=0.35) == {"b"}


# ---------------------------------------------------------------- the vector index


def _topics(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around topic centres (nearest-neighbour cosine ~0.6, like paraphrases under
    MiniLM). Uniform random vectors in 384-d are all nearly orthogonal: no index finds "nearest"."""
    vectors = centres[rng.integers(len(centres), size=n)] + 0.045 * rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_hnsw_agrees_with_exact_search() -> None:
    rng = np.random.default_rng(0)
    centres = _unit(rng, 60)
    vectors, ids = _topics(rng, 3000, centres), np.arange(1, 3001, dtype=np.int64)
    exact, hnsw = ExactIndex(), HnswIndex()
    exact.add(ids, vectors)
    hnsw.add(ids, vectors)
    queries = _topics(rng, 50, centres)
    recall = []
    for q in queries:
        truth, sims = exact.search(q, 10)
        got, approx = hnsw.search(q, 10)
        assert np.allclose(sims, vectors[truth - 1] @ q, atol=1e-5)  # exact cosines, best first
        assert list(sims) == sorted(sims, reverse=True)
        recall.append(len(set(truth) & set(got)) / 10)
        assert np.allclose(approx, vectors[got - 1] @ q, atol=2e-3)  # f16 vectors: cosines to ~1e-3
    assert np.mean(recall) >= 0.95
    exact.remove([int(truth[0])])
    hnsw.remove([int(truth[0])])
    assert int(truth[0]) not in exact.search(queries[-1], 10)[0]
    assert int(truth[0]) not in hnsw.search(queries[-1], 10)[0]


def _planted_vectors(store: Store, sources: dict[str, int], n: int, seed: int = 1) -> tuple[list[int], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = store.add_explanations_bulk([{"source_id": sources[("0-mlp", "1-mlp")[i % 2]], "index": i % 50,
                                        "text": f"explanation number {i}", "method": "offline"} for i in range(n)])  # fmt: skip
    vectors = _unit(rng, n)
    put_embeddings(store, zip(ids, vectors, strict=True), "test")
    return ids, vectors


def test_index_switches_to_hnsw_catches_up_and_forgets(store: Store, tmp_path: Path) -> None:
    sources = _small_atlas(store)
    ids, vectors = _planted_vectors(store, sources, 600)
    index = ExplanationIndex(store, brute_force_max=400, persist_dir=None, backend="local")
    query = vectors[17]
    got, sims = index.nearest(query, 5)
    assert index.kind == "hnsw" and len(index.index) == 600 and got[0] == ids[17] and sims[0] == pytest.approx(1, abs=1e-3)
    more, more_vectors = _planted_vectors(store, sources, 10, seed=2)  # written after the index was built
    got, _ = index.nearest(more_vectors[3], 1)
    assert got[0] == more[3] and len(index.index) == 610
    store.delete_explanation(ids[17])  # the embedding leaves by cascade, the index on next sight
    with store._read() as session:
        assert session.get(ExplanationEmbedding, ids[17]) is None
    from latentpedia.engine import explanation_index as module

    module._INDEXES[store] = index
    hits = search_explanations(store, "", query, ExplanationFilter(), mode="semantic", limit=5)
    assert ids[17] not in [h.hit.id for h in hits]
    assert ids[17] not in index.nearest(query, 5)[0].tolist()


def test_persisted_index_reloads_and_a_replaced_database_rebuilds(store: Store, tmp_path: Path) -> None:
    sources = _small_atlas(store)
    ids, vectors = _planted_vectors(store, sources, 1200)
    first = ExplanationIndex(store, brute_force_max=500, persist_dir=tmp_path, backend="local")
    first.sync()
    assert first.kind == "hnsw" and list(tmp_path.glob("*.usearch"))
    again = ExplanationIndex(store, brute_force_max=500, persist_dir=tmp_path, backend="local")
    assert again.kind == "hnsw" and again.watermark == ids[-1] and len(again.index) == 1200  # loaded, not rebuilt
    assert again.sync() == 0 and again.nearest(vectors[5], 1)[0][0] == ids[5]
    with store._begin() as session:  # the database is replaced under the same URL
        session.execute(ExplanationEmbedding.__table__.delete())
    put_embeddings(store, zip(ids, _unit(np.random.default_rng(9), 1200), strict=True), "test")
    rebuilt = ExplanationIndex(store, brute_force_max=500, persist_dir=tmp_path, backend="local")
    assert rebuilt.watermark == 0 and rebuilt.kind == "exact"  # the stale file is not trusted
    assert rebuilt.sync() == 1200


def test_vector_backend_follows_the_server(store: Store) -> None:
    """pgvector where the PostgreSQL server has the extension, else the local index. This
    machine's server has none (no Debian package), so here the fallback is taken on both
    databases; with LATENTPEDIA_TEST_PG pointing at a pgvector server the first branch runs."""
    if has_pgvector(store):
        sources = _small_atlas(store)
        ids, vectors = _planted_vectors(store, sources, 50)
        index = ExplanationIndex(store, persist_dir=None)
        assert backend_for(store) == "pgvector" and index.kind == "pgvector"
        assert index.nearest(vectors[7], 1)[0][0] == ids[7]
    else:
        assert backend_for(store) == "local"
        assert ExplanationIndex(store, persist_dir=None).kind == "exact"


def test_hybrid_search_fuses_words_and_meaning(store: Store) -> None:
    sources = _small_atlas(store)
    texts = ["alpha words here", "beta words here", "gamma only meaning"]
    ids = [store.add_explanation(sources["0-mlp"], i, t, "offline") for i, t in enumerate(texts)]
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 3)
    put_embeddings(store, zip(ids, vectors, strict=True), "test")
    query = vectors[2]  # means "gamma", says "alpha"
    from latentpedia.engine import explanation_index as module

    module._INDEXES[store] = ExplanationIndex(store, persist_dir=None, backend="local")
    text_only = search_explanations(store, "alpha", query, ExplanationFilter(), mode="text")
    assert [h.hit.id for h in text_only] == [ids[0]]
    semantic = search_explanations(store, "alpha", query, ExplanationFilter(), mode="semantic", limit=1)
    assert [h.hit.id for h in semantic] == [ids[2]]
    hybrid = search_explanations(store, "alpha", query, ExplanationFilter(), mode="hybrid")
    assert {h.hit.id for h in hybrid[:2]} == {ids[0], ids[2]}  # each list's best is near the top
    assert hybrid[0].rrf >= hybrid[-1].rrf
    filtered = search_explanations(store, "alpha", query, ExplanationFilter(max_density=0.015), mode="hybrid")
    assert {h.hit.id for h in filtered} == {ids[0], ids[1]}  # latent 2 has density 0.02


# ---------------------------------------------------------------- real MiniLM embeddings


def test_paraphrase_finds_the_planted_explanation(store: Store) -> None:
    from latentpedia.engine import explanation_index as module
    from latentpedia.interp.explanation_embeddings import embed_explanations, embed_query

    sources = _small_atlas(store)
    planted = store.add_explanation(sources["0-mlp"], 7, PLANTED, "human")
    for i, text in enumerate(DISTRACTORS):
        store.add_explanation(sources["1-mlp"], i, text, "offline")
    assert embed_explanations(store) == len(DISTRACTORS) + 1
    assert embed_explanations(store) == 0  # nothing left: a rerun is a no-op
    module._INDEXES[store] = ExplanationIndex(store, persist_dir=None, backend="local")
    hits = search_explanations(store, PARAPHRASE, embed_query(PARAPHRASE), ExplanationFilter(), mode="semantic", limit=3)
    assert hits[0].hit.id == planted
    assert planted not in [i for i, _ in text_search(store, PARAPHRASE, ExplanationFilter(), 10)]  # meaning, not words


# ---------------------------------------------------------------- web: page, JSON twin, Neuronpedia routes


@pytest.fixture(scope="module")
def client(catlas: CommunityAtlas, tmp_path_factory) -> Iterator[TestClient]:
    import os

    from latentpedia.web import create_app

    os.environ["LATENTPEDIA_LIVE_RATE"] = "0"
    with TestClient(create_app(catlas.url, private=False)) as test_client:
        for index, text in enumerate(DISTRACTORS):
            test_client.post("/api/explanation/new", headers=catlas.key("alice"),
                             json={"modelId": catlas.model, "layer": "3-mlp", "index": index, "text": text}).raise_for_status()  # fmt: skip
        test_client.post("/api/explanation/new", headers=catlas.key("bob"),
                         json={"modelId": catlas.model, "layer": "1-mlp", "index": 5,
                               "text": PLANTED + " <script>alert(1)</script>"}).raise_for_status()  # fmt: skip
        yield test_client
    os.environ.pop("LATENTPEDIA_LIVE_RATE", None)


def test_written_explanations_are_embedded_at_write_time(client: TestClient, catlas: CommunityAtlas) -> None:
    store = Store.open(catlas.url)
    try:
        total, done = count_embedding_state(store)
        assert total == done == len(DISTRACTORS) + 1
    finally:
        store.close()


def test_neuronpedia_search_routes_shapes(client: TestClient, catlas: CommunityAtlas) -> None:
    body = {"modelId": catlas.model, "layers": ["1-mlp", "3-mlp"], "query": PARAPHRASE}
    answer = client.post("/api/explanation/search", json=body)  # anonymous
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) == {"request", "results", "resultsCount", "hasMore", "nextOffset"}
    assert data["request"] == {**body, "offset": 0} and data["resultsCount"] == len(data["results"]) == len(DISTRACTORS) + 1
    assert data["hasMore"] is False and data["nextOffset"] is None
    top = data["results"][0]
    assert top["description"].startswith(PLANTED) and top["modelId"] == catlas.model and top["layer"] == "1-mlp"
    assert top["index"] == "5" and top["typeName"] == "human" and top["explanationModelName"] is None
    assert 0 < top["cosine_similarity"] <= 1
    sims = [r["cosine_similarity"] for r in data["results"]]
    assert sims == sorted(sims, reverse=True)
    neuron = top["neuron"]
    assert neuron["modelId"] == catlas.model and neuron["layer"] == "1-mlp" and neuron["index"] == "5"
    activation = neuron["activations"][0]
    assert len(activation["tokens"]) == len(activation["values"]) and activation["maxValue"] == max(activation["values"])
    only_3 = client.post("/api/explanation/search", json={**body, "layers": ["3-mlp"]}).json()
    assert {r["layer"] for r in only_3["results"]} == {"3-mlp"}
    model = client.post("/api/explanation/search-model", json={"modelId": catlas.model, "query": PARAPHRASE}).json()
    assert model["results"][0]["id"] == top["id"] and model["request"]["modelId"] == catlas.model
    everything = client.post("/api/explanation/search-all", json={"query": PARAPHRASE, "offset": 2}).json()
    assert [r["id"] for r in everything["results"]] == [r["id"] for r in data["results"]][2:]
    assert client.post("/api/explanation/search", json={**body, "modelId": "nope"}).status_code == 404
    assert client.post("/api/explanation/search", json={**body, "layers": ["9-mlp"]}).status_code == 404


@pytest.mark.parametrize("query", ["", "   ", "ab", "x" * 501, "bad \u0000 query"])
def test_bad_queries_are_422_and_write_nothing(client: TestClient, catlas: CommunityAtlas, query: str) -> None:
    for route, extra in (("/api/explanation/search-all", {}), ("/api/explanation/search-model", {"modelId": catlas.model})):
        answer = client.post(route, json={"query": query, **extra})
        assert answer.status_code == 422 and "detail" in answer.json()
    if query.strip():
        twin = client.get("/api/search/explanations", params={"q": query})
        assert twin.status_code == 422 and "detail" in twin.json()
        page = client.get("/search/explanations", params={"q": query}, headers={"accept": "text/html"})
        assert page.status_code == 422 and 'id="xsearch-error"' in page.text


def test_page_and_json_twin(client: TestClient, catlas: CommunityAtlas) -> None:
    params = {"q": "errors thrown and caught exception", "model": catlas.model}
    page = client.get("/search/explanations", params=params, headers={"accept": "text/html"})
    assert page.status_code == 200
    twin_url = page.headers["link"].split(">")[0].lstrip("<")
    assert twin_url.startswith("/api/search/explanations?")
    twin = client.get(twin_url).json()
    assert twin["results"][0]["description"].startswith(PLANTED)
    assert twin["results"][0]["text_rank"] == 1  # "exception" is also a word match
    assert twin["index"]["kind"] == "exact" and twin["index"]["pending"] == 0
    assert PLANTED in page.text and "<script>alert(1)</script>" not in page.text  # escaped
    assert 'class="spark"' in page.text and 'id="xsearch-results"' in page.text
    words = client.get("/api/search/explanations", params={"q": "brackets", "mode": "text"}).json()
    assert [r["description"] for r in words["results"]] == [DISTRACTORS[0]]
    by_author = client.get("/api/search/explanations", params={**params, "author": "alice"}).json()
    assert by_author["results"] and {r["authorName"] for r in by_author["results"]} == {"alice"}
    densities = sorted(r["frac_nonzero"] for r in twin["results"])
    assert len(densities) == len(DISTRACTORS) + 1  # every explanation of the model is a candidate
    cut = densities[len(densities) // 2]
    dense = client.get("/api/search/explanations", params={**params, "min_density": cut}).json()
    assert {r["id"] for r in dense["results"]} == {r["id"] for r in twin["results"] if r["frac_nonzero"] >= cut}
    assert client.get("/api/search/explanations", params={"q": "x y z", "min_density": 2}).status_code == 422
    empty = client.get("/search/explanations", headers={"accept": "text/html"})
    assert empty.status_code == 200 and 'id="xsearch-form"' in empty.text


def test_every_page_has_the_header_search_box(client: TestClient, catlas: CommunityAtlas) -> None:
    for url in ("/", f"/{catlas.model}/1-mlp", f"/{catlas.model}/1-mlp/5", "/search"):
        page = client.get(url, headers={"accept": "text/html"})
        assert page.status_code == 200 and 'id="header-search"' in page.text and 'action="/search/explanations"' in page.text


# ---------------------------------------------------------------- CLI backfill


def test_index_explanations_backfills_and_resumes(db_url: str) -> None:
    from typer.testing import CliRunner

    from latentpedia.cli import app

    store = Store.open(db_url)
    try:
        sources = _small_atlas(store)
        store.add_explanations_bulk([{"source_id": sources["0-mlp"], "index": i, "text": t, "method": "offline"}
                                     for i, t in enumerate([PLANTED, *DISTRACTORS])])  # fmt: skip
        assert count_embedding_state(store) == (9, 0)
        runner = CliRunner()
        first = runner.invoke(app, ["index-explanations", "--limit", "4", "--batch", "3", "--no-progress", "--db", db_url])
        assert first.exit_code == 0, first.output
        assert count_embedding_state(store) == (9, 4)
        second = runner.invoke(app, ["index-explanations", "--no-progress", "--db", db_url])
        assert second.exit_code == 0 and "5 embedded" in second.output
        with store._read() as session:
            embedded = set(session.scalars(select(ExplanationEmbedding.explanation_id)))
            assert embedded == set(session.scalars(select(Explanation.id)))
        third = runner.invoke(app, ["index-explanations", "--no-progress", "--db", db_url])
        assert third.exit_code == 0 and "0 embedded" in third.output
    finally:
        store.close()


# ---------------------------------------------------------------- Chromium: the header search box


@needs_chromium
def test_header_search_box_submits_and_shows_results(tmp_path_factory) -> None:
    from latentpedia.web import create_app

    with community_atlas("sqlite", None, tmp_path_factory) as catlas:
        store = Store.open(catlas.url)
        source = store.get_source(catlas.model, "1-mlp")
        store.add_explanation(source.id, 2, PLANTED, "human")
        store.close()
        with serve(create_app(catlas.url)) as base, chromium() as browser:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(f"{base}/{catlas.model}/1-mlp/3")
            page.fill("#header-search-q", PARAPHRASE)
            page.press("#header-search-q", "Enter")
            page.wait_for_selector("#xsearch-results", timeout=60_000)
            assert "/search/explanations?q=" in page.url
            first = page.locator("tr.xsearch-hit").first
            assert PLANTED in first.inner_text()
            first.locator("a").click()
            page.wait_for_url(f"**/{catlas.model}/1-mlp/2")
            assert errors == []
