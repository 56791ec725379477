"""Histograms as inline SVG, drawn on the server (no JavaScript chart library).

The markup is built from numbers only (formatted floats), so it is safe to insert as-is.
"""

from __future__ import annotations

from markupsafe import Markup

WIDTH, HEIGHT, AXIS = 360, 110, 16


def _number(value: float) -> str:
    return f"{value:.3g}"


def histogram_svg(heights: list[int], centres: list[float], *, label: str = "histogram", colour: str = "#e8743b") -> Markup:
    """A bar chart of `heights` at bin `centres`, with the first and last centre on the x axis.

    `label` and `colour` are chosen by templates, never taken from data.
    """
    if not heights:
        return Markup('<p class="empty">no data</p>')
    top = max(max(heights), 1)
    bar = WIDTH / len(heights)
    plot = HEIGHT - AXIS
    bars = []
    for i, count in enumerate(heights):
        h = plot * count / top
        title = f"{_number(centres[i]) if i < len(centres) else i}: {int(count)}"
        bars.append(
            f'<rect x="{i * bar:.2f}" y="{plot - h:.2f}" width="{max(bar - 1, 0.5):.2f}" height="{h:.2f}">'
            f"<title>{Markup.escape(title)}</title></rect>"
        )
    first, last = (_number(centres[0]), _number(centres[-1])) if centres else ("", "")
    return Markup(
        f'<svg class="hist" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{Markup.escape(label)}" '
        f'fill="{Markup.escape(colour)}">{"".join(bars)}'
        f'<text x="0" y="{HEIGHT - 3}" class="axis">{first}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 3}" text-anchor="end" class="axis">{last}</text></svg>'
    )
