"""The atlas store on SQLite and PostgreSQL: migrations, round trips, atomic result writes."""

from __future__ import annotations

import math
import time
from datetime import datetime

import numpy as np
import pytest
import sqlalchemy as sa

from latentpedia.store import SourceConflictError, Store, upgrade
from latentpedia.store import results as results_module
from latentpedia.store.migrate import current_revision, head_revision, schema_diff
from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults

MODEL = "tiny-model"
T = 16  # window length of the test corpora


def make_results(d: int, per_latent: int, *, seed: int = 0, n_windows: int = 50) -> SourceResults:
    """Synthetic build results: `d` latents with `per_latent` examples each (8 top, rest quantile)."""
    rng = np.random.default_rng(seed)
    stats = LatentStats(
        max_act=rng.random(d, dtype=np.float32) * 10,
        frac_nonzero=rng.random(d, dtype=np.float32),
        mean_act=rng.random(d, dtype=np.float32),
        hist=[{"edges": np.linspace(0, 1, 51).tolist(), "counts": [i] * 50} for i in range(d)],
        logits=[{"pos": [[i, 1.5]], "neg": [[i + 1, -0.5]], "basis": "W_U"} for i in range(d)],
        aligned=[[[i % 7, 0.25]] for i in range(d)],
        correlated=[[[(i + 1) % d, 0.5]] for i in range(d)],
    )
    n = d * per_latent
    slot = np.tile(np.arange(per_latent), d)
    top = slot < min(8, per_latent)
    quantile_slot = np.maximum(slot - 8, 0)
    lengths = rng.integers(0, 9, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    examples = ExampleBatch(
        latent=np.repeat(np.arange(d, dtype=np.int32), per_latent),
        kind=np.where(top, 0, 1).astype(np.int8),
        group=np.where(top, -1, quantile_slot // 5).astype(np.int8),
        rank=np.where(top, slot, quantile_slot % 5).astype(np.int16),
        window=rng.integers(0, n_windows, n).astype(np.int32),
        max_value=rng.random(n, dtype=np.float32),
        max_pos=rng.integers(1, T, n).astype(np.int16),
        offsets=offsets,
        positions=rng.integers(1, T, offsets[-1]).astype(np.uint16),
        values=rng.random(offsets[-1]).astype(np.float16),
    )
    return SourceResults(stats=stats, examples=examples, n_tokens=12345, meta={"seed": seed})


def example_slice(batch: ExampleBatch, j: int) -> tuple[list[int], list[float]]:
    a, b = int(batch.offsets[j]), int(batch.offsets[j + 1])
    return batch.positions[a:b].tolist(), batch.values[a:b].astype(np.float32).tolist()


def seed_model(store: Store) -> None:
    store.upsert_model(MODEL, "llama", 4, 32, 64, 100, 0, {"path": "/x"})


def seed_source(store: Store, d: int = 5, n_windows: int = 50, name: str = "1-mlp") -> int:
    """A model, a corpus of `n_windows` windows and a pending source with `d` latents."""
    seed_model(store)
    windows = np.arange(n_windows * T, dtype=np.int32).reshape(n_windows, T) % 100
    corpus_id = store.add_corpus(MODEL, "c", {"from": "test"}, T, windows, {"prose": 1.0}, "hash-1")
    return store.add_source(MODEL, name, "mlp", "blocks.1.mlp.hook_post", 1, 32, d, corpus_id)


def test_migration_matches_schema(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)  # idempotent
    assert schema_diff(db_url) == []
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    engine.dispose()


def test_open_sqlite_creates_folder_and_sets_pragmas(tmp_path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'a' / 'b' / 'atlas.db'}") as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    assert (tmp_path / "a" / "b" / "atlas.db").exists()


def test_models_roundtrip_and_upsert(store: Store) -> None:
    assert store.get_model(MODEL) is None
    seed_model(store)
    model = store.get_model(MODEL)
    assert (model.family, model.n_layers, model.d_model, model.d_mlp) == ("llama", 4, 32, 64)
    assert (model.vocab_size, model.bos_id, model.spec) == (100, 0, {"path": "/x"})
    assert model.created_at.tzinfo is not None
    assert model["id"] == MODEL and dict(model) == model.to_dict() and len(model) == 9  # mapping too
    store.upsert_model(MODEL, "llama", 4, 32, 64, 100, 1, {"path": "/y"})
    assert (store.get_model(MODEL).bos_id, store.get_model(MODEL).spec) == (1, {"path": "/y"})
    store.upsert_model("a-model", "gpt2", 1, 8, 16, 10, 0, {})
    assert [m.id for m in store.list_models()] == ["a-model", MODEL]


def test_vocab_roundtrip_and_cache(store: Store) -> None:
    seed_model(store)
    assert store.get_vocab(MODEL) == []
    tokens = ["<|endoftext|>", "Ġthe", "é", "\n", "💡", ""] + [f"t{i}" for i in range(94)]
    store.set_vocab(MODEL, tokens)
    assert store.get_vocab(MODEL) == tokens
    assert store.get_vocab(MODEL) is store.get_vocab(MODEL)  # cached
    store.set_vocab(MODEL, ["a", "b"])
    assert store.get_vocab(MODEL) == ["a", "b"]


def test_corpus_roundtrip(store: Store) -> None:
    seed_model(store)
    rng = np.random.default_rng(1)
    windows = rng.integers(0, 49152, (300, T)).astype(np.int64)
    cid = store.add_corpus(MODEL, "docs", {"files": ["a"]}, T, windows, {"code": 0.4}, "abc")
    corpus = store.get_corpus(cid)
    assert (corpus.name, corpus.window_len, corpus.n_windows, corpus.n_tokens) == ("docs", T, 300, 300 * T)
    assert (corpus.spec, corpus.composition, corpus.content_hash) == ({"files": ["a"]}, {"code": 0.4}, "abc")
    assert store.find_corpus(MODEL, "abc") == corpus
    assert store.find_corpus(MODEL, "other") is None
    assert store.list_corpora(MODEL) == [corpus]
    idxs = [299, 0, 5, 5, 123]
    got = store.get_windows(cid, idxs)
    assert got.dtype == np.int32 and np.array_equal(got, windows[idxs])
    assert np.array_equal(np.stack(list(store.iter_windows(cid))), windows)
    assert np.array_equal(np.stack(list(store.iter_windows(cid, 10, 20))), windows[10:20])
    with pytest.raises(KeyError):
        store.get_windows(cid, [300])


def test_add_corpus_is_idempotent(store: Store) -> None:
    seed_model(store)
    windows = np.ones((4, T), dtype=np.int32)
    first = store.add_corpus(MODEL, "c", {}, T, windows, {}, "same")
    second = store.add_corpus(MODEL, "c2", {}, T, np.zeros((9, T), dtype=np.int32), {}, "same")
    assert first == second
    assert store.get_corpus(first).n_windows == 4 and len(list(store.iter_windows(first))) == 4
    assert store.add_corpus(MODEL, "c", {}, T, windows, {}, "different") != first


def test_add_corpus_rejects_bad_windows(store: Store) -> None:
    seed_model(store)
    with pytest.raises(ValueError, match="shape"):
        store.add_corpus(MODEL, "c", {}, T, np.zeros((3, T + 1), dtype=np.int32), {}, "h")
    with pytest.raises(ValueError, match="integer"):
        store.add_corpus(MODEL, "c", {}, T, np.zeros((3, T)), {}, "h")
    assert store.list_corpora() == []


def test_sources_roundtrip_conflict_and_delete(store: Store) -> None:
    sid = seed_source(store, d=5)
    source = store.get_source(MODEL, "1-mlp")
    got = (source.id, source.status, source.kind, source.layer, source.d_sae)
    assert got == (sid, "pending", "mlp", 1, 5)
    assert store.get_source_by_id(sid) == source
    again = store.add_source(MODEL, "1-mlp", "mlp", "blocks.1.mlp.hook_post", 1, 32, 5, source.corpus_id)
    assert again == sid
    with pytest.raises(SourceConflictError, match="d_sae"):
        store.add_source(MODEL, "1-mlp", "mlp", "blocks.1.mlp.hook_post", 1, 32, 6, source.corpus_id)
    other = store.add_source(MODEL, "2-res-topk", "sae", "blocks.2.hook_resid_post", 2, 32, 64,
                             format="saelens", path="/saes/2", meta={"k": 8})  # fmt: skip
    assert [s.name for s in store.list_sources(MODEL)] == ["1-mlp", "2-res-topk"]
    assert store.get_source_by_id(other).meta == {"k": 8}
    store.write_source_results(sid, make_results(5, 3))
    assert store.delete_source(MODEL, "1-mlp") is True
    assert store.delete_source(MODEL, "1-mlp") is False
    assert store.get_source(MODEL, "1-mlp") is None
    assert store.get_latent(sid, 0) is None and store.count_examples(sid) == 0
    assert [s.id for s in store.list_sources()] == [other]


def test_source_corpus_switches_only_with_new_results(store: Store) -> None:
    sid = seed_source(store, d=5)
    old_corpus = store.get_source_by_id(sid).corpus_id
    new_corpus = store.add_corpus(MODEL, "c2", {}, T, np.zeros((50, T), dtype=np.int32), {}, "hash-2")
    args = (MODEL, "1-mlp", "mlp", "blocks.1.mlp.hook_post", 1, 32, 5)
    assert store.add_source(*args, new_corpus) == sid  # pending: adopts the new corpus
    assert store.get_source_by_id(sid).corpus_id == new_corpus
    store.write_source_results(sid, make_results(5, 2), corpus_id=old_corpus)
    assert store.add_source(*args, new_corpus, path="/moved") == sid  # built: keeps its corpus
    source = store.get_source_by_id(sid)
    assert (source.corpus_id, source.path, source.status) == (old_corpus, "/moved", "ready")
    store.write_source_results(sid, make_results(5, 2), corpus_id=new_corpus)
    assert store.get_source_by_id(sid).corpus_id == new_corpus


def assert_results_stored(store: Store, sid: int, res: SourceResults) -> None:
    """Every latent and example of `res` reads back exactly (values at float16/32 precision)."""
    d = len(res.stats.max_act)
    for i in {0, d // 2, d - 1}:
        latent = store.get_latent(sid, i)
        assert latent["idx"] == i and latent["max_act"] == pytest.approx(float(res.stats.max_act[i]))
        assert latent["hist"] == res.stats.hist[i] and latent["logits"] == res.stats.logits[i]
        assert latent["aligned"] == res.stats.aligned[i]
        assert latent["correlated"] == res.stats.correlated[i]
    ex = res.examples
    assert store.count_examples(sid) == len(ex.latent)
    for i in {0, d - 1}:
        stored = store.get_examples(sid, i)
        rows = np.flatnonzero(ex.latent == i)
        rows = rows[np.lexsort((ex.rank[rows], ex.group[rows], ex.kind[rows]))]
        assert len(stored) == len(rows)
        for got, j in zip(stored, rows, strict=True):
            assert (got["kind"], got["group"], got["rank"]) == (ex.kind[j], ex.group[j], ex.rank[j])
            assert (got["window"], got["max_pos"]) == (ex.window[j], ex.max_pos[j])
            assert got["max_value"] == float(ex.max_value[j])
            assert (got["positions"], got["values"]) == example_slice(ex, j)


def test_write_source_results_roundtrip(store: Store) -> None:
    sid = seed_source(store, d=5)
    res = make_results(5, 20)
    before = datetime.now().astimezone()
    store.write_source_results(sid, res)
    source = store.get_source_by_id(sid)
    assert (source.status, source.n_tokens, source.meta) == ("ready", 12345, {"seed": 0})
    assert source.built_at >= before.replace(microsecond=0)
    assert_results_stored(store, sid, res)
    top = store.get_examples(sid, 2, kind=0, with_tokens=True)
    assert [e["rank"] for e in top] == list(range(8))
    windows = store.get_windows(source.corpus_id, [e["window"] for e in top])
    assert [e["tokens"] for e in top] == windows.tolist()
    assert store.get_latent(sid, 5) is None and store.get_examples(sid, 5) == []


def test_write_replaces_previous_results(store: Store) -> None:
    sid = seed_source(store, d=5)
    store.write_source_results(sid, make_results(5, 20, seed=1))
    new = make_results(5, 3, seed=2)
    new.meta = {"pass": 2}
    store.write_source_results(sid, new)
    assert store.count_examples(sid) == 15
    assert_results_stored(store, sid, new)
    assert store.get_source_by_id(sid).meta == {"seed": 1, "pass": 2}  # merged


def test_failed_write_keeps_previous_results(store: Store, monkeypatch) -> None:
    sid = seed_source(store, d=5)
    old = make_results(5, 10, seed=3)
    store.write_source_results(sid, old)
    bad = make_results(5, 10, seed=4)
    bad.examples.rank[-1] = bad.examples.rank[-2]  # duplicate primary key in the last row
    bad.examples.group[-1] = bad.examples.group[-2]
    with pytest.raises(sa.exc.IntegrityError):
        store.write_source_results(sid, bad)
    assert_results_stored(store, sid, old)

    calls = []

    def fail_on_examples(conn, table, columns, rows):  # latents written, then a crash
        calls.append(table.name)
        if table.name == "examples":
            raise RuntimeError("crash mid-write")
        return real(conn, table, columns, rows)

    real = results_module.bulk_insert
    monkeypatch.setattr(results_module, "bulk_insert", fail_on_examples)
    with pytest.raises(RuntimeError):
        store.write_source_results(sid, make_results(5, 4, seed=5))
    assert calls == ["latents", "examples"]
    assert_results_stored(store, sid, old)
    assert store.get_source_by_id(sid).meta == {"seed": 3}


def test_write_validates_results(store: Store) -> None:
    sid = seed_source(store, d=5)
    with pytest.raises(ValueError, match="5 latents"):
        store.write_source_results(sid, make_results(6, 2))
    broken = make_results(5, 2)
    broken.examples.offsets = broken.examples.offsets[:-1]
    with pytest.raises(ValueError, match="offsets"):
        store.write_source_results(sid, broken)
    broken = make_results(5, 2)
    broken.examples.latent[3] = 5
    with pytest.raises(ValueError, match="latent must be in"):
        store.write_source_results(sid, broken)
    with pytest.raises(KeyError):
        store.write_source_results(sid + 99, make_results(5, 2))
    assert store.get_source_by_id(sid).status == "pending"


def test_non_finite_values_become_null(store: Store) -> None:
    sid = seed_source(store, d=5)
    res = make_results(5, 2)
    res.stats.max_act[1] = np.nan
    res.stats.correlated[1] = [[2, float("nan")], [3, np.float32(0.5)]]
    res.stats.hist[1] = {"edges": np.array([0.0, np.inf]), "counts": np.array([3])}
    store.write_source_results(sid, res)
    latent = store.get_latent(sid, 1)
    assert latent["max_act"] is None
    assert latent["correlated"] == [[2, None], [3, 0.5]]
    assert latent["hist"] == {"edges": [0.0, None], "counts": [3]}


def test_list_latents_order_filter_page(store: Store) -> None:
    sid = seed_source(store, d=40)
    res = make_results(40, 1)
    store.write_source_results(sid, res)
    stats = res.stats
    rows = store.list_latents(sid, order_by="max_act", desc=True, limit=5)
    assert [r["idx"] for r in rows] == np.argsort(-stats.max_act, kind="stable")[:5].tolist()
    assert set(rows[0]) == {"idx", "max_act", "frac_nonzero", "mean_act"}
    page = store.list_latents(sid, offset=10, limit=10)
    assert [r["idx"] for r in page] == list(range(10, 20))
    dense = store.list_latents(sid, order_by="frac_nonzero", min_density=0.25, max_density=0.75, limit=None)
    expected = [i for i in np.argsort(stats.frac_nonzero) if 0.25 <= float(stats.frac_nonzero[i]) <= 0.75]
    assert [r["idx"] for r in dense] == expected
    assert store.count_latents(sid, min_density=0.25, max_density=0.75) == len(expected)
    assert store.count_latents(sid) == 40
    with pytest.raises(ValueError, match="order_by"):
        store.list_latents(sid, order_by="idx; DROP TABLE latents")


def test_jobs(store: Store) -> None:
    first = store.start_job("build", "smollm2-135m/6-mlp")
    second = store.start_job("build", "smollm2-135m/7-mlp", message="queued")
    store.update_job(first, progress=0.5, message="forward 50%")
    job = store.get_job(first)
    assert (job.status, job.progress, job.message) == ("running", 0.5, "forward 50%")
    assert job.updated_at >= job.created_at
    store.finish_job(first)
    store.finish_job(second, status="failed", message="out of memory")
    assert [(j.id, j.status, j.progress) for j in store.list_jobs()] == [
        (second, "failed", 0.0),
        (first, "done", 1.0),
    ]
    assert [j.id for j in store.list_jobs(status="done")] == [first]
    with pytest.raises(KeyError):
        store.update_job(first + second + 1, progress=1)


def test_scale_roundtrip(store: Store) -> None:
    d, per_latent = 2000, 80
    sid = seed_source(store, d=d)
    res = make_results(d, per_latent, seed=7)
    start = time.perf_counter()
    store.write_source_results(sid, res)
    seconds = time.perf_counter() - start
    print(f"\n{store.dialect}: {d} latents + {d * per_latent} examples written in {seconds:.2f} s")
    assert store.count_latents(sid) == d
    assert_results_stored(store, sid, res)
    top = store.list_latents(sid, order_by="max_act", desc=True, limit=1)[0]
    assert top["idx"] == int(np.argmax(res.stats.max_act))
    assert math.isclose(top["max_act"], float(res.stats.max_act.max()), rel_tol=1e-6)


def test_open_accepts_plain_postgresql_url(db_url: str) -> None:
    url = db_url.replace("postgresql+psycopg://", "postgresql://")  # psycopg 3, not psycopg2
    with Store.open(url) as store:
        assert store.engine.dialect.driver in ("psycopg", "pysqlite")
        seed_model(store)
        assert store.get_model(MODEL) is not None
