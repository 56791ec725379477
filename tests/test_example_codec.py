"""Compact example positions (store/codec.py): a bitmap where it is smaller than the uint16 list.

Every row decodes to exactly the positions written, whichever form it got; old stores' uint16
blobs still read; dense rows take the bitmap and shrink; a store written with both forms gives
back every example exactly (values are float16 either way), on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from latentpedia.store import codec
from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults
from tests.test_store import T, seed_source


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    positions = np.array([p for r in rows for p in r], dtype=np.uint16)
    return positions, offsets


def _random_rows(rng: np.random.Generator, n: int, window: int) -> list[list[int]]:
    """Rows of every density: empty, one position, sparse, dense, the whole window."""
    rows = []
    for _ in range(n):
        k = int(rng.choice([0, 1, 3, window // 5, window // 2, window - 1, window]))
        rows.append(sorted(rng.choice(window, size=min(k, window), replace=False).tolist()))
    return rows


@pytest.mark.parametrize("window", [8, 16, 128, 1024])
def test_every_row_decodes_to_its_positions(window: int) -> None:
    rows = _random_rows(np.random.default_rng(window), 400, window)
    positions, offsets = _csr(rows)
    blobs = codec.split_positions(positions, offsets)
    assert [codec.decode_positions(b).tolist() for b in blobs] == rows
    for row, blob in zip(rows, blobs, strict=True):
        assert len(blob) <= 2 * len(row)  # never larger than the uint16 list
        assert (len(blob) % 2 == 1) == (blob[:1] == bytes([codec.POSITIONS_BITMAP]) and len(blob) < 2 * len(row))


def test_dense_rows_take_the_bitmap_and_sparse_ones_the_list() -> None:
    dense, sparse = list(range(1, 128)), [5, 100]
    blobs = codec.split_positions(*_csr([dense, sparse]))
    assert len(blobs[0]) == 1 + 16 and blobs[0][0] == codec.POSITIONS_BITMAP  # 127 positions in 17 bytes, not 254
    assert blobs[1] == np.array(sparse, dtype="<u2").tobytes()


def test_rows_out_of_order_keep_the_list() -> None:
    """A bitmap can only hold increasing positions: other rows are written as given."""
    rows = [list(range(40, 0, -1)), [3, 3, 4, 5, 6, 7, 8, 9, 10, 11], list(range(0, 40))]
    blobs = codec.split_positions(*_csr(rows))
    assert [codec.decode_positions(b).tolist() for b in blobs] == rows
    assert len(blobs[0]) == 80 and len(blobs[1]) == 20 and len(blobs[2]) % 2 == 1


def test_old_uint16_blobs_still_read() -> None:
    old = codec.encode_array([1, 2, 7, 127], codec.POSITION_DTYPE)  # what every store before wrote
    assert codec.decode_positions(old).tolist() == [1, 2, 7, 127]
    assert codec.decode_positions(b"").tolist() == []
    with pytest.raises(ValueError, match="unknown positions encoding"):
        codec.decode_positions(b"\x07\x00\x01")


def test_store_round_trip_with_both_forms(store) -> None:
    rng = np.random.default_rng(3)
    d, per = 6, 4
    source = seed_source(store, d=d)
    rows = _random_rows(rng, d * per, T)
    positions, offsets = _csr(rows)
    values = (rng.random(len(positions)) * 5).astype(np.float16)
    n = d * per
    batch = ExampleBatch(
        latent=np.repeat(np.arange(d, dtype=np.int32), per), kind=np.zeros(n, np.int8), group=np.full(n, -1, np.int8),
        rank=np.tile(np.arange(per, dtype=np.int16), d), window=rng.integers(0, 50, n).astype(np.int32),
        max_value=rng.random(n, dtype=np.float32), max_pos=np.ones(n, np.int16), offsets=offsets, positions=positions, values=values,
    )  # fmt: skip
    stats = LatentStats(
        max_act=np.ones(d, np.float32), frac_nonzero=np.ones(d, np.float32), mean_act=np.ones(d, np.float32),
        hist=[{}] * d, logits=[{}] * d, aligned=[[]] * d, correlated=[[]] * d,
    )  # fmt: skip
    store.write_source_results(source, SourceResults(stats=stats, examples=batch, n_tokens=1))
    for latent in range(d):
        got = store.get_examples(source, latent)
        for rank, example in enumerate(got):
            j = latent * per + rank
            a, b = offsets[j], offsets[j + 1]
            assert example["positions"] == rows[j]
            assert example["values"] == values[a:b].astype(np.float32).tolist()  # float16 exactly as written


def test_position_list_is_decode_positions() -> None:
    rows = _random_rows(np.random.default_rng(9), 300, 128)
    for blob in codec.split_positions(*_csr(rows)):
        assert codec.position_list(blob) == codec.decode_positions(blob).tolist()


def test_examples_survive_the_partitioning_migration(db_url: str) -> None:
    """Rows written before migration 0011 (which partitions `examples` on PostgreSQL, and leaves
    SQLite as it is) read back unchanged after it, old uint16 positions included."""
    import sqlalchemy as sa

    from latentpedia.store.api import Store
    from latentpedia.store.migrate import schema_diff, upgrade

    upgrade(db_url, "0010")
    engine = sa.create_engine(db_url)
    rows = [{"s": s, "l": latent, "p": codec.encode_array([1, 5, 9], codec.POSITION_DTYPE), "v": codec.encode_array([0.5, 1.0, 2.0], codec.VALUE_DTYPE)}
            for s in (1, 2, 3) for latent in range(4)]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.text('INSERT INTO examples (source_id, latent, kind, "group", rank, "window", max_value, max_pos, positions, "values") '
                             "VALUES (:s, :l, 0, -1, 0, 7, 2.0, 9, :p, :v)"), rows)  # fmt: skip
    engine.dispose()
    with Store.open(db_url) as store:  # migrates to the head
        assert schema_diff(store.engine) == []
        for s in (1, 2, 3):
            got = store.get_examples(s, 3)
            assert [(e["positions"], e["values"]) for e in got] == [([1, 5, 9], [0.5, 1.0, 2.0])]
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM examples")).scalar() == 12
            if conn.dialect.name == "postgresql":
                kind = conn.execute(sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass('examples')")).scalar()
                assert kind == "p"
