"""Build results of a source: writing them atomically and reading them for the dashboards."""

from __future__ import annotations

from itertools import repeat
from typing import Any

import numpy as np
from sqlalchemy import Select, delete, func, select

from latentpedia.store import codec
from latentpedia.store.base import StoreBase
from latentpedia.store.bulk import Row, bulk_insert
from latentpedia.store.community import explained_filter
from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults
from latentpedia.store.schema import SOURCE_READY, Example, Latent, Source, Window, utcnow

LATENT_COLUMNS = (
    "source_id", "idx", "max_act", "frac_nonzero", "mean_act", "hist", "logits", "aligned", "correlated",
)  # fmt: skip
EXAMPLE_COLUMNS = (
    "source_id", "latent", "kind", "group", "rank", "window", "max_value", "max_pos", "positions", "values",
)  # fmt: skip
LATENT_ORDERS = {
    "idx": Latent.idx,
    "max_act": Latent.max_act,
    "frac_nonzero": Latent.frac_nonzero,
    "mean_act": Latent.mean_act,
}


def _floats(values: np.ndarray) -> list[float | None]:
    """Python floats of a float array, non-finite values as None (stored as NULL)."""
    array = np.asarray(values, dtype=np.float64)
    out: list[float | None] = array.tolist()
    if not np.isfinite(array).all():
        out = [codec.finite_or_none(v) for v in out]  # type: ignore[arg-type]
    return out


def latent_rows(source_id: int, stats: LatentStats) -> list[Row]:
    """One row per latent (LATENT_COLUMNS order); ValueError if the columns disagree in length."""
    d = len(stats.max_act)
    columns = (stats.frac_nonzero, stats.mean_act, stats.hist, stats.logits, stats.aligned, stats.correlated)
    if any(len(column) != d for column in columns):
        raise ValueError(f"LatentStats columns differ in length (max_act has {d})")
    json_columns = [[codec.dumps(v) for v in column] for column in columns[2:]]
    return list(
        zip(
            repeat(source_id),
            range(d),
            _floats(stats.max_act),
            _floats(stats.frac_nonzero),
            _floats(stats.mean_act),
            *json_columns,
            strict=False,
        )
    )


def _check_examples(batch: ExampleBatch, n_latents: int) -> int:
    """The number of examples of a well-formed batch, else ValueError."""
    n = len(batch.latent)
    if n and (np.min(batch.latent) < 0 or np.max(batch.latent) >= n_latents):
        raise ValueError(f"ExampleBatch.latent must be in [0, {n_latents})")
    columns = (batch.kind, batch.group, batch.rank, batch.window, batch.max_value, batch.max_pos)
    if any(len(column) != n for column in columns):
        raise ValueError(f"ExampleBatch columns differ in length (latent has {n})")
    offsets = np.asarray(batch.offsets, dtype=np.int64)
    nnz = len(batch.positions)
    if len(offsets) != n + 1 or offsets[0] != 0 or offsets[-1] != nnz or len(batch.values) != nnz:
        raise ValueError("ExampleBatch offsets must be [0 ... len(positions)] with n + 1 entries")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("ExampleBatch offsets must not decrease")
    return n


def example_rows(source_id: int, batch: ExampleBatch, n_latents: int) -> list[Row]:
    """One row per example (EXAMPLE_COLUMNS order), positions/values as LE blobs."""
    _check_examples(batch, n_latents)
    keys = (batch.latent, batch.kind, batch.group, batch.rank, batch.window)
    ints = [np.asarray(column).astype(np.int64).tolist() for column in keys]
    return list(
        zip(
            repeat(source_id),
            *ints,
            _floats(batch.max_value),
            np.asarray(batch.max_pos).astype(np.int64).tolist(),
            codec.split_positions(batch.positions, batch.offsets),
            codec.split_blob(batch.values, codec.VALUE_DTYPE, batch.offsets),
            strict=False,
        )
    )


def _decoded_example(row: Any) -> dict[str, Any]:
    """An examples row as a JSON-able dict with positions/values decoded to lists."""
    return {
        "kind": row.kind,
        "group": row.group,
        "rank": row.rank,
        "window": row.window,
        "max_value": row.max_value,
        "max_pos": row.max_pos,
        "positions": codec.decode_positions(row.positions).tolist(),
        "values": codec.decode_array(row.values, codec.VALUE_DTYPE).astype(np.float32).tolist(),
    }


def _density_filter(query: Select[Any], min_density: float | None, max_density: float | None) -> Select[Any]:
    if min_density is not None:
        query = query.where(Latent.frac_nonzero >= min_density)
    if max_density is not None:
        query = query.where(Latent.frac_nonzero <= max_density)
    return query


