"""URLs of latent maps (no other page module imported: pages/common.py links sources to them)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def _part(text: str) -> str:
    return quote(str(text), safe="")


def map_url(model: str, source: str) -> str:
    return f"/{_part(model)}/{_part(source)}/map"


def map_api_url(model: str, source: str) -> str:
    return f"/api/map/{_part(model)}/{_part(source)}"


def map_thumbnail_url(model: str, source: str, meta: dict[str, Any] | None = None) -> str:
    """The map's SVG thumbnail; `meta` (the source's) versions it, so a recomputed map is refetched."""
    version = ((meta or {}).get("map") or {}).get("computed_at", "")
    suffix = f"?v={quote(version, safe='')}" if version else ""
    return f"{map_api_url(model, source)}/thumbnail.svg{suffix}"


def map_links(model: str, source: str, meta: dict[str, Any] | None) -> dict[str, str | None]:
    """`map_url` and `map_thumbnail_url` of a source, None while it has no map."""
    if not (meta or {}).get("map"):
        return {"map_url": None, "map_thumbnail_url": None}
    return {"map_url": map_url(model, source), "map_thumbnail_url": map_thumbnail_url(model, source, meta)}
