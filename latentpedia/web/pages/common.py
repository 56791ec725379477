"""What every page needs: URLs of atlas objects, source lookups, "not found" errors."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote, urlencode

from latentpedia.engine.resolve import source_record
from latentpedia.errors import NotFoundError
from latentpedia.store.records import SourceRecord
from latentpedia.web.pages.map_urls import map_links
from latentpedia.web.schemas import SourceInfo

__all__ = ["NotFoundError", "source_record"]


def _part(text: str) -> str:
    return quote(str(text), safe="")


@lru_cache(maxsize=4096)
def source_url(model: str, source: str) -> str:
    """`/{model}/{source}`, quoted (cached: a feature page links ~15 latents of one source)."""
    return f"/{_part(model)}/{_part(source)}"


def source_api_url(model: str, source: str, query: dict | None = None) -> str:
    url = f"/api/source/{_part(model)}/{_part(source)}"
    return f"{url}?{urlencode(query)}" if query else url


def feature_url(model: str, source: str, index: int) -> str:
    return f"{source_url(model, source)}/{int(index)}"


def feature_api_url(model: str, source: str, index: int) -> str:
    return f"/api/feature/{_part(model)}/{_part(source)}/{int(index)}"


def random_url(model: str, source: str) -> str:
    return f"{source_url(model, source)}/random"


def with_query(url: str, query: dict) -> str:
    """`url` with the query parameters whose value is not None."""
    kept = {k: v for k, v in query.items() if v is not None}
    return f"{url}?{urlencode(kept)}" if kept else url


def source_info(record: SourceRecord) -> SourceInfo:
    """The public view of a source record."""
    meta = record.meta or {}
    quality = {
        name: float(value) for name, value in (meta.get("quality") or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }  # fmt: skip
    return SourceInfo(
        model=record.model_id, name=record.name, kind=record.kind, hook_name=record.hook_name,
        layer=record.layer, width=record.d_sae, d_in=record.d_in, tokens_seen=record.n_tokens,
        status=record.status, format=record.format, built_at=record.built_at,
        logits_basis=meta.get("logits_basis"), quality=quality, live=not meta.get("static"),
        url=source_url(record.model_id, record.name), api_url=source_api_url(record.model_id, record.name),
        **map_links(record.model_id, record.name, meta),
    )  # fmt: skip
