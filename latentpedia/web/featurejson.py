"""`GET /api/feature/...` as bytes, fast: a latent's static dashboard cached, community parts spliced in.

The dashboard of a built latent only changes when its source is rebuilt, so its JSON (every
field but `source`, `explanations` and `comments`) is built once and kept as bytes in an LRU
keyed by (source, build time, index). Each request then costs a source lookup, one query telling
whether the latent has explanations or comments (they are fetched only if so), and a byte splice.
On a miss the static part is assembled from Core queries, with each corpus window's token JSON
cached too (windows are shared by many latents' examples).

`feature_page_data` (pages/feature.py) stays the reference: tests check that these bytes parse to
exactly its `model_dump(mode="json")`. Cache size: `LATENTPEDIA_FEATURE_CACHE_MB` (default 256).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from pydantic import TypeAdapter
from sqlalchemy import bindparam, exists, select

from latentpedia.store import codec
from latentpedia.store.api import Store
from latentpedia.store.base import to_record
from latentpedia.store.community_schema import Comment, Explanation
from latentpedia.store.records import SourceRecord
from latentpedia.store.schema import Example, Latent, Source, Window
from latentpedia.web.pages.common import NotFoundError, feature_url, find_source, source_info
from latentpedia.web.pages.community import comments_for, explanations_for
from latentpedia.web.pages.feature import KIND_NAMES, _histogram, _logit_tables, _neighbours, _quantile_bounds, _quantile_groups
from latentpedia.web.schemas import FeaturePage
from latentpedia.engine.tokens import TokenText

_EXPLANATIONS = TypeAdapter(FeaturePage.model_fields["explanations"].annotation)
_COMMENTS = TypeAdapter(FeaturePage.model_fields["comments"].annotation)
_DYNAMIC = ("source", "explanations", "comments", "activations")
# Statements built once (building a select costs more than running it on SQLite).
_SOURCE = select(Source.__table__).where(Source.model_id == bindparam("model"), Source.name == bindparam("name"))
_LATENT = select(Latent.__table__).where(Latent.source_id == bindparam("sid"), Latent.idx == bindparam("idx"))
_EXAMPLES = (
    select(Example.__table__)
    .where(Example.source_id == bindparam("sid"), Example.latent == bindparam("idx"))
    .order_by(Example.kind, Example.group, Example.rank)
)
_COMMUNITY = select(
    exists().where(Explanation.source_id == bindparam("sid"), Explanation.latent_index == bindparam("idx")),
    exists().where(Comment.source_id == bindparam("sid"), Comment.latent_index == bindparam("idx")),
)
_WINDOWS = select(Window.idx, Window.tokens).where(Window.corpus_id == bindparam("cid"), Window.idx.in_(bindparam("idxs", expanding=True)))


def _float16_texts() -> list[str]:
    """The JSON text of every float16 value (stored example values are float16), by bit pattern."""
    values = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32).tolist()
    return [repr(v) if math.isfinite(v) else "0.0" for v in values]


_F16_TEXT = _float16_texts()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class _LRU:
    """A byte-size-bounded LRU (thread safe)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.size = max_bytes, 0
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
            while self.size > self.max_bytes and len(self._items) > 1:
                _, (_, old_size) = self._items.popitem(last=False)
                self.size -= old_size


