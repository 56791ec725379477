"""Explanation search: `/search/explanations` (+ its JSON twin) and Neuronpedia's routes.

    GET  /search/explanations?q=python+exceptions&model=M&sources=8-mlp&method=offline&min_score=0.7
    GET  /api/search/explanations?...            the same page as JSON
    POST /api/explanation/search      {modelId, layers, query, offset}
    POST /api/explanation/search-model {modelId, query, offset}
    POST /api/explanation/search-all  {query, offset}

The query is embedded on the torch worker (`app.state.live`, no model loaded; this module never
runs torch), explanations written since the last search are embedded first (at most
`CATCH_UP` per request; `latentpedia index-explanations` does a whole atlas), and the ranked
list comes from engine/explanation_index.py. Neuronpedia's routes are semantic (ordered by
cosine); the page fuses semantic and full-text results unless `mode` says otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BeforeValidator, Field
from starlette.concurrency import run_in_threadpool

from latentpedia.engine.explanation_index import RankedHit, explanation_index, search_explanations, with_cosines
from latentpedia.interp.embedding import WorkerEmbedder
from latentpedia.interp.explanation_embeddings import embed_explanations, embed_query
from latentpedia.store.api import Store
from latentpedia.store.explanation_search import (
    ExplanationFilter,
    count_embedding_state,
    explanation_methods,
    max_embedded_id,
)
from latentpedia.web.deps import StoreDep, TokenTextDep, token_text_for
from latentpedia.web.explanation_search_schemas import (
    MAX_OFFSET,
    MAX_QUERY,
    PAGE_SIZE,
    ExplanationResult,
    ExplanationSearchPage,
    NeuronActivation,
    NeuronSummary,
    SearchAllIn,
    SearchFilters,
    SearchMode,
    SearchModelIn,
    SearchResponse,
    SearchSourcesIn,
)
from latentpedia.web.live import LiveDep, LiveModels
from latentpedia.web.pages.common import NotFoundError, feature_url
from latentpedia.web.ratelimit import compute_route, rate_limited

router = APIRouter(tags=["explanation search"])
CATCH_UP = 256
ROUTE = compute_route(too_long="", invalid="empty, too short or too long query, or text no database stores")
ROUTE["responses"].pop(413)


def check_query(query: str) -> str:
    """The stripped query; 422 when empty, under 3 or over MAX_QUERY characters, or holding a NUL."""
    query = (query or "").strip()
    if not query:
        raise HTTPException(422, "the query is empty: type what the latents should be about")
    if len(query) < 3:
        raise HTTPException(422, f"the query {query!r} is too short: at least 3 characters")
    if len(query) > MAX_QUERY:
        raise HTTPException(422, f"the query has {len(query):,} characters; the limit is {MAX_QUERY}")
    if "\x00" in query:
        raise HTTPException(422, "the query holds a NUL character")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(422, "the query is not valid Unicode (it holds unpaired surrogates)") from None
    return query


def worker_embedder(live: LiveModels) -> WorkerEmbedder:
    """MiniLM on the torch worker (no language model loaded), callable from a thread-pool thread
    while the event loop awaits the worker. Call on the event loop."""
    loop = asyncio.get_running_loop()

    def on_torch(fn: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(live.run(None, fn), loop).result()

    return WorkerEmbedder(on_torch)


async def query_vector(live: LiveModels, store: Store, query: str) -> np.ndarray:
    """Embed what was written since the last search, then the query, on the torch worker."""
    embed = worker_embedder(live)

    def catch_up() -> int:
        return embed_explanations(store, embed, after_id=max_embedded_id(store), limit=CATCH_UP)

    await run_in_threadpool(catch_up)
    return await live.run(None, lambda _model: embed_query(query))


def _top_activation(store: Store, hit: Any, tokens: Any) -> list[NeuronActivation]:
    examples = store.get_examples(hit.source_id, hit.latent_index, kind=0, with_tokens=True)[:1]
    out = []
    for example in examples:
        window = example.get("tokens") or []
        values = [0.0] * len(window)
        for position, value in zip(example["positions"], example["values"], strict=True):
            if position < len(values):
                values[position] = round(float(value), 4)
        text = tokens.many(window[1:]) if window else []
        best = int(np.argmax(values[1:])) if len(values) > 1 else 0
        out.append(NeuronActivation(tokens=text, values=values[1:], maxValue=max(values[1:], default=0.0), maxValueTokenIndex=best))
    return out


def result_rows(store: Store, token_cache: dict, ranked: list[RankedHit]) -> list[ExplanationResult]:
    """Result rows with each latent's top example (its sparkline)."""
    rows = []
    for item in ranked:
        hit = item.hit
        activations = _top_activation(store, hit, token_text_for(store, token_cache, hit.model_id))
        neuron = NeuronSummary(modelId=hit.model_id, layer=hit.source, index=str(hit.latent_index), maxActApprox=hit.max_act,
                               frac_nonzero=hit.frac_nonzero, activations=activations)  # fmt: skip
        rows.append(ExplanationResult(
            id=str(hit.id), modelId=hit.model_id, layer=hit.source, index=str(hit.latent_index), description=hit.text,
            typeName=hit.method, explanationModelName=hit.explainer_model, authorName=hit.author,
            cosine_similarity=None if item.cosine_similarity is None else round(item.cosine_similarity, 6),
            score=hit.score, scorer=hit.scorer, frac_nonzero=hit.frac_nonzero, rank_score=round(item.rrf, 6),
            text_rank=item.text_rank, url=feature_url(hit.model_id, hit.source, hit.latent_index), neuron=neuron))  # fmt: skip
    return rows


