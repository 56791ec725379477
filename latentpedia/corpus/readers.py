"""User corpora: .txt, .jsonl, .parquet files, folders of them, and `datasets` saved to disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from latentpedia.corpus.default import Document
from latentpedia.errors import InvalidInputError

SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")


def read_corpus(path: str | Path, *, text_field: str = "text") -> Iterator[Document]:
    """Documents of a user corpus, in a deterministic order (folders are walked sorted)."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError("corpus path does not exist", path)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            yield from _read_dataset(path, text_field)
            return
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise InvalidInputError(f"no corpus files ({', '.join(SUFFIXES)}) in this folder", path)
        for file in files:
            yield from _read_file(file, text_field)
        return
    yield from _read_file(path, text_field)


def _read_file(path: Path, text_field: str) -> Iterator[Document]:
    readers = {".txt": _read_text, ".md": _read_text, ".jsonl": _read_jsonl, ".parquet": _read_parquet}
    reader = readers.get(path.suffix)
    if reader is None:
        raise InvalidInputError(f"unsupported corpus file type {path.suffix!r} (use {', '.join(SUFFIXES)})", path)
    yield from reader(path, text_field)


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"not valid UTF-8 at byte {err.start}; re-encode the file as UTF-8", path) from None


def _read_text(path: Path, _field: str) -> Iterator[Document]:
    text = _decode(path.read_bytes(), path)
    if text.strip():
        yield Document(text, "text", f"file:{path.name}")


def _read_jsonl(path: Path, field: str) -> Iterator[Document]:
    for number, line in enumerate(_decode(path.read_bytes(), path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidInputError(f"line {number} is not valid JSON ({err.msg})", path) from None
        text = record.get(field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise InvalidInputError(f"line {number} has no string field {field!r}", path)
        if text.strip():
            yield Document(text, "text", f"file:{path.name}#{number}")


def _texts_column(table, field: str, path: Path) -> list:
    if field not in table.column_names:
        raise InvalidInputError(f"no column {field!r} (columns: {', '.join(table.column_names)})", path)
    return table.column(field).to_pylist()


def _read_parquet(path: Path, field: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise InvalidInputError(f"cannot read parquet file: {err}", path) from None
    for row, text in enumerate(_texts_column(table, field, path)):
        if isinstance(text, str) and text.strip():
            yield Document(text, "text", f"file:{path.name}#{row}")


def _read_dataset(path: Path, field: str) -> Iterator[Document]:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError:
        raise InvalidInputError("reading a saved dataset needs `pip install latentpedia[datasets]`", path) from None
    dataset = load_from_disk(str(path))
    if isinstance(dataset, DatasetDict):
        split = "train" if "train" in dataset else sorted(dataset)[0]
        dataset = dataset[split]
    if field not in dataset.column_names:
        raise InvalidInputError(f"no column {field!r} (columns: {', '.join(dataset.column_names)})", path)
    for row, text in enumerate(dataset[field]):
        if isinstance(text, str) and text.strip():
            yield Document(text, "text", f"dataset:{path.name}#{row}")
