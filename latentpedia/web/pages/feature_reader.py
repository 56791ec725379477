"""What a feature page is made of, read from the store fast: the source's record, one latent's
statistics, its examples and the tokens of their corpus windows.

The rows come from store/feature_rows.py: plain SQL on the driver's connection, three statements
(the source row with the latent's, its map position and whether it has explanations or comments;
its examples; its matches), one when the caller holds the latent's static part. The decoded tokens of each corpus window are cached (many
latents' examples share windows), as is each source row's record and public view, keyed by the
row as read, so a changed row (rebuild, new metadata) is seen on the next request. One `FeatureReader` per app, shared by
the HTML page and the JSON (web/featurejson.py makes it), so both see the same inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from pydantic import TypeAdapter
from sqlalchemy import bindparam, select

from latentpedia.engine.tokens import TokenText
from latentpedia.store import codec
from latentpedia.store.api import Store
from latentpedia.store.base import to_record
from latentpedia.store.families import MatchRow, match_rows
from latentpedia.store.feature_rows import FeatureRows, dbapi_connection, read_feature_rows, window_rows
from latentpedia.store.records import SourceRecord
from latentpedia.store.schema import Corpus, Source
from latentpedia.web.pages.common import NotFoundError, source_record, source_info
from latentpedia.web.schemas import SourceInfo

_SOURCE = (
    select(Source.__table__, Corpus.content_hash.label("corpus_hash"))
    .outerjoin(Corpus, Corpus.id == Source.corpus_id)
    .where(Source.model_id == bindparam("model"), Source.name == bindparam("name"))
)
_INTS, _STRINGS = TypeAdapter(list[int]), TypeAdapter(list[str])
BYTES_PER_CACHED_TOKEN = 64  # an id object, two list slots and both JSON texts; the strings belong to the TokenText
MAX_CACHED_SOURCES = 1000


class LRUCache:
    """A size-bounded LRU (thread safe); each entry's size is given by the caller."""

    def __init__(self, max_size: int):
        self.max_size, self.size = max_size, 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (value, size)
            self.size += size
            while self.size > self.max_size and len(self._items) > 1:
                _, (_, old_size) = self._items.popitem(last=False)
                self.size -= old_size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0


class ObjectIds:
    """Cache-key ids of objects compared by identity (a store, a token decoder). The objects are
    kept alive here, so an id is never reused while a cache entry may name it; past `limit`
    objects, `forget` drops the caches keyed by them and the ids start over."""

    def __init__(self, forget: Callable[[], None], limit: int = 16):
        self._objects: dict[int, Any] = {}
        self._forget, self._limit = forget, limit
        self._lock = threading.Lock()

    def __call__(self, obj: Any) -> int:
        with self._lock:
            if id(obj) not in self._objects:
                if len(self._objects) >= self._limit:
                    self._objects.clear()
                    self._forget()
                self._objects[id(obj)] = obj
        return id(obj)


@dataclass(frozen=True)
class SourceEntry:
    """A sources row as a record, its public view (and that view's JSON) and its corpus's key."""

    record: SourceRecord
    info: SourceInfo
    info_json: bytes
    corpus: tuple[int | None, str | None]  # (id, content hash)


class StoredExample(NamedTuple):  # a tuple: 32 per page, built fast
    """One examples row: its `positions` decoded, its `values` (float16) a view of their blob."""

    kind: int
    group: int
    window: int
    max_value: float | None
    max_pos: int
    positions: list[int]
    values: np.ndarray


@dataclass(frozen=True)
class WindowTokens:
    """A corpus window's token ids and their display text, and both as JSON (made once, by
    pydantic). Shared by every page showing the window: read only."""

    token_ids: list[int]
    tokens: list[str]

    @cached_property
    def token_ids_json(self) -> bytes:
        return _INTS.dump_json(self.token_ids)

    @cached_property
    def tokens_json(self) -> bytes:
        return _STRINGS.dump_json(self.tokens)


@dataclass(frozen=True)
class FeatureInputs:
    """Everything stored about one latent that its page shows, minus the community parts."""

    source: SourceEntry
    index: int
    latent: Any  # the latents row: max_act, frac_nonzero, mean_act, hist, logits, aligned, correlated
    examples: list[StoredExample]
    windows: dict[int, WindowTokens]
    text: TokenText
    matches: list[MatchRow] = ()  # neighbours and matches in other sources (store/families.py)


class FeatureRead(NamedTuple):
    """What `FeatureReader.read_latent` found: the source, the rows read and, if they were read
    in full, the latent's inputs."""

    entry: SourceEntry
    rows: FeatureRows
    inputs: FeatureInputs | None


