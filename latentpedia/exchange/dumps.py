"""Analysis dumps: the canonical tables (exchange.canonical) as one JSON Lines or Parquet file
per table, which pandas, polars and duckdb read directly.

In Parquet, nested panels whose keys vary (`hist`, `logits`, `aligned`, `correlated`, `spec`,
`meta`, `details`) are JSON text columns; `token_ids`, `tokens` and `values` are lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from latentpedia.exchange.canonical import TABLES, AtlasReader
from latentpedia.exchange.jsonl import write_rows
from latentpedia.store import codec
from latentpedia.store.api import Store

FORMATS = ("jsonl", "parquet")
_BATCH = 4096
_JSON = pa.string()  # a JSON text column (named in JSON_COLUMNS)
JSON_COLUMNS = frozenset({"spec", "meta", "hist", "logits", "aligned", "correlated", "details"})
_KEY = [("model", pa.string()), ("source", pa.string())]
SCHEMAS: dict[str, pa.Schema] = {
    "models": pa.schema([
        ("model", pa.string()), ("family", pa.string()), ("n_layers", pa.int32()), ("d_model", pa.int32()),
        ("d_mlp", pa.int32()), ("vocab_size", pa.int32()), ("bos_id", pa.int32()), ("spec", _JSON),
        ("vocab_sha256", pa.string()),
    ]),
    "sources": pa.schema([
        *_KEY, ("kind", pa.string()), ("hook_name", pa.string()), ("layer", pa.int32()), ("d_in", pa.int32()),
        ("d_sae", pa.int32()), ("n_tokens", pa.int64()), ("format", pa.string()), ("path", pa.string()),
        ("meta", _JSON),
    ]),
    "latents": pa.schema([
        *_KEY, ("index", pa.int32()), ("max_act", pa.float64()), ("frac_nonzero", pa.float64()),
        ("mean_act", pa.float64()), ("hist", _JSON), ("logits", _JSON), ("aligned", _JSON), ("correlated", _JSON),
    ]),
    "examples": pa.schema([
        *_KEY, ("index", pa.int32()), ("kind", pa.int8()), ("group", pa.int8()), ("rank", pa.int16()),
        ("window", pa.int32()), ("max_value", pa.float64()), ("max_pos", pa.int32()),
        ("token_ids", pa.list_(pa.int32())), ("tokens", pa.list_(pa.string())), ("values", pa.list_(pa.float32())),
    ]),
    "explanations": pa.schema([
        *_KEY, ("index", pa.int32()), ("ordinal", pa.int32()), ("text", pa.string()), ("method", pa.string()),
        ("explainer_model", pa.string()), ("prompt_version", pa.string()), ("author", pa.string()),
        ("details", _JSON),
    ]),
    "scores": pa.schema([
        *_KEY, ("index", pa.int32()), ("ordinal", pa.int32()), ("scorer", pa.string()),
        ("scorer_model", pa.string()), ("prompt_version", pa.string()), ("status", pa.string()),
        ("score", pa.float64()), ("baseline_score", pa.float64()), ("baseline", pa.list_(pa.int32())),
        ("details", _JSON), ("error", pa.string()),
    ]),
    "votes": pa.schema([*_KEY, ("index", pa.int32()), ("ordinal", pa.int32()), ("user", pa.string()),
                        ("value", pa.int8())]),
}  # fmt: skip
assert tuple(SCHEMAS) == TABLES


def table_rows(reader: AtlasReader, table: str, models: list[str] | None = None,
               sources: list[str] | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The rows of one canonical table for the selected sources, in a stable order."""
    selected = reader.selected_sources(models, sources)
    if table == "models":
        yield from (reader.model_row(m) for m in sorted({s.model_id for s in selected}))
    elif table == "sources":
        yield from (reader.source_row(s) for s in selected)
    elif table == "latents":
        for source in selected:
            yield from reader.latents(source)
    elif table == "examples":
        for source in selected:
            yield from reader.examples(source)
    else:
        for source in selected:
            yield from getattr(reader.explanations(source), table)


def write_dump(store: Store, out: Path, fmt: str, *, models: list[str] | None = None,
               sources: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, int]:  # fmt: skip
    """Write every canonical table into folder `out` as `<table>.jsonl` or `<table>.parquet`;
    returns the row count per table."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out.mkdir(parents=True, exist_ok=True)
    reader = AtlasReader(store)
    counts = {}
    for table in TABLES:
        rows = table_rows(reader, table, models, sources)
        path = out / f"{table}.{fmt}"
        counts[table] = write_rows(path, rows) if fmt == "jsonl" else write_parquet(path, table, rows)
        log(f"{path}: {counts[table]} rows")
    return counts


def _arrow_value(value: Any, column: str) -> Any:
    return codec.dumps(value) if column in JSON_COLUMNS and value is not None else value


def write_parquet(path: Path, table: str, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows of `table` as Parquet (zstd), batch by batch; returns the row count."""
    schema = SCHEMAS[table]
    partial = path.with_name(path.name + ".partial")
    count = 0
    with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == _BATCH:
                count += _write_batch(writer, schema, batch)
                batch = []
        count += _write_batch(writer, schema, batch)
    partial.replace(path)
    return count


def _write_batch(writer: pq.ParquetWriter, schema: pa.Schema, rows: list[dict[str, Any]]) -> int:
    columns = {f.name: [_arrow_value(row[f.name], f.name) for row in rows] for f in schema}
    writer.write_table(pa.table(columns, schema=schema))
    return len(rows)
