"""Latent maps as pages: the map of a source (`map_page_data`), a latent's place on it
(`map_position`, the feature page's `map`), the SVG thumbnail and Neuronpedia's `/api/umap` rows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import select

from latentpedia.errors import NotFoundError
from latentpedia.store.api import Store
from latentpedia.store.maps import MAP_POSITION, SourceMap
from latentpedia.store.records import SourceRecord
from latentpedia.store.schema import Latent
from latentpedia.web.map_schemas import MapPage, MapPosition, UmapPoint
from latentpedia.web.pages.common import feature_url, source_record, source_url
from latentpedia.web.pages.map_urls import map_api_url, map_thumbnail_url, map_url

THUMBNAIL_POINTS = 3000  # at most this many points drawn in a thumbnail (an even sample)
THUMBNAIL_SIZE = 160
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def _mapped(store: Store, model: str, source: str) -> tuple[SourceRecord, SourceMap]:
    record = source_record(store, model, source)
    found = store.get_map(record.id)
    if found is None:
        raise NotFoundError(f"{model}/{source} has no map yet: compute it with `latentpedia build-maps --source {source}`")
    return record, found


def _densities(store: Store, source_id: int, n: int) -> list[float | None]:
    out: list[float | None] = [None] * n
    with store.engine.connect() as conn:
        for idx, frac in conn.execute(select(Latent.idx, Latent.frac_nonzero).where(Latent.source_id == source_id)):
            if 0 <= idx < n:
                out[idx] = frac
    return out


def _round(values: np.ndarray) -> list[float]:
    return [round(v, 4) for v in values.tolist()]


def map_page_data(store: Store, model: str, source: str, highlight: int | None = None) -> MapPage:
    """Every latent of `model`/`source` on its map (NotFoundError if unknown or not mapped)."""
    record, found = _mapped(store, model, source)
    n = len(found.index)
    density = _densities(store, record.id, record.d_sae)
    best = store.best_scored_explanations(record.id)
    indices = found.index.tolist()
    meta = record.meta or {}
    return MapPage.model_construct(
        modelId=model, layer=source, n=n, index=indices, x=_round(found.x), y=_round(found.y),
        density=[density[i] if i < len(density) else None for i in indices],
        score=[best[i][1] if i in best else None for i in indices], cluster=found.cluster.tolist(),
        explanation=[best[i][0] if i in best else None for i in indices],
        n_clusters=int(found.cluster.max()) + 1 if n else 0, info=meta.get("map") or {},
        url=map_url(model, source), api_url=map_api_url(model, source), source_url=source_url(model, source),
        feature_url=source_url(model, source) + "/{index}", list_url=map_api_url(model, source) + "/list",
        thumbnail_url=map_thumbnail_url(model, source, meta), highlight=highlight,
    )  # fmt: skip


def _bounds(info: dict[str, Any]) -> tuple[float, float, float, float] | None:
    bounds = info.get("bounds")
    if not (isinstance(bounds, list) and len(bounds) == 4):
        return None
    return tuple(float(b) for b in bounds)  # type: ignore[return-value]


def _unit(value: float, low: float, high: float) -> float:
    return 0.5 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))


def map_position(conn: Any, record: SourceRecord, index: int) -> MapPosition | None:
    """Where latent `index` sits on its source's map (None: no map), read on `conn`."""
    info = (record.meta or {}).get("map")
    if not info:
        return None
    row = conn.execute(MAP_POSITION, {"sid": record.id, "idx": int(index)}).first()
    if row is None:
        return None
    x0, x1, y0, y1 = _bounds(info) or (row.x - 1, row.x + 1, row.y - 1, row.y + 1)
    model, source = record.model_id, record.name
    return MapPosition.model_construct(
        x=float(row.x), y=float(row.y), cluster=int(row.cluster), u=_unit(row.x, x0, x1), v=_unit(row.y, y0, y1),
        url=f"{map_url(model, source)}?highlight={int(index)}", thumbnail_url=map_thumbnail_url(model, source, record.meta),
    )  # fmt: skip


def thumbnail_svg(store: Store, model: str, source: str) -> str:
    """The map as a small SVG (an even sample of at most THUMBNAIL_POINTS points, coloured by
    cluster), drawn on the server: no script needed, cacheable."""
    record, found = _mapped(store, model, source)
    x0, x1, y0, y1 = _bounds((record.meta or {}).get("map") or {}) or (
        float(found.x.min()), float(found.x.max()), float(found.y.min()), float(found.y.max()))
    step = max(1, math.ceil(len(found.index) / THUMBNAIL_POINTS))
    size, pad = THUMBNAIL_SIZE, 4
    span = size - 2 * pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img">',
             f"<title>map of {_escape(model)}/{_escape(source)}</title>", f'<rect width="{size}" height="{size}" fill="#fafafa"/>']
    for i in range(0, len(found.index), step):
        px = pad + span * _unit(float(found.x[i]), x0, x1)
        py = pad + span * (1 - _unit(float(found.y[i]), y0, y1))
        colour = PALETTE[int(found.cluster[i]) % len(PALETTE)] if found.cluster[i] >= 0 else "#999"
        parts.append(f'<rect x="{px - 0.8:.1f}" y="{py - 0.8:.1f}" width="1.6" height="1.6" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def umap_points(store: Store, model: str, sources: list[str]) -> dict[str, list[UmapPoint]]:
    """Neuronpedia's `POST /api/umap` answer: per source, its mapped latents with their best
    explanation and log10 density."""
    out: dict[str, list[UmapPoint]] = {}
    for name in sources:
        page = map_page_data(store, model, name)
        out[name] = [
            UmapPoint.model_construct(
                modelId=model, layer=name, index=str(i), description=text, umap_x=x, umap_y=y, umap_cluster=c,
                umap_log_feature_sparsity=math.log10(d) if d else None)
            for i, x, y, c, d, text in zip(page.index, page.x, page.y, page.cluster, page.density, page.explanation)
        ]  # fmt: skip
    return out
