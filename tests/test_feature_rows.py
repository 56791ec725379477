"""store/feature_rows.py reads on the DBAPI connection what the ORM reads (the latent row, its
examples in order, its matches in order, its map position, its community flags, its neighbours'
best explanations), on SQLite and PostgreSQL, so the feature JSON and page built from them are
the ORM's."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from latentpedia.store import families
from latentpedia.store.api import Store
from latentpedia.store.feature_rows import MAX_INDEX, best_explanations, dbapi_connection, read_feature_rows, window_rows
from latentpedia.store.maps import LatentMap
from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults
from latentpedia.store.schema import Example, Latent, Window
from latentpedia.store.textcheck import InvalidTextError

MODEL, N, K, WINDOW = "tiny", 12, 3, 16


def _results(rng: np.random.Generator) -> SourceResults:
    hist = {"edges": [0.0, 0.5, 1.0], "counts": [3, 4]}
    stats = LatentStats(
        max_act=rng.random(N, dtype=np.float32), frac_nonzero=rng.random(N, dtype=np.float32), mean_act=rng.random(N, dtype=np.float32),
        hist=[hist] * N, logits=[{"pos": [[1, 2.0]], "neg": [[2, -1.0]], "hist": hist, "basis": "W_U"}] * N,
        aligned=[[[0, 0.5]]] * N, correlated=[[[1, 0.25]]] * N,
    )  # fmt: skip
    m = N * K
    counts = rng.integers(1, 6, m)
    positions = np.concatenate([np.sort(rng.choice(WINDOW, c, replace=False)) for c in counts]).astype(np.uint16)
    examples = ExampleBatch(
        latent=np.repeat(np.arange(N, dtype=np.int32), K), kind=np.tile(np.array([0, 1, 1], np.int8), N),
        group=np.tile(np.array([-1, 3, 1], np.int8), N), rank=np.zeros(m, np.int16),  # quantile groups out of order
        window=rng.integers(0, 8, m).astype(np.int32), max_value=rng.random(m, dtype=np.float32), max_pos=np.ones(m, np.int16),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), positions=positions,
        values=rng.random(len(positions)).astype(np.float16),
    )  # fmt: skip
    return SourceResults(stats, examples, n_tokens=8 * WINDOW)


@pytest.fixture
def tiny(store: Store) -> tuple[Store, list[int]]:
    """Two sources of N latents; the first with matches in both, a map and community rows."""
    rng = np.random.default_rng(0)
    store.upsert_model(MODEL, "llama", 2, 8, 16, 64, 0)
    store.set_vocab(MODEL, [f"t{i}" for i in range(64)])
    corpus = store.add_corpus(MODEL, "c", {}, WINDOW, rng.integers(0, 64, (8, WINDOW)).astype(np.int32), {}, "tiny")
    ids = [store.add_source(MODEL, f"{layer}-sae", "sae", f"blocks.{layer}.hook_resid_post", layer, 8, N, corpus) for layer in (0, 1)]
    for sid in ids:
        store.write_source_results(sid, _results(rng))
    for other, method in ((ids[1], "decoder_cos"), (ids[0], "decoder_cos"), (ids[1], "act_corr")):
        order = np.argsort(rng.random((N, N)), axis=1)[:, :4]
        families.write_pair(store, ids[0], other, method, order, rng.random((N, 4)), median=0.5, meta={})
    store.write_map(ids[0], rng.random((N, 2)), rng.integers(-1, 3, N), {"n": N})
    user = store.add_user("rows-tester", "a long enough password 123")
    other = store.add_user("rows-tester-2", "a long enough password 123")
    first = store.add_explanation(ids[1], 2, "older", "human")
    store.add_explanation(ids[1], 2, "newer", "human")
    voted = store.add_explanation(ids[1], 3, "voted", "human")
    store.add_explanation(ids[1], 3, "unvoted but newer", "human")
    store.vote(user.id, voted, 1)
    store.vote(other.id, first, -1)
    store.add_score(voted, "embedding", status="error")
    store.add_score(voted, "embedding", status="ok", score=0.25)
    store.add_score(voted, "detection", status="ok", score=0.75)
    store.add_explanation(ids[0], 5, "own", "human")
    store.add_comment(ids[0], 6, user.id, "a comment")
    return store, ids


def _read(store: Store, source: str, index: int, full: bool = True):
    with dbapi_connection(store.engine) as conn:
        return read_feature_rows(conn, store.dialect, MODEL, source, index, full=full)


def test_rows_are_what_the_orm_reads(tiny):
    store, ids = tiny
    with store.engine.connect() as conn:
        for sid, name in zip(ids, ("0-sae", "1-sae"), strict=True):
            for index in range(N):
                rows = _read(store, name, index)
                assert rows.source_key[0] == sid and rows.source_key[2] == name
                latent = conn.execute(select(Latent.max_act, Latent.frac_nonzero, Latent.mean_act, Latent.hist, Latent.logits,
                                             Latent.aligned, Latent.correlated).where(Latent.source_id == sid, Latent.idx == index)).one()  # fmt: skip
                assert tuple(rows.latent) == tuple(latent)
                examples = conn.execute(select(Example.kind, Example.group, Example.window, Example.max_value, Example.max_pos,
                                               Example.positions, Example.values).where(Example.source_id == sid, Example.latent == index)
                                        .order_by(Example.kind, Example.group, Example.rank)).all()  # fmt: skip
                assert [tuple(r) for r in rows.examples] == [tuple(r) for r in examples] and len(examples) == K
                assert families.match_rows(rows.matches) == families.latent_matches(store, sid, index)
                spot = conn.execute(select(LatentMap.x, LatentMap.y, LatentMap.cluster).where(LatentMap.source_id == sid, LatentMap.idx == index)).first()
                assert (tuple(rows.map_row) if rows.map_row else None) == (tuple(spot) if spot else None)
                assert (rows.has_explanations, rows.has_comments) == ((sid, index) in {(ids[1], 2), (ids[1], 3), (ids[0], 5)}, (sid, index) == (ids[0], 6))
                head = _read(store, name, index, full=False)
                assert head.source_key == rows.source_key and head.latent is None and not head.examples
                assert (head.has_explanations, head.has_comments) == (rows.has_explanations, rows.has_comments)
    assert len(families.latent_matches(store, ids[0], 0)) == 3 and _read(store, "0-sae", 0).map_row is not None


def test_a_read_with_the_known_source_id_is_the_stepwise_read(tiny):
    """With the source's id known (PostgreSQL: the three statements in one pipelined round trip),
    a read is the stepwise one; with a stale id (the source built again under another id, or
    another source's), it still reads the rows of the source the name now has."""
    store, ids = tiny
    with dbapi_connection(store.engine) as conn:
        for sid, name in zip(ids, ("0-sae", "1-sae"), strict=True):
            for index in (0, 5, 6, N - 1, N, -1):
                stepwise = read_feature_rows(conn, store.dialect, MODEL, name, index, full=True)
                for known in (sid, ids[0] + ids[1] - sid, 10**6):
                    assert read_feature_rows(conn, store.dialect, MODEL, name, index, full=True, source_id=known) == stepwise, (name, index, known)
        assert read_feature_rows(conn, store.dialect, MODEL, "9-sae", 0, full=True, source_id=ids[0]).source_key is None


def test_unknown_sources_and_latents_read_nothing(tiny):
    store, _ = tiny
    assert _read(store, "9-sae", 0).source_key is None
    for index in (N, -1, MAX_INDEX + 1, 10**30):
        rows = _read(store, "0-sae", index)
        assert rows.source_key is not None and rows.latent is None and not rows.examples and not rows.matches


def test_unstorable_names_are_invalid_text_on_both_databases(tiny):
    """A NUL or a lone surrogate in a name is the store's InvalidTextError (HTTP 422), as on the
    engine's own statements, not the driver's error (PostgreSQL refuses NUL in text)."""
    store, ids = tiny
    for model, source in ((MODEL, "bad\x00name"), ("bad\x00model", "0-sae"), (MODEL, "\ud800")):
        for known in (None, ids[0]):
            with dbapi_connection(store.engine) as conn, pytest.raises(InvalidTextError):
                read_feature_rows(conn, store.dialect, model, source, 0, full=True, source_id=known)
    assert _read(store, "0-sae", 0).latent is not None  # the pooled connection still works


def test_source_key_changes_with_the_row(tiny):
    store, ids = tiny
    before = _read(store, "0-sae", 1).source_key
    assert _read(store, "0-sae", 1, full=False).source_key == before
    store.set_source_quality(ids[0], {"l0": 3.0})
    assert _read(store, "0-sae", 1).source_key != before


def test_best_explanations_in_one_statement_are_the_orms(tiny):
    store, ids = tiny
    wanted = {ids[1]: set(range(N)), ids[0]: {4, 5, 6}}
    with dbapi_connection(store.engine) as conn:
        found = best_explanations(conn, store.dialect, wanted)
        assert best_explanations(conn, store.dialect, {}) == {} and best_explanations(conn, store.dialect, {ids[0]: set()}) == {}
    assert found == families.best_explanations(store, wanted)
    assert found[(ids[1], 3)] == families.BestExplanation("voted", 0.25, "embedding")  # voted first; first ok score
    assert found[(ids[1], 2)].text == "newer" and found[(ids[0], 5)].text == "own" and len(found) == 3


def test_window_rows(tiny):
    store, ids = tiny
    corpus = store.get_source(MODEL, "0-sae").corpus_id
    with store.engine.connect() as c:
        expected = {i: bytes(t) for i, t in c.execute(select(Window.idx, Window.tokens).where(Window.corpus_id == corpus, Window.idx.in_([1, 5])))}
    with dbapi_connection(store.engine) as conn:
        assert {i: bytes(t) for i, t in window_rows(conn, store.dialect, corpus, [1, 5])} == expected and len(expected) == 2
