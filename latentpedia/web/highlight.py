"""An example window as HTML token spans coloured by activation (rendered in Python, not in a
Jinja loop: a feature page holds ~80 windows of 128 tokens).

Every token text goes through `markupsafe.escape`; everything else is a number we format.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from latentpedia.web.schemas import Activation

CONTEXT_BEFORE, CONTEXT_AFTER = 12, 4  # tokens shown around the max until "expand context"


def _value(value: float) -> str:
    return f"{value:.3g}"


def token_spans(activation: Activation, scale: float | None) -> Markup:
    """The window's tokens after BOS (position 0) as `<span class="tok">`s: `on` (value > 0,
    background alpha = value / scale), `max` (the maximum), `ctx` (outside the default
    context, hidden until expanded); the value is the span's title (shown on hover)."""
    peak = activation.maxValueTokenIndex
    parts = []
    for position in range(1, len(activation.tokens)):
        value = activation.values[position]
        classes = ["tok"]
        style = ""
        if value > 0:
            classes.append("on")
            style = f' style="--a:{min(value / scale, 1.0) if scale else 0.0:.3f}"'
        if position == peak:
            classes.append("max")
        if position < peak - CONTEXT_BEFORE or position > peak + CONTEXT_AFTER:
            classes.append("ctx")
        text = escape(activation.tokens[position].replace("\n", "↵\n"))
        parts.append(f'<span class="{" ".join(classes)}"{style} title="{_value(value)}">{text}</span>')
    return Markup("".join(parts))
