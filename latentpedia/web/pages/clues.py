"""A puzzle's clues as HTML, made once per latent and display mode.

The puzzle page shows up to ~2,300 token spans; rendering them in the Jinja loop cost more than
everything else of the page together, and every player of a campaign sees the same clues. The
markup is the one the template used to make (escaped tokens, activation as `--a`, the value as a
title in advanced mode), kept in a small LRU keyed by the latent and checked against the clues'
own figures, so a rebuilt source shows its new clues.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from threading import Lock
from typing import Any

from markupsafe import Markup, escape

from latentpedia.web.render import format_number

CACHE_SIZE = 4096
_cache: OrderedDict[tuple, tuple[tuple, Markup]] = OrderedDict()
_lock = Lock()


def _spans(tokens: Sequence[str], values: Sequence[float], max_act: float | None, titles: bool) -> str:
    parts = []
    for token, value in zip(tokens, values, strict=False):
        attrs = ""
        if value > 0:
            attrs = f' style="--a:{min(value / max_act, 1.0) if max_act else 0}"'
        if titles:
            attrs += f' title="{escape(format_number(value))}"'
        parts.append(f'<span class="tok{" on" if value > 0 else ""}"{attrs}>{escape(token)}</span>')
    return "".join(parts)


def clue_list(examples: Sequence[Any], max_act: float | None, *, titles: bool) -> Markup:
    """The `<li class="clue">` items of `examples` (objects or dicts with tokens and values)."""
    items = []
    for ex in examples:
        tokens = ex["tokens"] if isinstance(ex, dict) else ex.tokens
        values = ex["values"] if isinstance(ex, dict) else ex.values
        items.append(f'<li class="clue">{_spans(tokens, values, max_act, titles)}</li>')
    return Markup("\n".join(items))


def _fingerprint(examples: Sequence[Any], max_act: float | None) -> tuple:
    def first(ex: Any) -> tuple:
        tokens = ex["tokens"] if isinstance(ex, dict) else ex.tokens
        values = ex["values"] if isinstance(ex, dict) else ex.values
        return len(tokens), tuple(tokens[:4]), float(max(values, default=0.0))
    return max_act, len(examples), tuple(first(ex) for ex in examples)


def cached_clue_list(key: tuple, examples: Sequence[Any], max_act: float | None, *, titles: bool) -> Markup:
    """`clue_list`, remembered under `key` (e.g. model, source, index, which list, mode)."""
    full = (*key, titles)
    mark = _fingerprint(examples, max_act)
    with _lock:
        found = _cache.get(full)
        if found is not None and found[0] == mark:
            _cache.move_to_end(full)
            return found[1]
    html = clue_list(examples, max_act, titles=titles)
    with _lock:
        _cache[full] = (mark, html)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return html
