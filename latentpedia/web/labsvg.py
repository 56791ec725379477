"""Plots of the lab pages as inline SVG drawn on the server: scatter / line charts with axes, a
diverging heatmap (WᵀW) and a bar chart (feature norms). Numbers are formatted floats and every
text that comes from data (point titles, labels) is escaped, so the markup is safe as-is."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from markupsafe import Markup, escape

PAD_LEFT, PAD_BOTTOM, PAD_TOP, PAD_RIGHT = 44, 30, 10, 10


@dataclass
class Series:
    """Points (x, y, hover title) drawn as dots, or joined as a line."""

    points: list[tuple[float, float, str]]
    colour: str = "#3b6fe8"
    line: bool = False
    radius: float = 2.5


@dataclass
class Axis:
    label: str
    log: bool = False
    lo: float | None = None
    hi: float | None = None
    marks: list[tuple[float, str]] = field(default_factory=list)  # horizontal reference lines (y only)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _bounds(values: list[float], axis: Axis) -> tuple[float, float]:
    vals = [math.log10(v) for v in values if v > 0] if axis.log else list(values)
    lo = axis.lo if axis.lo is not None else (min(vals) if vals else 0.0)
    hi = axis.hi if axis.hi is not None else (max(vals) if vals else 1.0)
    if axis.log and axis.lo is not None:
        lo = math.log10(axis.lo)
    if axis.log and axis.hi is not None:
        hi = math.log10(axis.hi)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _scale(axis: Axis, lo: float, hi: float, size: float, flip: bool):
    def to_px(value: float) -> float | None:
        if axis.log:
            if value <= 0:
                return None
            value = math.log10(value)
        t = (value - lo) / (hi - lo)
        return size * (1 - t) if flip else size * t
    return to_px


def scatter_svg(series: list[Series], x: Axis, y: Axis, *, width: int = 420, height: int = 260, label: str = "chart") -> Markup:
    """A scatter / line chart; `label` is the accessible name (escaped)."""
    points = [p for s in series for p in s.points]
    if not points:
        return Markup('<p class="empty">no data</p>')
    plot_w, plot_h = width - PAD_LEFT - PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM
    x_lo, x_hi = _bounds([p[0] for p in points], x)
    y_lo, y_hi = _bounds([p[1] for p in points] + [m for m, _ in y.marks], y)
    to_x, to_y = _scale(x, x_lo, x_hi, plot_w, False), _scale(y, y_lo, y_hi, plot_h, True)
    parts = [f'<rect class="frame" x="0" y="0" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    for value, name in y.marks:
        py = to_y(value)
        if py is not None and 0 <= py <= plot_h:
            parts.append(f'<line class="mark" x1="0" x2="{plot_w}" y1="{py:.1f}" y2="{py:.1f}" stroke="#ccc" stroke-dasharray="3,3"/>'
                         f'<text class="axis" x="{plot_w - 2}" y="{py - 2:.1f}" text-anchor="end">{escape(name)}</text>')
    for s in series:
        parts.append(_draw(s, to_x, to_y))
    ticks = _ticks(x, x_lo, x_hi, to_x, y, y_lo, y_hi, to_y, plot_w, plot_h)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f'<g transform="translate({PAD_LEFT},{PAD_TOP})">{"".join(parts)}{ticks}'
        f'<text class="axis" x="{plot_w / 2:.0f}" y="{plot_h + 26}" text-anchor="middle">{escape(x.label)}</text>'
        f'<text class="axis" transform="translate(-34,{plot_h / 2:.0f}) rotate(-90)" text-anchor="middle">{escape(y.label)}</text>'
        f"</g></svg>"
    )


def _draw(s: Series, to_x, to_y) -> str:
    placed = [(to_x(px), to_y(py), title) for px, py, title in s.points]
    placed = [(a, b, t) for a, b, t in placed if a is not None and b is not None]
    if s.line:
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b, _ in placed)
        return f'<polyline class="series" points="{path}" fill="none" stroke="{escape(s.colour)}" stroke-width="1.5"/>'
    return "".join(
        f'<circle class="point" cx="{a:.1f}" cy="{b:.1f}" r="{s.radius}" fill="{escape(s.colour)}" fill-opacity="0.6">'
        f"<title>{escape(t)}</title></circle>"
        for a, b, t in placed
    )


def _ticks(x: Axis, x_lo, x_hi, to_x, y: Axis, y_lo, y_hi, to_y, plot_w, plot_h) -> str:
    """Min and max labels on both axes (values, not logs)."""
    def shown(axis: Axis, v: float) -> str:
        return _fmt(10 ** v if axis.log else v)
    return (f'<text class="axis" x="0" y="{plot_h + 12}">{shown(x, x_lo)}</text>'
            f'<text class="axis" x="{plot_w}" y="{plot_h + 12}" text-anchor="end">{shown(x, x_hi)}</text>'
            f'<text class="axis" x="-4" y="{plot_h}" text-anchor="end">{shown(y, y_lo)}</text>'
            f'<text class="axis" x="-4" y="8" text-anchor="end">{shown(y, y_hi)}</text>')


def heatmap_svg(matrix: list[list[float]], *, label: str = "heatmap", size: int = 320, floor: float = 0.02) -> Markup:
    """A square diverging heatmap: blue > 0, red < 0, white ~0 (cells under `floor` are not drawn)."""
    n = len(matrix)
    if n == 0:
        return Markup('<p class="empty">no data</p>')
    top = max((abs(v) for row in matrix for v in row), default=1.0) or 1.0
    cell = size / n
    cells = []
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if abs(v) < floor * top:
                continue
            t = min(1.0, abs(v) / top)
            colour = f"rgb({round(255 - 200 * t)},{round(255 - 140 * t)},255)" if v > 0 else f"rgb(255,{round(255 - 170 * t)},{round(255 - 170 * t)})"
            cells.append(f'<rect x="{j * cell:.2f}" y="{i * cell:.2f}" width="{cell:.2f}" height="{cell:.2f}" fill="{colour}">'
                         f"<title>{i},{j}: {_fmt(v)}</title></rect>")
    return Markup(f'<svg class="heatmap" viewBox="0 0 {size} {size}" role="img" aria-label="{escape(label)}">'
                  f'<rect width="{size}" height="{size}" fill="#fff" stroke="#999"/>{"".join(cells)}</svg>')


def bars_svg(values: list[float], shades: list[float], *, label: str = "bars", width: int = 420, height: int = 120) -> Markup:
    """Vertical bars of `values`, each shaded by a [0, 1] number (black 0 .. orange 1)."""
    if not values:
        return Markup('<p class="empty">no data</p>')
    top = max(max(values), 1e-9)
    bar = width / len(values)
    rects = []
    for i, (v, shade) in enumerate(zip(values, shades, strict=True)):
        h = (height - 4) * max(v, 0) / top
        t = max(0.0, min(1.0, shade))
        colour = f"rgb({round(40 + 192 * t)},{round(40 + 76 * t)},{round(40 + 19 * t)})"
        rects.append(f'<rect x="{i * bar:.2f}" y="{height - h:.2f}" width="{max(bar - 1, 0.5):.2f}" height="{h:.2f}" fill="{colour}">'
                     f"<title>feature {i}: {_fmt(v)} (superposition {_fmt(shade)})</title></rect>")
    return Markup(f'<svg class="bars" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">{"".join(rects)}</svg>')
