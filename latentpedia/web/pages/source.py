"""The source page: a sorted, filtered, paged table of a source's latents."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from latentpedia.store.api import Store
from latentpedia.web.pages.common import feature_url, source_record, source_info, source_url, with_query
from latentpedia.web.pages.families import match_summaries
from latentpedia.web.schemas import LatentOrder, LatentRow, SourcePage

STORE_ORDER = {"index": "idx", "max_act": "max_act", "frac_nonzero": "frac_nonzero", "mean_act": "mean_act"}


@dataclass(frozen=True)
class LatentQuery:
    """How the latents table is sorted, filtered and paged (the page's query parameters)."""

    order_by: LatentOrder = "index"
    desc: bool = False
    offset: int = 0
    limit: int = 50
    min_density: float | None = None
    max_density: float | None = None
    explained: bool | None = None  # only latents with (True) / without (False) an explanation

    def params(self, **changes) -> dict:
        """These parameters (with `changes`) as a query dict, without the unset ones."""
        values = {**asdict(self), **changes}
        values["desc"] = str(values["desc"]).lower()
        if values.get("explained") is not None:
            values["explained"] = str(values["explained"]).lower()
        return {key: value for key, value in values.items() if value is not None}


def source_page_data(store: Store, model: str, source: str, query: LatentQuery = LatentQuery()) -> SourcePage:
    """One page of latents of `model`/`source`, for `/{model}/{source}` and its JSON twin."""
    record = source_record(store, model, source)
    density = dict(min_density=query.min_density, max_density=query.max_density, explained=query.explained)
    rows = store.list_latents(
        record.id, order_by=STORE_ORDER[query.order_by], desc=query.desc,
        offset=query.offset, limit=query.limit, **density,
    )  # fmt: skip
    total = store.count_latents(record.id, **density)
    explanations = store.top_explanations(record.id, [r["idx"] for r in rows])
    latents = [
        LatentRow(index=r["idx"], max_act=r["max_act"], frac_nonzero=r["frac_nonzero"],
                  mean_act=r["mean_act"], url=feature_url(model, source, r["idx"]),
                  explanation=explanations.get(r["idx"]))  # fmt: skip
        for r in rows
    ]
    return SourcePage(
        source=source_info(record), latents=latents, total=total, **asdict(query),
        prev_url=_page_url(model, source, query, query.offset - query.limit) if query.offset > 0 else None,
        next_url=_page_url(model, source, query, query.offset + query.limit) if query.offset + query.limit < total else None,
        matches=match_summaries(store, model, source),
    )  # fmt: skip


def _page_url(model: str, source: str, query: LatentQuery, offset: int) -> str:
    return with_query(source_url(model, source), query.params(offset=max(0, offset)))
