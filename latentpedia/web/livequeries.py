"""The live queries behind the routes: validate, run on the `LiveModels` worker, shape the answer.

Shared by the JSON routes (routers/live.py) and the search page (routers/search.py). Store
reads run in the thread pool; torch runs on the live worker thread, one forward pass per
request (or per batch of compatible `activation/new` requests).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from latentpedia.errors import InvalidInputError
from latentpedia.models import encode_text
from latentpedia.store.api import Store
from latentpedia.store.records import SourceRecord
from latentpedia.web.deps import token_text_for
from latentpedia.engine.encode import density_masks, encode_batch, encode_sources, top_latents, top_latents_per_token
from latentpedia.engine.worker import LiveModels
from latentpedia.web.live_schemas import (
    ActivationRequest,
    ActivationResult,
    SearchAllRequest,
    SearchAllResult,
    SearchHit,
    TokenLatent,
    TokenTop,
    TopFeature,
    TopkRequest,
    TopkResult,
)
from latentpedia.web.pages.common import NotFoundError, feature_api_url, feature_url, source_record
from latentpedia.web.ratelimit import PromptLimits, check_text, check_tokens


class LiveContext:
    """What a live query needs from the app: store, live service, limits, token decoders."""

    def __init__(self, store: Store, live: LiveModels, limits: PromptLimits, texts: dict, densities: dict):
        self.store, self.live, self.limits, self.texts, self.densities = store, live, limits, texts, densities

    def token_strings(self, model: str, ids: list[int]) -> list[str]:
        return token_text_for(self.store, self.texts, model).many(ids)


def _unprocessable(err: InvalidInputError) -> HTTPException:
    return HTTPException(status_code=422, detail=str(err))


async def _run(ctx: LiveContext, model_id: str, fn) -> Any:
    try:
        return await ctx.live.run(model_id, fn)
    except InvalidInputError as err:
        raise _unprocessable(err) from None


def _tokens(model, text: str, limits: PromptLimits) -> list[int]:
    ids = encode_text(model, text)
    check_tokens(len(ids), limits)
    if len(ids) < 2:
        raise HTTPException(status_code=422, detail="text has no tokens")
    return ids


# ------------------------------------------------------------------ activation/new


def _activation_batch(live: LiveModels, record: SourceRecord, limits: PromptLimits):
    """batch_fn for `activation/new` requests on one source: one padded forward pass."""

    def run(model, items: list[tuple[str, int]]) -> list[Any]:
        results: list[Any] = [None] * len(items)
        todo = []
        for i, (text, _index) in enumerate(items):
            try:
                todo.append((i, _tokens(model, text, limits)))
            except HTTPException as err:
                results[i] = err
        if todo:
            source = live.source(model, record)
            encoded = encode_batch(model, [ids for _, ids in todo], [source])
            for (i, ids), acts in zip(todo, encoded, strict=True):
                results[i] = (ids, acts[source.id][:, items[i][1]].tolist())
        return results

    return run


async def activation(ctx: LiveContext, body: ActivationRequest) -> ActivationResult:
    text = check_text(body.text, ctx.limits)
    record = await run_in_threadpool(source_record, ctx.store, body.modelId, body.layer)
    if body.index >= record.d_sae:
        raise NotFoundError(f"source {record.name!r} has latents 0..{record.d_sae - 1}, not {body.index}")
    key = ("activation", record.id, record.built_at)
    try:
        result = await ctx.live.run_batched(body.modelId, key, (text, body.index), _activation_batch(ctx.live, record, ctx.limits))
    except InvalidInputError as err:
        raise _unprocessable(err) from None
    if isinstance(result, Exception):
        raise result
    ids, values = result
    peak = int(np.argmax(values[1:])) + 1
    return ActivationResult(
        modelId=body.modelId, layer=record.name, index=body.index, tokens=ctx.token_strings(body.modelId, ids),
        token_ids=ids, values=values, maxValue=values[peak], maxValueIndex=peak, maxValueTokenIndex=peak,
        source=record.name, url=feature_url(body.modelId, record.name, body.index),
    )  # fmt: skip


# ------------------------------------------------------------------ search


def chosen_sources(store: Store, model: str, names: list[str] | None) -> list[SourceRecord]:
    """The ready sources to search: `names` (404 for an unknown one) or every built source."""
    if store.get_model(model) is None:
        raise NotFoundError(f"unknown model {model!r}")
    if not names:
        records = [r for r in store.list_sources(model) if r.status == "ready"]
        if not records:
            raise NotFoundError(f"model {model!r} has no built source to search")
        return records
    records = [source_record(store, model, name) for name in dict.fromkeys(names)]
    pending = [r.name for r in records if r.status != "ready"]
    if pending:
        raise HTTPException(status_code=422, detail=f"sources not built yet: {', '.join(pending)}")
    return records


def densities(store: Store, cache: dict, record: SourceRecord) -> np.ndarray:
    """The stored density (frac_nonzero) of each latent of a source (NaN where unknown), cached."""
    key = (id(store), record.id, record.built_at)
    if key not in cache:
        values = np.full(record.d_sae, np.nan)
        for row in store.list_latents(record.id, limit=None):
            if row["frac_nonzero"] is not None and row["idx"] < record.d_sae:
                values[row["idx"]] = row["frac_nonzero"]
        cache[key] = values
    return cache[key]


def _too_dense(ctx: LiveContext, records: list[SourceRecord], ceiling: float | None) -> dict[str, Any]:
    """{source: mask of latents denser than `ceiling`} (loads every source's densities once)."""
    return density_masks({r.name: densities(ctx.store, ctx.densities, r) for r in records}, ceiling)


async def _prepare(ctx: LiveContext, body) -> tuple[str, list[SourceRecord], dict]:
    text = check_text(body.text, ctx.limits)
    records = await run_in_threadpool(chosen_sources, ctx.store, body.modelId, body.sources)
    too_dense = await run_in_threadpool(_too_dense, ctx, records, body.densityThreshold)
    return text, records, too_dense


def _encode_job(ctx: LiveContext, text: str, records: list[SourceRecord], rank):
    def job(model):
        ids = _tokens(model, text, ctx.limits)
        sources = [ctx.live.source(model, r) for r in records]
        return ids, rank(ids, encode_sources(model, ids, sources))

    return job


def _sort_positions(body: SearchAllRequest, n_tokens: int) -> list[int]:
    first = 1 if body.ignoreBos else 0
    if not body.sortIndexes:
        return list(range(first, n_tokens))
    bad = [i for i in body.sortIndexes if not 0 <= i < n_tokens]
    if bad:
        raise HTTPException(status_code=422, detail=f"sortIndexes {bad} are outside the text's tokens 0..{n_tokens - 1}")
    return sorted({i for i in body.sortIndexes if i >= first}) or list(range(first, n_tokens))


async def search_all(ctx: LiveContext, body: SearchAllRequest) -> SearchAllResult:
    text, records, too_dense = await _prepare(ctx, body)

    def rank(ids, acts):
        positions = _sort_positions(body, len(ids))
        return positions, top_latents(acts, positions, body.numResults, too_dense=too_dense, ignore_first=body.ignoreBos)

    ids, (positions, hits) = await _run(ctx, body.modelId, _encode_job(ctx, text, records, rank))
    by_name = {r.name: r for r in records}
    model = body.modelId
    result = [
        SearchHit(
            modelId=model, layer=h.source, source=h.source, index=h.index, value=h.value, maxValue=h.max_value,
            maxValueIndex=h.max_position, values=h.values, frac_nonzero=_density(ctx, by_name[h.source], h.index),
            url=feature_url(model, h.source, h.index), api_url=feature_api_url(model, h.source, h.index),
        )
        for h in hits
    ]  # fmt: skip
    return SearchAllResult(
        modelId=model, tokens=ctx.token_strings(model, ids), token_ids=ids, sources=list(by_name),
        sortIndexes=positions if body.sortIndexes else [], result=result,
    )  # fmt: skip


def _density(ctx: LiveContext, record: SourceRecord, index: int) -> float | None:
    value = ctx.densities[(id(ctx.store), record.id, record.built_at)][index]
    return None if np.isnan(value) else float(value)


async def topk_by_token(ctx: LiveContext, body: TopkRequest) -> TopkResult:
    text, records, too_dense = await _prepare(ctx, body)

    def rank(_ids, acts):
        return top_latents_per_token(acts, body.k, too_dense=too_dense, ignore_first=body.ignoreBos)

    ids, per_token = await _run(ctx, body.modelId, _encode_job(ctx, text, records, rank))
    model, tokens = body.modelId, ctx.token_strings(body.modelId, ids)
    results = [
        TokenTop(position=p, token=tokens[p], top=[TokenLatent(layer=s, index=i, value=v, url=feature_url(model, s, i)) for s, i, v in top],
                 topFeatures=[TopFeature(featureIndex=i, activationValue=v, source=s) for s, i, v in top])
        for p, top in enumerate(per_token)
    ]  # fmt: skip
    return TopkResult(modelId=model, tokens=tokens, token_ids=ids, sources=[r.name for r in records], k=body.k, results=results)
