"""Live inference on a caller's text: `POST /api/activation/new`, `POST /api/search-all`,
`POST /api/search-topk-by-token`, and `GET /api/search` (what can be searched, the limits).

Anonymous compute routes (marked `x-latentpedia-compute` in the OpenAPI spec): rate limited per
client IP (429 + Retry-After), prompt limits (413), queue full (503), too slow (504).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from latentpedia.store.api import Store
from latentpedia.web.deps import StoreDep, TokenTextDep
from latentpedia.web.live import LiveDep
from latentpedia.web.live_schemas import (
    MAX_TEXTS,
    ActivationRequest,
    ActivationResult,
    LiveMeta,
    SearchAllBatch,
    SearchAllRequest,
    SearchAllResult,
    TopkBatch,
    TopkRequest,
    TopkResult,
)
from latentpedia.web.livequeries import LiveContext, activation, search_all, topk_by_token
from latentpedia.web.ratelimit import PromptLimitsDep, RateLimiter, compute_route, prompt_limits

router = APIRouter(tags=["live"])
LIVE = compute_route(too_long="text over the character or token limit", invalid="empty or invalid text, bad positions")


def live_context(request: Request, store: StoreDep, live: LiveDep, limits: PromptLimitsDep, texts: TokenTextDep) -> LiveContext:
    state = request.app.state
    if getattr(state, "live_densities", None) is None:
        state.live_densities = {}
    return LiveContext(store, live, limits, texts, state.live_densities)


ContextDep = Annotated[LiveContext, Depends(live_context)]


def one_per_text(body):
    """`body` once per text of a Neuronpedia batch request (`text` a list), else None."""
    if isinstance(body.text, str):
        return None
    if not 1 <= len(body.text) <= MAX_TEXTS:
        raise HTTPException(422, f"give one text or a list of 1 to {MAX_TEXTS} texts, not {len(body.text)}")
    return [body.model_copy(update={"text": text}) for text in body.text]


@router.post("/api/activation/new", response_model=ActivationResult | list[ActivationResult], summary="One latent's activations on your text", **LIVE)
async def activation_new(body: ActivationRequest, ctx: ContextDep) -> ActivationResult | list[ActivationResult]:
    """Per-token activations of latent `index` of source `layer` on `text` (BOS prepended); a
    list of texts is answered by a list of results."""
    each = one_per_text(body)
    return await activation(ctx, body) if each is None else [await activation(ctx, b) for b in each]


@router.post("/api/search-all", response_model=SearchAllResult | SearchAllBatch, summary="Top latents on your text across sources", **LIVE)
async def search_all_route(body: SearchAllRequest, ctx: ContextDep) -> SearchAllResult | SearchAllBatch:
    """The latents with the highest activation on `text` (over `sortIndexes`, or every token
    after BOS) across `sources` (default: every built source), denser latents skipped. A list
    of texts is answered by `{"results": [one result per text]}`."""
    each = one_per_text(body)
    return await search_all(ctx, body) if each is None else SearchAllBatch(results=[await search_all(ctx, b) for b in each])


@router.post("/api/search-topk-by-token", response_model=TopkResult | TopkBatch, summary="Each token's top latents", **LIVE)
async def topk_route(body: TopkRequest, ctx: ContextDep) -> TopkResult | TopkBatch:
    """For every token of `text`, its `k` (`numResults`) most active latents across `sources`;
    a list of texts is answered by `{"results": [one result per text]}`."""
    each = one_per_text(body)
    return await topk_by_token(ctx, body) if each is None else TopkBatch(results=[await topk_by_token(ctx, b) for b in each])


def live_meta(store: Store, request: Request) -> LiveMeta:
    limits = prompt_limits(request)
    limiter = getattr(request.app.state, "rate_limiter", None) or RateLimiter.from_env()
    models = {m.id: [s.name for s in store.list_sources(m.id) if s.status == "ready"] for m in store.list_models()}
    return LiveMeta(models=models, max_chars=limits.max_chars, max_tokens=limits.max_tokens, rate_per_minute=limiter.rate * 60, burst=limiter.burst)


@router.get("/api/search", response_model=LiveMeta, summary="What search-all can search, and the live limits")
async def search_meta(request: Request, store: StoreDep) -> LiveMeta:
    return await run_in_threadpool(live_meta, store, request)
