"""Neighbours, cross-SAE matching, families and universality on the tiny model (SQLite + PostgreSQL).

The atlas: the tiny LLaMA's corpus, a coarse ReLU SAE at `blocks.2.hook_resid_post` (8 orthonormal
directions d_i, encoder reading whitened activations), a fine SAE built by splitting each of them
(d_i ± 0.6 e_i, normalised: 16 latents, 2i and 2i+1 from d_i), a deeper SAE at layer 3, and two
TopK SAEs of one config trained with seeds 0 and 1. Matching must recover the split by decoder
cosine and by activation correlation over real encodings of the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from tests.sae_builders import RefSAE, write_saelens
from tests.tiny import D_MODEL, tiny_llama

from latentpedia.dashboards.pipeline import ATLAS_CORPUS, BuildRequest, build
from latentpedia.engine.resolve import load_source
from latentpedia.errors import InvalidInputError
from latentpedia.lab.matching import default_pairs, encoded_batches, match_sources
from latentpedia.models import load_model
from latentpedia.models.hooks import run_with_cache
from latentpedia.store import Store, families
from latentpedia.train.run import TrainRequest, train_saes
from latentpedia.web import create_app

HOOK, DEEP_HOOK = "blocks.2.hook_resid_post", "blocks.3.hook_resid_post"
N_COARSE = 8
COARSE, FINE, DEEP = "2-res-coarse", "2-res-fine", "3-res-deep"
SEED0, SEED1 = "2-res-topk-32", "2-res-topk-32-s1"
WHITESPACE_TOKEN = "ĠĊĉ"  # byte-level BPE for " \\n\\t"


def quiet(*_args) -> None:
    pass


@dataclass
class FamilyAtlas:
    url: str
    model_id: str
    coarse_dec: np.ndarray
    fine_dec: np.ndarray
    report: object
    universality: object


def _whitener(model, windows: np.ndarray, hook: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, Σ^-1/2) of the hook's activations over the corpus windows (BOS left out)."""
    acts = run_with_cache(model, torch.as_tensor(windows, dtype=torch.long), [hook])[hook][:, 1:].reshape(-1, D_MODEL).double()
    mean = acts.mean(0)
    cov = torch.cov((acts - mean).T) + 1e-4 * torch.eye(D_MODEL, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(cov)
    return mean.float().numpy(), (vectors @ torch.diag(values.rsqrt()) @ vectors.T).float().numpy()


def _sae(directions: np.ndarray, mean: np.ndarray, whiten: np.ndarray) -> RefSAE:
    """relu(d · Σ^-1/2 (x - mean)) per direction d; decoder rows = the directions."""
    d_sae = directions.shape[0]
    def c32(array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array, dtype=np.float32)

    return RefSAE("relu", W_enc=c32(whiten @ directions.T), b_enc=np.zeros(d_sae, np.float32), W_dec=c32(directions), b_dec=c32(mean))


def split_directions(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Coarse orthonormal d_i [8, 64] and fine normalise(d_i ± 0.6 e_i) [16, 64] (2i: +, 2i+1: -)."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((D_MODEL, 2 * N_COARSE)))
    d, e = basis[:, :N_COARSE].T, basis[:, N_COARSE:].T
    fine = np.stack([v for i in range(N_COARSE) for v in (d[i] + 0.6 * e[i], d[i] - 0.6 * e[i])])
    return d, fine / np.linalg.norm(fine, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def atlas(module_db_url, tmp_path_factory) -> FamilyAtlas:
    from latentpedia.corpus.default import pydoc_documents

    folder = tmp_path_factory.mktemp("families")
    model = load_model(str(tiny_llama(folder / "tiny")))
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(d.text for d in pydoc_documents()[:40]))
    store = Store.open(module_db_url)
    build(store, BuildRequest(model=model.spec["path"], sources=["1-mlp"], corpus=str(corpus), n_tokens=3000, window_len=32,
                              cache_hooks=[HOOK], cache_tokens=2000, progress=False, checkpoint_seconds=0), model=model, log=quiet)
    corpus_id = store.list_corpora(model.id)[-1].id
    windows = store.get_windows(corpus_id, np.arange(store.get_corpus(corpus_id).n_windows))
    coarse, fine = split_directions()
    deep = split_directions(seed=3)[0]
    paths = {}
    for name, hook, directions in ((COARSE, HOOK, coarse), (FINE, HOOK, fine), (DEEP, DEEP_HOOK, deep)):
        mean, whiten = _whitener(model, windows, hook)
        paths[name] = str(write_saelens(folder / name, _sae(directions, mean, whiten), hook_name=hook))
    from latentpedia.engine.resolve import resolve_source

    sources = [resolve_source(model, paths[name], name=name) for name in (COARSE, FINE, DEEP)]
    build(store, BuildRequest(model=model.spec["path"], corpus=ATLAS_CORPUS, progress=False, checkpoint_seconds=0),
          model=model, sources=sources, log=quiet)  # fmt: skip
    for seed in (0, 1):
        request = TrainRequest(model=model.spec["path"], hooks=[HOOK], widths=[32], out_dir=folder / "saes", eval_tokens=0,
                               train=dict(k=4, n_tokens=4096, batch_size=128, buffer_tokens=1024, seed=seed, progress=False))
        train_saes(store, request, log=quiet)
    report = match_sources(store, model, [(COARSE, FINE), (COARSE, DEEP)], n_windows=64, log=quiet)
    universality = match_sources(store, model, [(SEED0, SEED1)], n_windows=64, log=quiet)
    vocab = list(store.get_vocab(model.id))
    top = int(store.get_latent(store.get_source(model.id, COARSE).id, 0)["logits"]["pos"][0][0])
    vocab[top] = WHITESPACE_TOKEN
    store.set_vocab(model.id, vocab)
    store.close()
    return FamilyAtlas(module_db_url, model.id, coarse, fine, report, universality)


@pytest.fixture(scope="module")
def client(atlas):
    with TestClient(create_app(atlas.url)) as test_client:
        yield test_client


def _cos_topk(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = a @ b.T
    order = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(cos, order, axis=1)


def test_topk_cos_sim_is_brute_force_cosine(atlas, client):
    """topkCosSimIndices/Values (the latent itself first) equal a brute-force cosine ranking of
    the source's decoder directions (the tiny model's layer-1 neurons: their down-projection columns)."""
    store = Store.open(atlas.url)
    try:
        model = load_model(store.get_model(atlas.model_id).spec["path"])
        decoder = load_source(store, model, "1-mlp").decoder().double().numpy()
    finally:
        store.close()
    indices, values = _cos_topk(decoder, decoder, 10)
    for i in (0, 5, 77, 127):
        body = client.get(f"/api/feature/{atlas.model_id}/1-mlp/{i}").json()
        assert body["topkCosSimIndices"] == indices[i].tolist()
        assert body["topkCosSimIndices"][0] == i
        assert body["topkCosSimValues"] == pytest.approx(values[i].tolist(), abs=1e-4)
    fine = client.get(f"/api/feature/{atlas.model_id}/{FINE}/6").json()
    assert fine["topkCosSimIndices"][:2] == [6, 7]  # itself, then its split sibling (cosine 0.64 / 1.36)
    assert fine["topkCosSimValues"][1] == pytest.approx(0.64 / 1.36, abs=1e-4)


def test_neighbours_in_the_other_width_are_the_split_latents(atlas, client):
    body = client.get(f"/api/feature/{atlas.model_id}/{COARSE}/3").json()
    groups = {(g["source"], g["method"]): g["latents"] for g in body["neighbours"]}
    assert {lat["index"] for lat in groups[(FINE, "decoder_cos")][:2]} == {6, 7}
    assert {lat["index"] for lat in groups[(FINE, "act_corr")][:2]} == {6, 7}
    assert all(lat["index"] != 3 for lat in groups[(COARSE, "decoder_cos")])  # itself left out of the shown list
    assert groups[(FINE, "decoder_cos")][0]["url"].endswith(f"/{FINE}/{groups[(FINE, 'decoder_cos')][0]['index']}")
    assert body["continues_as"]["source"] == DEEP
    assert body["family_url"] == f"/{atlas.model_id}/{COARSE}/3/family"


def test_neighbours_and_family_show_each_neighbours_best_explanation_fresh(atlas, client):
    """Each shown neighbour, the continuation and every family node carry the latent's best
    explanation (best voted, then newest) with its first ok score, read fresh: an explanation
    written after the page was cached shows on the next request. Text is escaped in the HTML."""
    url = f"/api/feature/{atlas.model_id}/{COARSE}/3"

    def fine_latents() -> dict[int, dict]:
        body = client.get(url).json()
        return {lat["index"]: lat for g in body["neighbours"] if (g["source"], g["method"]) == (FINE, "decoder_cos") for lat in g["latents"]}

    assert fine_latents()[6]["explanation"] is None  # cached now, before any explanation
    store = Store.open(atlas.url)
    try:
        fine, deep = store.get_source(atlas.model_id, FINE), store.get_source(atlas.model_id, DEEP)
        voted = store.add_explanation(fine.id, 6, "split <i>plus</i> half of coarse 3", "human")
        store.add_score(voted, "embedding", status="ok", score=0.42, baseline_score=0.1)
        store.add_explanation(fine.id, 6, "a newer, unvoted explanation", "human")
        store.vote(store.add_user("neighbour-voter", "long enough password").id, voted, 1)
        store.add_explanation(fine.id, 7, "first of latent 7", "human")
        store.add_explanation(fine.id, 7, "newest of latent 7", "offline")
        continues = client.get(url).json()["continues_as"]
        store.add_explanation(deep.id, continues["index"], "where coarse 3 goes", "human")
    finally:
        store.close()
    latents = fine_latents()
    assert (latents[6]["explanation"], latents[6]["explanation_score"], latents[6]["explanation_scorer"]) == (
        "split <i>plus</i> half of coarse 3", pytest.approx(0.42), "embedding")
    assert (latents[7]["explanation"], latents[7]["explanation_score"]) == ("newest of latent 7", None)
    body = client.get(url).json()
    assert body["continues_as"]["explanation"] == "where coarse 3 goes"
    assert body["topkCosSimIndices"][0] == 3 and all(isinstance(v, float) for v in body["topkCosSimValues"])  # Neuronpedia's lists as they were
    html = client.get(f"/{atlas.model_id}/{COARSE}/3", headers={"accept": "text/html"}).text
    section = html[html.index('id="neighbours"'):]
    section = section[: section.index("</section>")]
    assert "split &lt;i&gt;plus&lt;/i&gt; half of coarse 3" in section and "<i>plus" not in section
    assert "embedding 0.42" in section and "where coarse 3 goes" in section
    family = client.get(f"/api/family/{atlas.model_id}/{COARSE}/3").json()
    children = {c["index"]: c for c in family["tree"]["children"]}
    assert children[6]["explanation"] == "split <i>plus</i> half of coarse 3" and children[6]["explanation_score"] == pytest.approx(0.42)
    assert children[7]["explanation"] == "newest of latent 7" and children[7]["explanation_score"] is None
    page = client.get(f"/{atlas.model_id}/{COARSE}/3/family", headers={"accept": "text/html"}).text
    assert "split &lt;i&gt;plus&lt;/i&gt; half of coarse 3" in page and "embedding 0.42" in page


def test_matching_recovers_the_split_by_decoder_cosine_and_activation_correlation(atlas):
    store = Store.open(atlas.url)
    try:
        coarse, fine = store.get_source(atlas.model_id, COARSE), store.get_source(atlas.model_id, FINE)
        for method in ("decoder_cos", "act_corr"):
            down = families.best_matches(store, coarse.id, fine.id, method, list(range(N_COARSE)))
            up = families.best_matches(store, fine.id, coarse.id, method, list(range(2 * N_COARSE)))
            assert all(set(down[i][0][:2]) == {2 * i, 2 * i + 1} for i in range(N_COARSE)), (method, down)
            assert all(up[j][0][0] == j // 2 for j in range(2 * N_COARSE)), (method, up)
        cos = families.best_matches(store, coarse.id, fine.id, "decoder_cos", [0])[0][1][0]
        assert cos == pytest.approx(1 / np.sqrt(1.36), abs=1e-3)
    finally:
        store.close()


def test_universality_report_counts_latents_above_thresholds_and_finds_the_split_families(atlas):
    """Every fine latent's best coarse match by decoder cosine is its parent at 1/sqrt(1.36) = 0.857
    (and back): all reach 0.7, none 0.9. The example families are coarse latents with (some of) the
    two fine latents split from them, each matching back to its parent."""
    from latentpedia.lab.universality import agreement, example_families

    store = Store.open(atlas.url)
    try:
        rows = {(r.source, r.other, r.method): r for r in agreement(store, atlas.model_id, COARSE, FINE)}
        examples, with_family = example_families(store, atlas.model_id, COARSE, FINE, n=3, min_match=0.3)
        with pytest.raises(InvalidInputError, match="not matched"):
            agreement(store, atlas.model_id, FINE, DEEP)
    finally:
        store.close()
    for key, n in (((COARSE, FINE, "decoder_cos"), N_COARSE), ((FINE, COARSE, "decoder_cos"), 2 * N_COARSE)):
        assert rows[key].n == n and rows[key].median == pytest.approx(1 / np.sqrt(1.36), abs=1e-3)
        assert rows[key].fractions == {0.3: 1.0, 0.5: 1.0, 0.7: 1.0, 0.9: 0.0}
    corr = rows[(FINE, COARSE, "act_corr")]
    assert 0 < corr.n <= 2 * N_COARSE and 0 <= corr.fractions[0.9] <= corr.fractions[0.3] <= 1
    assert 3 <= with_family <= N_COARSE and len(examples) == 3 and all(e.method == "act_corr" for e in examples)
    assert len({e.index for e in examples}) == 3
    for e in examples:
        assert e.matches and {index for _, index, _, _ in e.matches} <= {2 * e.index, 2 * e.index + 1}
        assert all(source == FINE and value >= 0.3 for source, _, value, _ in e.matches)


def test_activation_correlation_streams_the_same_pearson_as_all_activations_at_once(atlas):
    """The stored best matches equal numpy's corrcoef over the same encodings held in memory."""
    store = Store.open(atlas.url)
    try:
        model = load_model(store.get_model(atlas.model_id).spec["path"])
        coarse, fine = load_source(store, model, COARSE), load_source(store, model, FINE)
        corpus = store.list_corpora(atlas.model_id)[-1]
        picks = np.sort(np.random.default_rng(0).choice(corpus.n_windows, size=min(64, corpus.n_windows), replace=False))
        batches = list(encoded_batches(model, [coarse, fine], store.get_windows(corpus.id, picks)))
        a = torch.cat([b[COARSE] for b in batches]).double().numpy()
        f = torch.cat([b[FINE] for b in batches]).double().numpy()
        corr = np.corrcoef(a.T, f.T)[:N_COARSE, N_COARSE:]
        stored = families.best_matches(store, store.get_source(atlas.model_id, COARSE).id,
                                       store.get_source(atlas.model_id, FINE).id, "act_corr", list(range(N_COARSE)))  # fmt: skip
        for i in range(N_COARSE):
            best = stored[i][0][0]
            assert stored[i][1][0] == pytest.approx(float(corr[i].max()), abs=1e-3)
            assert stored[i][1][0] == pytest.approx(float(corr[i, best]), abs=1e-3)
            assert stored[i][1] == pytest.approx(np.sort(corr[i])[::-1][: len(stored[i][1])].tolist(), abs=1e-3)
    finally:
        store.close()


def test_family_page_shows_the_split_tree_and_depth(atlas, client):
    body = client.get(f"/api/family/{atlas.model_id}/{COARSE}/2").json()
    assert body["tree"]["source"] == COARSE and body["tree"]["index"] == 2
    assert sorted((c["source"], c["index"]) for c in body["tree"]["children"]) == [(FINE, 4), (FINE, 5)]
    assert all(c["method"] == "act_corr" and c["value"] >= body["min_match"] for c in body["tree"]["children"])
    assert body["continues_as"][0]["source"] == DEEP
    fine = client.get(f"/api/family/{atlas.model_id}/{FINE}/5").json()
    assert [(p["source"], p["index"]) for p in fine["parents"]] == [(COARSE, 2)]
    html = client.get(f"/{atlas.model_id}/{COARSE}/2/family", headers={"accept": "text/html"})
    assert html.status_code == 200 and f'href="/{atlas.model_id}/{FINE}/4"' in html.text and "continues as" in html.text
    assert client.get(f"/api/family/{atlas.model_id}/{COARSE}/99").status_code == 404
    assert client.get(f"/api/family/{atlas.model_id}/nope/1").json()["detail"]


def test_universality_report_of_two_seeds_from_real_encodings(atlas, client):
    """Two TopK SAEs of one config, seeds 0 and 1: median best-match correlation and histogram,
    stored with the source and shown on its page."""
    pairs = {(p.source, p.other, p.method): p for p in atlas.universality.pairs}
    report = pairs[(SEED0, SEED1, "act_corr")]
    assert report.n_tokens > 500
    assert 0 < report.median <= 1
    assert sum(report.hist["counts"]) == report.hist["n"] > 0
    summaries = client.get(f"/api/matches/{atlas.model_id}/{SEED0}").json()
    mine = [s for s in summaries if s["other"] == SEED1 and s["method"] == "act_corr"]
    assert mine and mine[0]["median"] == pytest.approx(report.median, abs=1e-6)
    page = client.get(f"/{atlas.model_id}/{SEED0}", headers={"accept": "text/html"}).text
    assert "universality" in page.lower() and SEED1 in page


def test_seeds_differ_only_in_seed(atlas):
    store = Store.open(atlas.url)
    try:
        a, b = store.get_source(atlas.model_id, SEED0), store.get_source(atlas.model_id, SEED1)
        assert (a.hook_name, a.d_sae, a.meta["architecture"]) == (b.hook_name, b.d_sae, b.meta["architecture"])
        model = load_model(store.get_model(atlas.model_id).spec["path"])
        assert not torch.allclose(load_source(store, model, SEED0).decoder(), load_source(store, model, SEED1).decoder())
    finally:
        store.close()


def test_default_pairs_cover_widths_and_depth(atlas):
    store = Store.open(atlas.url)
    try:
        pairs = default_pairs(store.list_sources(atlas.model_id))
    finally:
        store.close()
    assert (COARSE, FINE) in pairs and (COARSE, DEEP) in pairs and (SEED0, SEED1) not in pairs  # same width: not a split
    assert all(a != b for a, b in pairs)


def test_matching_a_source_with_itself_or_an_unbuilt_one_is_refused(atlas):
    store = Store.open(atlas.url)
    try:
        model = load_model(store.get_model(atlas.model_id).spec["path"])
        with pytest.raises(InvalidInputError, match="itself"):
            match_sources(store, model, [(COARSE, COARSE)], log=quiet)
        with pytest.raises(Exception, match="nope"):
            match_sources(store, model, [(COARSE, "nope")], log=quiet)
    finally:
        store.close()


def test_feature_page_leads_with_the_explanation_and_collapses_quantiles(atlas, client):
    store = Store.open(atlas.url)
    try:
        source = store.get_source(atlas.model_id, COARSE)
        store.add_explanation(source.id, 0, "planted <b>explanation</b> of latent zero", "human")
    finally:
        store.close()
    html = client.get(f"/{atlas.model_id}/{COARSE}/0", headers={"accept": "text/html"}).text
    where = html.index('id="best-explanation"')
    assert "planted &lt;b&gt;explanation&lt;/b&gt; of latent zero" in html[where: where + 300]
    assert where < html.index('class="example"') < html.index('id="quantiles"')
    assert where < html.index('id="neighbours"') < html.index('class="example"')
    assert '<details class="examples quantiles" id="quantiles">' in html  # closed by default


def test_whitespace_tokens_are_visible_in_the_logit_tables(atlas, client):
    html = client.get(f"/{atlas.model_id}/{COARSE}/0", headers={"accept": "text/html"}).text
    table = html[html.index('class="grid logits pos"'):]
    table = table[: table.index("</table>")]
    assert '<span class="ws">␣</span><span class="ws">↵</span><span class="ws">⇥</span>' in table
    assert "title='\" \\n\\t\"'" in table


def test_random_explained_latent_and_home(atlas, client):
    store = Store.open(atlas.url)
    try:
        source = store.get_source(atlas.model_id, FINE)
        store.add_explanation(source.id, 11, "the only explained fine latent", "human")
        explained = {(s.name, i) for s in store.list_sources(atlas.model_id) for i in store.explained_indices(s.id)}
    finally:
        store.close()
    for _ in range(5):
        body = client.get("/api/random", params={"explained": "true"}).json()
        assert (body["layer"], body["index"]) in explained and body["explanation"]
    redirect = client.get("/random?explained=1", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"].startswith(f"/{atlas.model_id}/")
    home = client.get("/api/home").json()
    assert home["random_explained_url"] == "/random?explained=1"
    assert any(r["text"] == "the only explained fine latent" and r["url"] == f"/{atlas.model_id}/{FINE}/11" for r in home["recent_explanations"])
    html = client.get("/", headers={"accept": "text/html"}).text
    assert 'id="random-explained"' in html and "the only explained fine latent" in html


def test_random_explained_latent_404s_cleanly_without_explanations(tmp_path):
    from tests.web_atlas import seed_atlas

    seeded = seed_atlas(f"sqlite:///{tmp_path / 'atlas.db'}", tmp_path)
    with TestClient(create_app(seeded.url)) as plain:
        response = plain.get("/api/random", params={"explained": "true"})
        assert response.status_code == 404 and "no explained latent" in response.json()["detail"]
        assert plain.get("/random?explained=1", headers={"accept": "text/html"}).status_code == 404
        assert plain.get("/api/random").status_code == 200
        assert plain.get("/api/home").json()["random_explained_url"] is None


def test_cli_match_and_neighbours_print_the_report(atlas):
    from typer.testing import CliRunner

    from latentpedia.cli import app

    store = Store.open(atlas.url)
    try:
        model_path = store.get_model(atlas.model_id).spec["path"]
    finally:
        store.close()
    run = CliRunner().invoke(app, ["match", SEED0, SEED1, "--windows", "16", "--model", model_path, "--db", atlas.url])
    assert run.exit_code == 0, run.output
    assert f"{SEED0} -> {SEED1}: best-match activation correlation, median" in run.output and "#" in run.output
    again = CliRunner().invoke(app, ["neighbours", "--model", model_path, "--db", atlas.url])
    assert again.exit_code == 0 and "already stored" in again.output
    report = CliRunner().invoke(app, ["match", COARSE, FINE, "--stored", "--examples", "2", "--model", atlas.model_id, "--db", atlas.url],
                                env={"COLUMNS": "200"})  # fmt: skip
    assert report.exit_code == 0, report.output
    assert f"{COARSE} -> {FINE}" in report.output and "100.0%" in report.output and f"families {COARSE} -> {FINE}" in report.output
    assert f"{FINE}/" in report.output.split(f"families {COARSE} -> {FINE}")[1]
    missing = CliRunner().invoke(app, ["match", FINE, DEEP, "--stored", "--model", atlas.model_id, "--db", atlas.url])
    assert missing.exit_code != 0 and "not matched yet" in missing.output