def _known(store: Store, filters: ExplanationFilter) -> None:
    """404 naming an unknown model or source."""
    if filters.model is None:
        return
    if store.get_model(filters.model) is None:
        raise NotFoundError(f"unknown model {filters.model!r}")
    names = {s.name for s in store.list_sources(filters.model)}
    unknown = [s for s in filters.sources if s not in names]
    if unknown:
        raise NotFoundError(f"model {filters.model!r} has no source {', '.join(map(repr, unknown))}")


async def run_search(store: Store, live: LiveModels, token_cache: dict, query: str, filters: ExplanationFilter, *,
                     mode: SearchMode, offset: int, limit: int) -> tuple[list[ExplanationResult], bool]:  # fmt: skip
    """One page of results (and whether there are more)."""
    await run_in_threadpool(_known, store, filters)
    vector = await query_vector(live, store, query) if mode != "text" else None

    def ranked() -> list[ExplanationResult]:
        hits = search_explanations(store, query, vector, filters, mode=mode, offset=offset, limit=limit + 1)
        return result_rows(store, token_cache, with_cosines(store, hits, vector))

    rows = await run_in_threadpool(ranked)
    return rows[:limit], len(rows) > limit


async def _neuronpedia(request: Request, body: SearchAllIn, filters: ExplanationFilter) -> SearchResponse:
    app = request.app
    query = check_query(body.query)
    rows, more = await run_search(app.state.store, app.state.live, app.state.token_text, query, filters,
                                  mode="semantic", offset=body.offset, limit=PAGE_SIZE)  # fmt: skip
    return SearchResponse(request=body.model_dump(), results=rows, resultsCount=len(rows), hasMore=more,
                          nextOffset=body.offset + len(rows) if more else None)  # fmt: skip


@router.post("/api/explanation/search", response_model=SearchResponse, summary="Search explanations of some sources", **ROUTE)
async def search_sources(request: Request, body: SearchSourcesIn) -> SearchResponse:
    return await _neuronpedia(request, body, ExplanationFilter(model=body.modelId, sources=tuple(body.layers)))


@router.post("/api/explanation/search-model", response_model=SearchResponse, summary="Search explanations of a model", **ROUTE)
async def search_model(request: Request, body: SearchModelIn) -> SearchResponse:
    return await _neuronpedia(request, body, ExplanationFilter(model=body.modelId))


@router.post("/api/explanation/search-all", response_model=SearchResponse, summary="Search every explanation", **ROUTE)
async def search_all(request: Request, body: SearchAllIn) -> SearchResponse:
    return await _neuronpedia(request, body, ExplanationFilter())


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


Number = Annotated[float | None, BeforeValidator(_blank_is_none), Query()]
# bounds on the float inside: a blank field is None, which a bound on the whole would refuse with a 500
Density = Annotated[Annotated[float, Field(ge=0, le=1)] | None, BeforeValidator(_blank_is_none), Query(description="density bound in [0, 1]")]


def _page_filters(model, sources, method, author, min_score, min_density, max_density) -> tuple[SearchFilters, ExplanationFilter]:
    sources = [s for s in sources if s]
    method = [m for m in method if m]
    shown = SearchFilters(model=model or None, sources=sources, method=method, author=author or None, min_score=min_score,
                          min_density=min_density, max_density=max_density)  # fmt: skip
    return shown, ExplanationFilter(model=model or None, sources=tuple(sources), methods=tuple(method), author=author or None,
                                    min_score=min_score, min_density=min_density, max_density=max_density)  # fmt: skip


async def page_data(request: Request, store: Store, live: LiveModels, token_cache: dict, q: str, mode: SearchMode,
                    shown: SearchFilters, filters: ExplanationFilter, offset: int, limit: int) -> ExplanationSearchPage:  # fmt: skip
    rows, more = [], False
    if q.strip():
        rate_limited(request)
        if shown.sources and not shown.model:
            raise HTTPException(422, "choose a model to filter by source")
        rows, more = await run_search(store, live, token_cache, check_query(q), filters, mode=mode, offset=offset, limit=limit)

    def context() -> tuple[dict, dict, list[str]]:
        total, done = count_embedding_state(store)
        index = explanation_index(store)
        models = {m.id: [s.name for s in store.list_sources(m.id)] for m in store.list_models()}
        return {"kind": index.kind, "size": len(index.index), "pending": total - done}, models, explanation_methods(store)

    index, models, methods = await run_in_threadpool(context)
    return ExplanationSearchPage(q=q, mode=mode, filters=shown, offset=offset, limit=limit, results=rows, hasMore=more,
                                 nextOffset=offset + len(rows) if more else None, index=index, models=models,
                                 methods=methods)  # fmt: skip


