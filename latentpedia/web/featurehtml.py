"""The feature page `/{model}/{source}/{index}` as HTML, fast: its static part rendered once per
latent and build and cached, the per-request parts rendered around it.

The static part is the example windows (top examples and quantile groups: ~80 windows of 128
token spans) and the panels (histograms, logit tables, correlated and aligned entries). Like the
JSON's static bytes (web/featurejson.py) it only changes when the source is rebuilt or its
matches recomputed, so it is kept, as HTML, in an LRU keyed the same way, beside the page's data
without activations. Everything that changes without a rebuild or depends on the reader is made
per request by feature.html around it: the explanations (votes, scores), comments, map, the
neighbours' explanations, the source's metadata, the viewer's header, forms and CSRF tokens.

A miss does not build the page's `Activation` models: the token spans are made straight from the
stored examples, each window's escaped token spans once per window (`highlight.token_spans` gives
the same markup; tests/test_web_featurehtml.py checks it span for span).
Cache size: `LATENTPEDIA_FEATURE_HTML_CACHE_MB` (default 128; a quarter more for the windows).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from jinja2 import Environment
from markupsafe import Markup, escape
from sqlalchemy import bindparam, exists, select

from latentpedia.engine.tokens import TokenText
from latentpedia.store.api import Store
from latentpedia.store.community_schema import Comment, Explanation
from latentpedia.web.highlight import CONTEXT_AFTER, CONTEXT_BEFORE
from latentpedia.web.pages.community import comments_for, explanations_for
from latentpedia.web.pages.families import neighbour_explanations, neighbour_fields
from latentpedia.web.pages.feature import KIND_NAMES, feature_page
from latentpedia.web.pages.feature_reader import FeatureInputs, FeatureReader, LRUCache, ObjectIds, StoredExample, WindowTokens
from latentpedia.web.pages.maps import map_position
from latentpedia.web.schemas import FeaturePage

STATIC_TEMPLATE = "_feature_static.html"
_COMMUNITY = select(
    exists().where(Explanation.source_id == bindparam("sid"), Explanation.latent_index == bindparam("idx")),
    exists().where(Comment.source_id == bindparam("sid"), Comment.latent_index == bindparam("idx")),
)


class ExampleHtml(NamedTuple):
    """One example window as the static template shows it."""

    kind: str
    group: int
    maxValue: float  # noqa: N815 (the Activation field's name, which the template used)
    spans: Markup


class StaticParts(NamedTuple):
    """A latent's cached page: its data without activations and community parts, its examples'
    and panels' HTML, and its match rows (the neighbours' explanations are read per request)."""

    head: FeaturePage
    examples: Markup
    panels: Markup
    matches: Sequence[Any]


class WindowSpans(NamedTuple):
    """A window's tokens escaped, and as spans of value 0 inside and outside the default context."""

    texts: list[str]
    plain: list[str]
    ctx: list[str]