class FeatureJson:
    """Builds and caches `/api/feature` bodies for one app (see the module doc)."""

    def __init__(self, max_bytes: int | None = None):
        max_bytes = max_bytes or int(os.environ.get("LATENTPEDIA_FEATURE_CACHE_MB", 256)) << 20
        self.static = _LRU(max_bytes)
        self.windows = _LRU(max_bytes // 4)
        self._token_json: dict[int, tuple[TokenText, list[str]]] = {}
        self._sources: dict[str, tuple[SourceRecord, bytes]] = {}

    def body(self, store: Store, text: TokenText, model: str, source: str, index: int) -> bytes:
        """The feature JSON of latent `index` (NotFoundError like `feature_page_data`)."""
        with store.engine.connect() as conn:
            row = conn.execute(_SOURCE, {"model": model, "name": source}).first()
            if row is None:
                find_source(store, model, source)  # raises NotFoundError naming what is unknown
            record, source_json = self._source(row)
            key = (id(store), id(text), record.id, record.built_at, index)
            static = self.static.get(key)
            if static is None:
                static = self._static(conn, record, text, index)
                self.static.put(key, static, len(static))
            has_explanations, has_comments = conn.execute(_COMMUNITY, {"sid": record.id, "idx": index}).one()
        explanations = _EXPLANATIONS.dump_json(explanations_for(store, record.id, index)) if has_explanations else b"[]"
        comments = _COMMENTS.dump_json(comments_for(store, record.id, index)) if has_comments else b"[]"
        return b"".join((static[:-1], b',"source":', source_json,
                         b',"explanations":', explanations, b',"comments":', comments, b"}"))  # fmt: skip

    def _source(self, row: Any) -> tuple[SourceRecord, bytes]:
        """The record of a sources row and its `source` JSON, cached by the row's content."""
        key = repr(tuple(row))
        entry = self._sources.get(key)
        if entry is None:
            if len(self._sources) > 1000:
                self._sources.clear()
            record = to_record(SourceRecord, row)
            entry = self._sources[key] = (record, source_info(record).model_dump_json().encode())
        return entry

    # ------------------------------------------------------------------ the static part

    def _static(self, conn: Any, record: SourceRecord, text: TokenText, index: int) -> bytes:
        latent = conn.execute(_LATENT, {"sid": record.id, "idx": index}).first()
        if latent is None or not 0 <= index < record.d_sae:
            raise NotFoundError(f"source {record.name!r} of {record.model_id!r} has no built latent {index} (latents 0..{record.d_sae - 1})")
        examples = conn.execute(_EXAMPLES, {"sid": record.id, "idx": index}).all()
        windows = self._windows(conn, record.corpus_id, sorted({e.window for e in examples}), text)
        logits = latent.logits or {}
        model, source, max_act = record.model_id, record.name, latent.max_act
        fields = dict(
            modelId=model, layer=source, index=index, max_act=max_act, mean_act=latent.mean_act,
            frac_nonzero=latent.frac_nonzero, density_log10=math.log10(latent.frac_nonzero) if latent.frac_nonzero else None,
            **_logit_tables(logits, text), logits_basis=logits.get("basis"),
            **_histogram("freq_hist_data", latent.hist), **_histogram("logits_hist_data", logits.get("hist")),
            quantile_groups=[g.model_dump() for g in _quantile_groups([{"kind": e.kind, "group": e.group} for e in examples], max_act)],
            aligned=[{"dim": int(d), "value": v} for d, v in latent.aligned or []],
            aligned_space=(record.meta or {}).get("aligned_space"),
            correlated=[{"index": int(i), "value": v, "url": feature_url(model, source, int(i))} for i, v in latent.correlated or []],
            **_neighbours(record, index),
        )  # fmt: skip
        unknown = set(fields) - set(FeaturePage.model_fields)
        assert not unknown and set(FeaturePage.model_fields) - set(fields) == set(_DYNAMIC), "FeaturePage changed: update featurejson"
        activations = ",".join(self._activation(e, windows.get(e.window), max_act) for e in examples)
        return f'{_dumps(fields)[:-1]},"activations":[{activations}]}}'.encode()

    def _token_strings(self, text: TokenText) -> list[str]:
        """The JSON string of each token of `text`'s vocabulary (kept with `text`, so its id
        is never reused while the cache entry lives)."""
        entry = self._token_json.get(id(text))
        if entry is None:
            if len(self._token_json) >= 8:  # ids of dropped decoders may be reused: forget what used them
                self._token_json.clear()
                self.static, self.windows = _LRU(self.static.max_bytes), _LRU(self.windows.max_bytes)
            entry = self._token_json[id(text)] = (text, [_dumps(t) for t in text.texts])
        return entry[1]

    def _windows(self, conn: Any, corpus_id: int | None, wanted: list[int], text: TokenText) -> dict[int, tuple[int, str, str]]:
        """{window: (length, tokens JSON, token ids JSON)}, cached per corpus window."""
        found, missing = {}, []
        for idx in wanted:
            cached = self.windows.get((id(text), corpus_id, idx))
            if cached is None:
                missing.append(idx)
            else:
                found[idx] = cached
        if missing:
            strings, n = self._token_strings(text), len(text.texts)
            rows = conn.execute(_WINDOWS, {"cid": corpus_id, "idxs": missing})
            for idx, blob in rows:
                ids = codec.decode_array(blob, codec.TOKEN_DTYPE).tolist()
                tokens = "[" + ",".join(strings[t] if 0 <= t < n else '""' for t in ids) + "]"
                entry = (len(ids), tokens, _dumps(ids))
                self.windows.put((id(text), corpus_id, idx), entry, len(tokens) + len(entry[2]))
                found[idx] = entry
        return found

    @staticmethod
    def _activation(example: Any, window: tuple[int, str, str] | None, max_act: float | None) -> str:
        """One example window as Activation JSON (dense values, zero where nothing was stored)."""
        length, tokens, ids = window or (0, "[]", "[]")
        values = ["0.0"] * length
        positions = codec.decode_array(example.positions, codec.POSITION_DTYPE).tolist()
        bits = np.frombuffer(example.values, dtype=np.dtype("<u2")).tolist()
        for position, bit in zip(positions, bits, strict=True):
            if position < length:
                values[position] = _F16_TEXT[bit]
        kind = KIND_NAMES.get(example.kind, "top")
        low, high = _quantile_bounds(example.group, max_act) if kind == "quantile" else (None, None)
        return (
            f'{{"tokens":{tokens},"token_ids":{ids},"values":[{",".join(values)}],"maxValue":{_number(example.max_value or 0.0)},'
            f'"maxValueTokenIndex":{int(example.max_pos)},"binMin":{_number(low)},"binMax":{_number(high)},"kind":"{kind}",'
            f'"group":{int(example.group)},"window":{int(example.window)}}}'
        )


def _number(value: float | None) -> str:
    """A float as JSON (null for None)."""
    return "null" if value is None else repr(float(value))


def feature_json(state: Any) -> FeatureJson:
    """The app's FeatureJson (made on first use; `state` is `app.state`)."""
    cache = getattr(state, "feature_json", None)
    if cache is None:
        cache = state.feature_json = FeatureJson()
    return cache


_PREFIX = "/api/feature/"


class FeatureJsonFastPath:
    """ASGI middleware answering `GET /api/feature/{model}/{source}/{index}` straight from
    `FeatureJson`, before FastAPI's routing and dependency resolution (which cost more than a
    cached body). Anything else, or an unusual path, goes on to the app's declared route, which
    returns the same bytes. Install it inside the security and private-atlas middlewares."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "GET" or not path.startswith(_PREFIX):
            return await self.app(scope, receive, send)
        parts = path[len(_PREFIX):].split("/")
        if len(parts) != 3 or not parts[2].isdigit() or not parts[0] or not parts[1]:
            return await self.app(scope, receive, send)
        from latentpedia.web.deps import token_text_for

        state = scope["app"].state
        model, source, index = parts[0], parts[1], int(parts[2])
        try:
            body = feature_json(state).body(state.store, token_text_for(state.store, state.token_text, model), model, source, index)
            status = 200
        except NotFoundError as err:
            body, status = _dumps({"detail": str(err)}).encode(), 404
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
