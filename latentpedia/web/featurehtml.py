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
stored examples, every vocabulary token escaped and made a span once per decoder (`SpanTable`),
so an example costs list lookups and a span per stored value (`highlight.token_spans` gives the
same markup; tests/test_web_featurehtml.py checks it span for span).
Cache size: `LATENTPEDIA_FEATURE_HTML_CACHE_MB` (default 256, ~1,100 pages of 32 examples; a quarter more for the windows).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from functools import cache
from typing import Any, NamedTuple

import numpy as np
from jinja2 import Environment
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup, escape

from latentpedia.engine.tokens import TokenText
from latentpedia.store.api import Store
from latentpedia.web.highlight import CONTEXT_AFTER, CONTEXT_BEFORE
from latentpedia.web.pages.community import comments_for, explanations_for
from latentpedia.web.pages.families import neighbour_explanations, neighbour_fields
from latentpedia.web.pages.feature import KIND_NAMES, feature_page
from latentpedia.web.pages.feature_reader import FeatureInputs, FeatureReader, LRUCache, ObjectIds, SourceEntry, StoredExample, WindowTokens
from latentpedia.web.pages.maps import map_position
from latentpedia.web.render import format_number
from latentpedia.web.schemas import FeaturePage

STATIC_TEMPLATE = "_feature_static.html"


class ExampleHtml(NamedTuple):
    """One example window as the static template shows it: its kind, group and markup."""

    kind: str
    group: int
    html: Markup


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


class SpanTable:
    """Every token of a decoder's vocabulary escaped (a newline shown as ↵ before it) and as
    value-0 spans, made once per decoder; a window's spans are then lookups."""

    def __init__(self, texts: list[str]):
        self.texts = [str(escape(t.replace("\n", "↵\n"))) for t in texts] + [""]  # the last: ids outside the vocabulary
        self.plain = [f'<span class="tok" title="0">{t}</span>' for t in self.texts]
        self.ctx = [f'<span class="tok ctx" title="0">{t}</span>' for t in self.texts]

    def window(self, token_ids: list[int]) -> WindowSpans:
        n = len(self.texts) - 1
        ids = [t if 0 <= t < n else n for t in token_ids]
        texts, plain, ctx = self.texts, self.plain, self.ctx
        return WindowSpans([texts[i] for i in ids], [plain[i] for i in ids], [ctx[i] for i in ids])