class FeatureReader:
    """Reads `FeatureInputs` (see the module doc); `window_cache_bytes` bounds the window cache."""

    def __init__(self, window_cache_bytes: int = 64 << 20):
        self.windows = LRUCache(window_cache_bytes)
        self._sources: dict[Any, SourceEntry] = {}
        self._last: dict[tuple[int, str, str], SourceEntry] = {}  # the entry each (store, model, name) had last
        self._ids = ObjectIds(self._forget)

    def _forget(self) -> None:
        self.windows.clear()
        self._sources.clear()
        self._last.clear()

    def read(self, store: Store, model: str, source: str, index: int, text: TokenText | None = None) -> FeatureInputs:
        """The inputs of latent `index` of `model`/`source`; NotFoundError naming what is unknown.
        `text` decodes token ids (default: built from the model's stored vocabulary)."""
        found = self.read_latent(store, model, source, index, text)
        assert found.inputs is not None
        return found.inputs

    def read_latent(self, store: Store, model: str, source: str, index: int, text: TokenText | None = None,
                    static_cached: Callable[[SourceEntry], bool] | None = None) -> FeatureRead:  # fmt: skip
        """The source entry and rows of latent `index` in one pass over the store (three plain
        statements, store/feature_rows.py), NotFoundError naming what is unknown. The rows are
        read in full (with the latent's inputs) unless `static_cached(entry)` says the caller
        holds the latent's static part for the source as it now is: then only the source row and
        the community flags are read (and the inputs are None)."""
        last_key = (self._ids(store), model, source)
        with dbapi_connection(store.engine) as conn:
            guess = self._last.get(last_key)
            full = static_cached is None or guess is None or not static_cached(guess)
            known = None if guess is None else guess.record.id  # PostgreSQL: one round trip for a full read
            rows = read_feature_rows(conn, store.dialect, model, source, index, full=full, source_id=known)
            entry = self._entry(store, model, source, rows)
            if not full and entry is not guess and not static_cached(entry):  # the source changed meanwhile
                full, rows = True, read_feature_rows(conn, store.dialect, model, source, index, full=True, source_id=entry.record.id)
                entry = self._entry(store, model, source, rows)
            self._last[last_key] = entry
            inputs = self._inputs(conn, store, entry, rows, index, text) if full else None
        return FeatureRead(entry, rows, inputs)

    def latent_inputs(self, conn: Any, store: Store, entry: SourceEntry, index: int, text: TokenText | None = None) -> FeatureInputs:
        """`read` for a source already looked up (`conn` is not used: the rows are read on a
        DBAPI connection of their own)."""
        return self.read(store, entry.record.model_id, entry.record.name, index, text)

    def source(self, conn: Any, store: Store, model: str, name: str) -> SourceEntry:
        """The source `name` of `model` (NotFoundError naming what is unknown), cached by its row."""
        row = conn.execute(_SOURCE, {"model": model, "name": name}).first()
        if row is None:
            source_record(store, model, name)  # raises NotFoundError naming what is unknown
            raise NotFoundError(f"model {model!r} has no source {name!r}")  # it vanished meanwhile
        key = repr(tuple(row))
        entry = self._sources.get(key)
        if entry is None:
            if len(self._sources) >= MAX_CACHED_SOURCES:
                self._sources.clear()
            record = to_record(SourceRecord, row)
            info = source_info(record)
            entry = self._sources[key] = SourceEntry(record, info, info.model_dump_json().encode(), (row.corpus_id, row.corpus_hash))
        return entry

    def _entry(self, store: Store, model: str, name: str, rows: FeatureRows) -> SourceEntry:
        """The cached entry of the source row `rows` carry; made (through `source`) when the row is new."""
        if rows.source_key is None:
            source_record(store, model, name)  # raises NotFoundError naming what is unknown
            raise NotFoundError(f"model {model!r} has no source {name!r}")  # it vanished meanwhile
        key = (self._ids(store), rows.source_key)
        entry = self._sources.get(key)
        if entry is None:
            with store.engine.connect() as conn:
                entry = self.source(conn, store, model, name)
            if len(self._sources) >= MAX_CACHED_SOURCES:
                self._sources.clear()
            self._sources[key] = entry
        return entry

    def _inputs(self, conn: Any, store: Store, entry: SourceEntry, rows: FeatureRows, index: int, text: TokenText | None) -> FeatureInputs:
        record = entry.record
        if rows.latent is None or not 0 <= index < record.d_sae:
            raise NotFoundError(f"source {record.name!r} of {record.model_id!r} has no built latent {index} (latents 0..{record.d_sae - 1})")
        examples = [_stored_example(row) for row in rows.examples]
        text = text or TokenText(store.get_vocab(record.model_id))
        windows = self._windows(conn, store, entry, {e.window for e in examples}, text)
        return FeatureInputs(entry, index, rows.latent, examples, windows, text, match_rows(rows.matches))

    def _windows(self, conn: Any, store: Store, entry: SourceEntry, wanted: set[int], text: TokenText) -> dict[int, WindowTokens]:
        """{window index: its tokens} of the source's corpus, read (on the DBAPI connection
        `conn`) only for windows not cached."""
        prefix = (self._ids(store), self._ids(text), *entry.corpus)
        found, missing = {}, []
        for idx in sorted(wanted):
            cached = self.windows.get((*prefix, idx))
            if cached is None:
                missing.append(idx)
            else:
                found[idx] = cached
        if missing and entry.record.corpus_id is not None:
            for idx, blob in window_rows(conn, store.dialect, entry.record.corpus_id, missing):
                ids = codec.decode_array(blob, codec.TOKEN_DTYPE).tolist()
                window = found[idx] = WindowTokens(ids, text.many(ids))
                self.windows.put((*prefix, idx), window, BYTES_PER_CACHED_TOKEN * len(ids))
        return found


def _stored_example(row: Any) -> StoredExample:
    kind, group, window, max_value, max_pos, positions, values = row
    return StoredExample(kind, group, window, max_value, max_pos,
                         codec.position_list(positions), np.frombuffer(values, dtype=codec.VALUE_DTYPE))  # fmt: skip