def check_field(name: str, value: str | None) -> None:
    """422 for a filter value no database stores or no response can carry (NUL, lone surrogate)."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(422, f"{name} is not valid Unicode (it holds unpaired surrogates)") from None
    if "\x00" in value:
        raise HTTPException(422, f"{name} holds a NUL character")


@dataclass(frozen=True)
class PageQuery:
    """The query string of the page and of its JSON twin, as one value."""

    q: str
    mode: SearchMode
    model: str | None
    sources: list[str]
    method: list[str]
    author: str | None
    min_score: float | None
    min_density: float | None
    max_density: float | None
    offset: int
    limit: int


def page_query(
    q: Annotated[str, Query(max_length=MAX_QUERY * 2)] = "", mode: SearchMode = "hybrid", model: str | None = None,
    sources: Annotated[list[str], Query()] = [], method: Annotated[list[str], Query()] = [],  # noqa: B006
    author: str | None = None, min_score: Number = None,
    min_density: Density = None,
    max_density: Density = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0, limit: Annotated[int, Query(ge=1, le=100)] = PAGE_SIZE,
) -> PageQuery:  # fmt: skip
    """The page's parameters (a dependency: FastAPI lists each one in the OpenAPI spec)."""
    return PageQuery(q, mode, model, sources, method, author, min_score, min_density, max_density, offset, limit)


PageQueryDep = Annotated[PageQuery, Depends(page_query)]


async def _page(request: Request, store: Store, live: LiveModels, token_cache: dict, p: PageQuery) -> ExplanationSearchPage:
    for name, value in (("q", p.q), ("model", p.model), ("author", p.author), *(("sources", s) for s in p.sources),
                        *(("method", m) for m in p.method)):  # fmt: skip
        check_field(name, value)
    shown, filters = _page_filters(p.model, p.sources, p.method, p.author, p.min_score, p.min_density, p.max_density)
    return await page_data(request, store, live, token_cache, p.q, p.mode, shown, filters, p.offset, p.limit)


@router.get("/api/search/explanations", response_model=ExplanationSearchPage, summary="Search explanations (the page's JSON twin)",
            responses=ROUTE["responses"])  # fmt: skip
async def search_explanations_json(request: Request, store: StoreDep, live: LiveDep, token_cache: TokenTextDep, p: PageQueryDep) -> ExplanationSearchPage:
    return await _page(request, store, live, token_cache, p)


@router.get("/search/explanations", response_class=HTMLResponse, include_in_schema=False)
async def search_explanations_html(request: Request, store: StoreDep, live: LiveDep, token_cache: TokenTextDep, p: PageQueryDep) -> HTMLResponse:
    twin = "/api/search/explanations" + (f"?{request.url.query}" if request.url.query else "")
    status, error = 200, None
    try:
        page = await _page(request, store, live, token_cache, p)
    except HTTPException as err:
        if err.status_code == 429:
            raise
        status, error = err.status_code, str(err.detail)
    except NotFoundError as err:
        status, error = 404, str(err)
    if error is not None:  # the form again, with the error; nothing unprintable echoed
        page = await page_data(request, store, live, token_cache, "", p.mode, SearchFilters(), ExplanationFilter(), p.offset, p.limit)
        page.q = p.q if _printable(p.q) else ""
    templates = request.app.state.templates
    context = {"page": page, "twin_url": twin, "error": error, "sparkline": sparkline_svg}
    response = templates.TemplateResponse(request, "explanation_search.html", context, status_code=status)
    response.headers["Link"] = f'<{twin}>; rel="alternate"; type="application/json"'
    return response


def _printable(value: str) -> bool:
    try:
        check_field("q", value)
    except HTTPException:
        return False
    return True


def sparkline_svg(values: list[float], width: int = 160, height: int = 24) -> str:
    """An inline SVG polyline of per-token values (0 at the bottom, the maximum at the top)."""
    from markupsafe import Markup

    if not values:
        return Markup("")
    top = max(max(values), 1e-9)
    step = width / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values))
    return Markup(f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
                  f'aria-label="top example activations"><polyline fill="none" stroke="currentColor" stroke-width="1" '
                  f'points="{points}"/></svg>')  # fmt: skip


async def embed_written(app: Any, ids: list[int]) -> None:
    """Embed just-written explanations on the torch worker (a write route's background task). A
    failure only delays them: the next search embeds what is missing above the newest vector."""
    embed = worker_embedder(app.state.live)
    try:
        await run_in_threadpool(embed_explanations, app.state.store, embed, ids=ids)
    except Exception as err:  # noqa: BLE001 - logged; search catches up
        logging.getLogger(__name__).warning("embedding explanations %s failed: %s", ids, err)