class FeatureHtml:
    """Builds and caches feature pages for one app (see the module doc); `reader` is the app's
    `FeatureReader`, shared with the JSON."""

    def __init__(self, reader: FeatureReader, max_bytes: int | None = None):
        max_bytes = max_bytes or int(os.environ.get("LATENTPEDIA_FEATURE_HTML_CACHE_MB", 128)) << 20
        self.reader = reader
        self.static = LRUCache(max_bytes)
        self.windows = LRUCache(max_bytes // 4)
        self._ids = ObjectIds(self._forget)

    def _forget(self) -> None:
        self.static.clear()
        self.windows.clear()

    def page(self, store: Store, text: TokenText, env: Environment, model: str, source: str, index: int) -> tuple[FeaturePage, StaticParts]:
        """The page data of latent `index` with fresh community parts (no activations: the
        examples are in the static HTML) and its static parts (NotFoundError like `feature_page_data`)."""
        with store.engine.connect() as conn:
            entry = self.reader.source(conn, store, model, source)
            matched = (entry.record.meta or {}).get("matches_at")  # neighbours/matches recomputed (store/families.py)
            key = (self._ids(store), self._ids(text), entry.record.id, entry.record.built_at, matched, index)
            parts = self.static.get(key)
            if parts is None:
                inputs = self.reader.latent_inputs(conn, store, entry, index, text)
                parts = self._static_parts(store, env, inputs)
                self.static.put(key, parts, sys.getsizeof(parts.examples) + sys.getsizeof(parts.panels) + 4096)
            has_explanations, has_comments = conn.execute(_COMMUNITY, {"sid": entry.record.id, "idx": index}).one()
            position = map_position(conn, entry.record, index)
            explained = neighbour_explanations(store, entry.record, index, parts.matches, conn=conn)
        fresh = {
            "source": entry.info, "map": position,
            "explanations": explanations_for(store, entry.record.id, index) if has_explanations else [],
            "comments": comments_for(store, entry.record.id, index) if has_comments else [],
            **neighbour_fields(entry.record, index, parts.matches, explained),
        }  # fmt: skip
        return parts.head.model_copy(update=fresh), parts

    def _static_parts(self, store: Store, env: Environment, inputs: FeatureInputs) -> StaticParts:
        head = feature_page(inputs, with_activations=False)
        examples = [self._example(store, inputs, e, head.max_act) for e in inputs.examples]
        module = env.get_template(STATIC_TEMPLATE).module
        return StaticParts(head, Markup(module.examples(head, examples)), Markup(module.panels(head)), inputs.matches)

    def _example(self, store: Store, inputs: FeatureInputs, example: StoredExample, scale: float | None) -> ExampleHtml:
        window = inputs.windows.get(example.window)
        spans = example_spans(example, self._window(store, inputs, example.window, window), scale) if window else Markup("")
        return ExampleHtml(KIND_NAMES.get(example.kind, "top"), int(example.group), float(example.max_value or 0.0), spans)

    def _window(self, store: Store, inputs: FeatureInputs, idx: int, window: WindowTokens) -> WindowSpans:
        """The window's spans, made once per (store, decoder, corpus, window)."""
        key = (self._ids(store), self._ids(inputs.text), *inputs.source.corpus, idx)
        spans = self.windows.get(key)
        if spans is None:
            spans = window_spans(window.tokens)
            self.windows.put(key, spans, 3 * sum(len(s) for s in spans.plain) + 200)
        return spans


def window_spans(tokens: list[str]) -> WindowSpans:
    """`tokens` escaped (a newline shown as ↵ before it) and as value-0 spans."""
    texts = [str(escape(t.replace("\n", "↵\n"))) for t in tokens]
    plain = [f'<span class="tok" title="0">{t}</span>' for t in texts]
    ctx = [f'<span class="tok ctx" title="0">{t}</span>' for t in texts]
    return WindowSpans(texts, plain, ctx)


def example_spans(example: StoredExample, window: WindowSpans, scale: float | None) -> Markup:
    """The token spans of `highlight.token_spans` for a stored example: the window's value-0
    spans, with the positions holding a stored value and the maximum made one by one."""
    n, peak = len(window.texts), int(example.max_pos)
    row = list(window.ctx)
    low, high = max(peak - CONTEXT_BEFORE, 0), min(max(peak + CONTEXT_AFTER + 1, 0), n)
    if low < high:
        row[low:high] = window.plain[low:high]
    values = dict(zip(example.positions, example.values.astype("float32").tolist(), strict=True))
    if 0 < peak < n:
        values.setdefault(peak, 0.0)
    for position, value in values.items():
        if 0 < position < n:
            row[position] = _span(window.texts[position], position, value, peak, scale)
    return Markup("".join(row[1:]))


def _span(text: str, position: int, value: float, peak: int, scale: float | None) -> str:
    classes, style = "tok", ""
    if value > 0:
        classes += " on"
        style = f' style="--a:{min(value / scale, 1.0) if scale else 0.0:.3f}"'
    if position == peak:
        classes += " max"
    if position < peak - CONTEXT_BEFORE or position > peak + CONTEXT_AFTER:
        classes += " ctx"
    return f'<span class="{classes}"{style} title="{value:.3g}">{text}</span>'


def feature_html(state: Any) -> FeatureHtml:
    """The app's FeatureHtml (made on first use; `state` is `app.state`), reading through the
    JSON's `FeatureReader`."""
    cache = getattr(state, "feature_html", None)
    if cache is None:
        from latentpedia.web.featurejson import feature_json

        cache = state.feature_html = FeatureHtml(feature_json(state).reader)
    return cache
