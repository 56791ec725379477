"""`GET /api/feature/...` as bytes, fast: a latent's dashboard JSON cached, community parts spliced in.

The body is the `FeaturePage` of `feature_page` (pages/feature.py: the same function and the
same inputs, read by the app's `FeatureReader`, that the HTML page renders) dumped by pydantic.
Its static part, every field but the community ones (`source`, `explanations`, `comments`,
and `neighbours` / `continues_as`, which carry the neighbours' explanations), only changes when
the source row changes (a rebuild, new metadata, matches or a map recomputed: each stamps the
row), so it is kept as bytes in an LRU keyed by (store, decoder, source entry, index), beside
the latent's match rows and its map position; each corpus window's `tokens` and `token_ids`
JSON is made once and shared by the pages showing it. Each request then costs one read of the
store on the driver's connection (store/feature_rows.py: on a hit one statement, the source row
and whether the latent has explanations or comments, which are fetched only if so; three on a
miss), one more statement for the neighbours' best explanations when the latent has neighbours,
and a byte splice of the fresh community fields.
Cache size: `LATENTPEDIA_FEATURE_CACHE_MB` (default 256; a quarter more for the reader's corpus
windows).
"""
from __future__ import annotations

import json
import os
from typing import Any

from pydantic import TypeAdapter

from latentpedia.engine.tokens import TokenText
from latentpedia.store.api import Store
from latentpedia.store.feature_rows import best_explanations, dbapi_connection
from latentpedia.web.errors import error_body
from latentpedia.web.featurebytes import activations_json
from latentpedia.web.pages.common import NotFoundError
from latentpedia.web.pages.community import comments_for, explanations_for
from latentpedia.web.pages.families import neighbour_fields, shown_latents
from latentpedia.web.pages.feature import COMMUNITY_FIELDS, feature_page
from latentpedia.web.map_schemas import MapPosition
from latentpedia.web.pages.maps import map_position
from latentpedia.web.pages.feature_reader import FeatureInputs, FeatureReader, LRUCache, ObjectIds, WindowTokens
from latentpedia.web.schemas import Activation, FeaturePage

_EXPLANATIONS = TypeAdapter(FeaturePage.model_fields["explanations"].annotation)
_COMMENTS = TypeAdapter(FeaturePage.model_fields["comments"].annotation)
_NEIGHBOURS = TypeAdapter(FeaturePage.model_fields["neighbours"].annotation)
_CONTINUES = TypeAdapter(FeaturePage.model_fields["continues_as"].annotation)
_WINDOW_FIELDS = frozenset({"tokens", "token_ids"})


class FeatureJson:
    """Builds and caches `/api/feature` bodies for one app (see the module doc). `reader` is
    the app's `FeatureReader`, which the HTML page uses too."""

    def __init__(self, max_bytes: int | None = None):
        max_bytes = max_bytes or int(os.environ.get("LATENTPEDIA_FEATURE_CACHE_MB", 256)) << 20
        self.static = LRUCache(max_bytes)
        self.reader = FeatureReader(window_cache_bytes=max_bytes // 4)
        self._ids = ObjectIds(self.static.clear)

    def body(self, store: Store, text: TokenText, model: str, source: str, index: int) -> bytes:
        """The feature JSON of latent `index` (NotFoundError like `feature_page_data`): one
        read of the store (one statement on a hit, three on a miss) unless it has explanations,
        comments or neighbours, whose explanations are read fresh."""
        prefix = (self._ids(store), self._ids(text))
        found = self.reader.read_latent(store, model, source, index, text, lambda entry: self.static.get((*prefix, id(entry), index)) is not None)
        entry, rows = found.entry, found.rows
        cached = self.static.get((*prefix, id(entry), index))
        if cached is None:
            inputs = found.inputs or self.reader.read(store, model, source, index, text)  # evicted since the read: rare
            where = map_position(_KnownRow(rows.map_row), inputs.source.record, index) if found.inputs else _map_of(store, inputs)
            cached = (inputs.source, latent_json(inputs), inputs.matches, where.model_dump_json().encode() if where else b"null")
            self.static.put((*prefix, id(inputs.source), index), cached, len(cached[1]))  # the entry in the value keeps its id unique
        entry, static, matches, where = cached
        explained = _neighbour_explanations(store, entry.record, index, matches)
        near = neighbour_fields(entry.record, index, matches, explained)
        explanations = _EXPLANATIONS.dump_json(explanations_for(store, entry.record.id, index)) if rows.has_explanations else b"[]"
        comments = _COMMENTS.dump_json(comments_for(store, entry.record.id, index)) if rows.has_comments else b"[]"
        return b"".join((static[:-1], b',"source":', entry.info_json, b',"explanations":', explanations,
                         b',"comments":', comments, b',"map":', where, b',"neighbours":', _NEIGHBOURS.dump_json(near["neighbours"]),
                         b',"continues_as":', _CONTINUES.dump_json(near["continues_as"]), b"}"))  # fmt: skip


class _KnownRow:
    """A connection stand-in whose every query answers `row` (the latent's map row, already read)."""

    def __init__(self, row: Any):
        self.row = row

    def execute(self, *_args: Any) -> _KnownRow:
        return self

    def first(self) -> Any:
        return self.row


def _neighbour_explanations(store: Store, record: Any, index: int, matches: list) -> dict:
    """`neighbour_explanations`, read fresh in one statement (none without matches)."""
    if not matches:
        return {}
    with dbapi_connection(store.engine) as conn:
        return best_explanations(conn, store.dialect, shown_latents(record, index, matches))


def _map_of(store: Store, inputs: FeatureInputs) -> MapPosition | None:
    with store.engine.connect() as conn:
        return map_position(conn, inputs.source.record, inputs.index)


def latent_json(inputs: FeatureInputs) -> bytes:
    """The static part of a latent's feature JSON (all but the community fields): the page's
    head dumped by pydantic, its activations made straight from the stored examples."""
    head = feature_page(inputs, with_activations=False).model_dump_json(exclude=COMMUNITY_FIELDS | {"activations"}).encode()
    return b"".join((head[:-1], b',"activations":', activations_json(inputs), b"}"))


def static_json(page: FeaturePage, windows: dict[int, WindowTokens]) -> bytes:
    """`page` as JSON minus the community fields: pydantic's dump, each activation's window
    lists taken from the window's cached JSON when they are the window's own lists."""
    head = page.model_dump_json(exclude=COMMUNITY_FIELDS | {"activations"}).encode()
    activations = b",".join(_activation_json(a, windows.get(a.window)) for a in page.activations)
    return b"".join((head[:-1], b',"activations":[', activations, b"]}"))


def _activation_json(activation: Activation, window: WindowTokens | None) -> bytes:
    if window is None or activation.tokens is not window.tokens or activation.token_ids is not window.token_ids:
        return activation.model_dump_json().encode()
    rest = activation.model_dump_json(exclude=_WINDOW_FIELDS).encode()
    return b"".join((rest[:-1], b',"tokens":', window.tokens_json, b',"token_ids":', window.token_ids_json, b"}"))


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
            body, status = json.dumps(error_body(str(err))).encode(), 404
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