class ResultMethods(StoreBase):
    """Writing a source's build results and reading latents and examples."""

    def write_source_results(
        self, source_id: int, results: SourceResults, corpus_id: int | None = None
    ) -> None:
        """Replace the source's latents and examples by `results` in ONE transaction.

        Sets status "ready", `n_tokens`, `built_at`, merges `results.meta` into the source's
        meta and, if given, sets `corpus_id` (the corpus the examples' windows index). On
        any error nothing changes (previous results stay). ValueError if the number of
        latents differs from the source's `d_sae` or the batch is malformed.
        """
        latents = latent_rows(source_id, results.stats)
        examples = example_rows(source_id, results.examples, len(latents))
        with self._begin() as session:
            source = session.get(Source, source_id, with_for_update=self.dialect == "postgresql")
            if source is None:
                raise KeyError(f"no source {source_id}")
            if len(latents) != source.d_sae:
                raise ValueError(
                    f"source {source.name!r} has {source.d_sae} latents, results have {len(latents)}"
                )
            session.execute(delete(Example).where(Example.source_id == source_id))
            session.execute(delete(Latent).where(Latent.source_id == source_id))
            conn = session.connection()
            bulk_insert(conn, Latent.__table__, LATENT_COLUMNS, latents)
            bulk_insert(conn, Example.__table__, EXAMPLE_COLUMNS, examples)
            source.status = SOURCE_READY
            source.n_tokens = int(results.n_tokens)
            source.built_at = utcnow()
            source.meta = {**source.meta, **results.meta}
            if corpus_id is not None:
                source.corpus_id = corpus_id

    def get_latent(self, source_id: int, idx: int) -> dict[str, Any] | None:
        """Statistics of one latent: idx, max_act, frac_nonzero, mean_act, hist, logits,
        aligned, correlated (as in records.LatentStats); None if not built."""
        with self._read() as session:
            row = session.get(Latent, (source_id, idx))
            if row is None:
                return None
            return {name: getattr(row, name) for name in LATENT_COLUMNS[1:]}

    def get_examples(
        self, source_id: int, idx: int, *, kind: int | None = None, with_tokens: bool = False
    ) -> list[dict[str, Any]]:
        """Examples of one latent ordered by (kind, group, rank): kind, group, rank, window,
        max_value, max_pos, positions (list[int]) and values (list[float]).

        `kind` keeps one kind (0 top, 1 quantile); `with_tokens` adds each window's token ids
        ("tokens": list[int]) from the source's corpus.
        """
        query = (
            select(Example)
            .where(Example.source_id == source_id, Example.latent == idx)
            .order_by(Example.kind, Example.group, Example.rank)
        )
        if kind is not None:
            query = query.where(Example.kind == kind)
        with self._read() as session:
            examples = [_decoded_example(row) for row in session.scalars(query)]
            if with_tokens and examples:
                self._attach_tokens(session, source_id, examples)
        return examples

    def _attach_tokens(self, session: Any, source_id: int, examples: list[dict[str, Any]]) -> None:
        """Add "tokens" (the window's token ids) to each example dict."""
        corpus_id = session.scalar(select(Source.corpus_id).where(Source.id == source_id))
        wanted = sorted({e["window"] for e in examples})
        query = select(Window.idx, Window.tokens).where(Window.corpus_id == corpus_id, Window.idx.in_(wanted))
        blobs = {idx: blob for idx, blob in session.execute(query)}
        for example in examples:
            blob = blobs.get(example["window"])
            example["tokens"] = None if blob is None else codec.decode_array(blob, codec.TOKEN_DTYPE).tolist()

    def list_latents(
        self,
        source_id: int,
        *,
        order_by: str = "idx",
        desc: bool = False,
        offset: int = 0,
        limit: int | None = 100,
        min_density: float | None = None,
        max_density: float | None = None,
        explained: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Scalar statistics (idx, max_act, frac_nonzero, mean_act) of a page of latents.

        `order_by` is one of LATENT_ORDERS (ties by idx; NULLs last); density bounds filter
        on frac_nonzero, inclusive; `explained` keeps latents with (True) or without (False)
        an explanation.
        """
        if order_by not in LATENT_ORDERS:
            raise ValueError(f"order_by must be one of {sorted(LATENT_ORDERS)}, got {order_by!r}")
        column = LATENT_ORDERS[order_by]
        key = column.desc() if desc else column.asc()
        query = select(Latent.idx, Latent.max_act, Latent.frac_nonzero, Latent.mean_act).where(
            Latent.source_id == source_id
        )
        query = explained_filter(_density_filter(query, min_density, max_density), explained)
        query = query.order_by(key.nulls_last(), Latent.idx).offset(offset).limit(limit)
        with self._read() as session:
            return [row._asdict() for row in session.execute(query)]

    def count_latents(
        self, source_id: int, *, min_density: float | None = None, max_density: float | None = None,
        explained: bool | None = None,
    ) -> int:
        """How many latents `list_latents` would page through with these filters."""
        query = select(func.count()).select_from(Latent).where(Latent.source_id == source_id)
        with self._read() as session:
            return int(session.scalar(explained_filter(_density_filter(query, min_density, max_density), explained)) or 0)

    def count_examples(self, source_id: int) -> int:
        """The number of stored examples of a source."""
        query = select(func.count()).select_from(Example).where(Example.source_id == source_id)
        with self._read() as session:
            return int(session.scalar(query) or 0)