class FeatureHtml:
    """Builds and caches feature pages for one app (see the module doc); `reader` is the app's
    `FeatureReader`, shared with the JSON."""

    def __init__(self, reader: FeatureReader, max_bytes: int | None = None):
        max_bytes = max_bytes or int(os.environ.get("LATENTPEDIA_FEATURE_HTML_CACHE_MB", 256)) << 20
        self.reader = reader
        self.static = LRUCache(max_bytes)
        self.windows = LRUCache(max_bytes // 4)
        self._tables: dict[int, SpanTable] = {}
        self._ids = ObjectIds(self._forget)

    def _forget(self) -> None:
        self.static.clear()
        self.windows.clear()
        self._tables.clear()

    def _table(self, text: TokenText) -> SpanTable:
        key = self._ids(text)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = SpanTable(text.texts)
        return table

    def page(self, store: Store, text: TokenText, env: Environment, model: str, source: str, index: int) -> tuple[FeaturePage, StaticParts]:
        """The page data of latent `index` with fresh community parts (no activations: the
        examples are in the static HTML) and its static parts (NotFoundError like `feature_page_data`).
        One read tells the source row and whether the latent has explanations or comments; the
        latent's rows are read with it only when its static part is not cached (the JSON's reader)."""
        ids = (self._ids(store), self._ids(text))

        def key(entry: SourceEntry) -> tuple:  # matches_at: neighbours/matches recomputed (store/families.py)
            return (*ids, entry.record.id, entry.record.built_at, (entry.record.meta or {}).get("matches_at"), index)

        found = self.reader.read_latent(store, model, source, index, text, static_cached=lambda e: self.static.get(key(e)) is not None)
        entry, record = found.entry, found.entry.record
        parts = self.static.get(key(entry))
        if parts is None:
            parts = self._static_parts(store, env, found.inputs or self.reader.read(store, model, source, index, text))
            self.static.put(key(entry), parts, sys.getsizeof(parts.examples) + sys.getsizeof(parts.panels) + 4096)
        position, explained = None, {}
        if (record.meta or {}).get("map") or parts.matches:
            with store.engine.connect() as conn:
                position = map_position(conn, record, index)
                explained = neighbour_explanations(store, record, index, parts.matches, conn=conn)
        fresh = {
            "source": entry.info, "map": position,
            "explanations": explanations_for(store, record.id, index) if found.rows.has_explanations else [],
            "comments": comments_for(store, record.id, index) if found.rows.has_comments else [],
            **neighbour_fields(record, index, parts.matches, explained),
        }  # fmt: skip
        return parts.head.model_copy(update=fresh), parts

    def _static_parts(self, store: Store, env: Environment, inputs: FeatureInputs) -> StaticParts:
        head = feature_page(inputs, with_activations=False)
        examples = [self._example(store, inputs, e, head.max_act) for e in inputs.examples]
        module = env.get_template(STATIC_TEMPLATE).module
        return StaticParts(head, Markup(module.examples(head, examples)), Markup(module.panels(head, vocab_token)), inputs.matches)

    def _example(self, store: Store, inputs: FeatureInputs, example: StoredExample, scale: float | None) -> ExampleHtml:
        window = inputs.windows.get(example.window)
        spans = example_spans(example, self._window(store, inputs, example.window, window), scale) if window else ""
        kind = KIND_NAMES.get(example.kind, "top")
        html = (f'<div class="example" data-kind="{kind}">\n  <span class="maxval" title="max activation in this window">'
                f'{format_number(float(example.max_value or 0.0))}</span>\n  <span class="tokens">{spans}</span>\n</div>\n')  # fmt: skip
        return ExampleHtml(kind, int(example.group), Markup(html))

    def _window(self, store: Store, inputs: FeatureInputs, idx: int, window: WindowTokens) -> WindowSpans:
        """The window's spans, made once per (store, decoder, corpus, window)."""
        key = (self._ids(store), self._ids(inputs.text), *inputs.source.corpus, idx)
        spans = self.windows.get(key)
        if spans is None:
            spans = self._table(inputs.text).window(window.token_ids)
            self.windows.put(key, spans, 3 * 8 * len(spans.texts) + 300)  # list slots: the strings are the table's
        return spans


def window_spans(tokens: list[str]) -> WindowSpans:
    """`tokens` (display texts) escaped and as value-0 spans (`SpanTable.window` without a table)."""
    table = SpanTable(tokens)
    return table.window(list(range(len(tokens))))


def example_spans(example: StoredExample, window: WindowSpans, scale: float | None) -> str:
    """The token spans of `highlight.token_spans` for a stored example: the window's value-0
    spans, with the positions holding a stored value and the maximum made one by one."""
    n, peak = len(window.texts), int(example.max_pos)
    row = list(window.ctx)
    low, high = max(peak - CONTEXT_BEFORE, 0), min(max(peak + CONTEXT_AFTER + 1, 0), n)
    if low < high:
        row[low:high] = window.plain[low:high]
    titles = value_titles()
    values = dict(zip(example.positions, zip(example.values.astype("float32").tolist(), example.values.view("uint16").tolist())))
    if 0 < peak < n:
        values.setdefault(peak, (0.0, 0))
    texts = window.texts
    for position, (value, code) in values.items():
        if 0 < position < n:
            classes, style = "tok", ""
            if value > 0:
                classes += " on"
                style = f' style="--a:{min(value / scale, 1.0) if scale else 0.0:.3f}"'
            if position == peak:
                classes += " max"
            if position < peak - CONTEXT_BEFORE or position > peak + CONTEXT_AFTER:
                classes += " ctx"
            row[position] = f'<span class="{classes}"{style} title="{titles[code]}">{texts[position]}</span>'
    return "".join(row[1:])


@cache
def value_titles() -> tuple[str, ...]:
    """The title text (`highlight`'s 3 significant digits) of every float16 value, by its bits."""
    values = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32).tolist()
    return tuple(f"{v:.3g}" for v in values)


def vocab_token(text: str) -> Markup:
    """A vocabulary token with its whitespace made visible (space ␣, newline ↵, tab ⇥, CR ␍; ∅
    for an empty token), the exact text in the title: the logit tables' cells."""
    shown = "".join(_VISIBLE.get(ch) or str(escape(ch)) for ch in text) if text else '<span class="ws">∅</span>'
    return Markup(f"<span class=\"tokv\" title='{htmlsafe_json_dumps(text)}'>{shown}</span>")


_VISIBLE = {" ": '<span class="ws">␣</span>', "\n": '<span class="ws">↵</span>', "\t": '<span class="ws">⇥</span>', "\r": '<span class="ws">␍</span>'}


def feature_html(state: Any) -> FeatureHtml:
    """The app's FeatureHtml (made on first use; `state` is `app.state`), reading through the
    JSON's `FeatureReader`."""
    cache = getattr(state, "feature_html", None)
    if cache is None:
        from latentpedia.web.featurejson import feature_json

        cache = state.feature_html = FeatureHtml(feature_json(state).reader)
    return cache
