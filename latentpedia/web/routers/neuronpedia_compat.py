"""Neuronpedia's API where the atlas has the same thing: `POST /api/activation/source`,
`POST /api/steer-chat`, the list calls of the official client (`/api/list/list`, `/api/list/get`,
`/api/list/add-features`), and `/quick-list` (the URL SAELens' `get_neuronpedia_quick_list` builds).

The official client calls `{BASE_URL}/{endpoint}/` with a trailing slash for some endpoints
(search-all, search-topk-by-token, steer, steer-chat): `strip_trailing_slash` maps those to the
routes without it. docs/neuronpedia.md maps every client call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from latentpedia.store.api import Store
from latentpedia.store.steers import get_steer
from latentpedia.web import experiment_schemas as S
from latentpedia.web.auth import CurrentUser, OptionalUser
from latentpedia.web.compute import READ_EXTRA
from latentpedia.web.deps import StoreDep
from latentpedia.web.experiment_queries import steer_query, steer_stream_query
from latentpedia.web.livequeries import _tokens
from latentpedia.web.np_schemas import (
    MAX_TEXTS,
    ActivationSourceRequest,
    ActivationSourceResult,
    ActivationSourceText,
    AddFeaturesIn,
    ChatMessage,
    ChatOutput,
    ListIdIn,
    NPListFull,
    NPListNeuron,
    NPListSummary,
    QuickListItem,
    QuickListPage,
    SharedSteer,
    SteerChatRequest,
    SteerChatResult,
)
from latentpedia.web.np_steer import SSE_HEADERS, share, sse, steer_url
from latentpedia.web.pages.common import NotFoundError, feature_url, source_record, with_query
from latentpedia.web.pages.community import can_read_list, list_url
from latentpedia.web.ratelimit import check_text, compute_route
from latentpedia.web.render import render_page
from latentpedia.web.routers.experiments import ContextDep as ExperimentContextDep
from latentpedia.web.routers.live import ContextDep as LiveContextDep
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["neuronpedia"])
LIVE = compute_route(too_long="a text over the character or token limit", invalid="empty or invalid text, too many texts")
ERRORS = {401: {"model": ErrorBody, "description": "not signed in"}, 404: {"model": ErrorBody, "description": "unknown list or latent"}}
# Endpoints the official client calls with a trailing slash (`uri=""`).
SLASHED = ("/api/search-all/", "/api/search-topk-by-token/", "/api/steer/", "/api/steer-chat/")


def texts_of(value: str | list[str]) -> list[str]:
    """One text or a list of 1..MAX_TEXTS texts (422 otherwise)."""
    texts = [value] if isinstance(value, str) else list(value)
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise HTTPException(422, f"give one text or a list of 1 to {MAX_TEXTS} texts, not {len(texts)}")
    return texts


# ---------------------------------------------------------------------------- activation/source


def _active_features(acts: Any) -> dict[str, list[tuple[int, float]]]:
    values = np.asarray(acts.numpy() if hasattr(acts, "numpy") else acts, dtype=np.float32)
    positions, latents = np.nonzero(values[1:])
    active: dict[str, list[tuple[int, float]]] = {}
    for pos, latent in zip(positions.tolist(), latents.tolist(), strict=True):
        active.setdefault(str(latent), []).append((pos + 1, float(values[pos + 1, latent])))
    return active


@router.post("/api/activation/source", response_model=ActivationSourceResult, summary="Every latent of a source on your texts", **LIVE)
async def activation_source(body: ActivationSourceRequest, ctx: LiveContextDep) -> ActivationSourceResult:
    """The non-zero activations of all latents of `source` on `customText` (one text or a list),
    sparse: `activeFeatures[index] = [[position, value], ...]` (BOS left out, as Neuronpedia does)."""
    texts = [check_text(t, ctx.limits) for t in texts_of(body.customText)]
    record = await run_in_threadpool(source_record, ctx.store, body.modelId, body.source)
    if record.status != "ready":
        raise HTTPException(422, f"source {record.name!r} is not built yet")

    def job(model):
        source = ctx.live.source(model, record)
        out = []
        for text in texts:
            ids = _tokens(model, text, ctx.limits)
            out.append((ids, _active_features(_encode_one(model, ids, source))))
        return out

    done = await ctx.live.run(body.modelId, job)
    results = [ActivationSourceText(tokens=ctx.token_strings(body.modelId, ids), token_ids=ids, activeFeatures=active) for ids, active in done]
    return ActivationSourceResult(modelId=body.modelId, source=record.name, results=results)


def _encode_one(model, ids: list[int], source):
    from latentpedia.engine.encode import encode_sources

    return encode_sources(model, ids, [source])[source.id]


# ---------------------------------------------------------------------------- steer-chat


def chat_prompt(model, messages: list[ChatMessage]) -> str:
    """The model's chat template applied to `messages` (plain `role: content` lines when the
    tokenizer has none), ending where the assistant's reply starts."""
    rows = [m.model_dump() for m in messages]
    tokenizer = model.tokenizer
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(rows, tokenize=False, add_generation_prompt=True)
    return "".join(f"{r['role']}: {r['content']}\n" for r in rows) + "assistant:"


def _steer_body(body: SteerChatRequest, prompt: str, types: list[str]) -> S.SteerRequest:
    return S.SteerRequest(
        prompt=prompt, modelId=body.modelId, features=body.features, steer_method=body.steer_method,
        normalize_steering=body.normalize_steering, n_completion_tokens=body.n_tokens, temperature=body.temperature,
        seed=body.seed, strength_multiplier=body.strength_multiplier, freq_penalty=body.freq_penalty, types=types,
    )  # fmt: skip


async def _chat_plans(ctx, body: SteerChatRequest) -> list[tuple[S.SteerRequest, list[ChatMessage]]]:
    """One steer request per distinct conversation (both types share one when they are equal)."""
    for message in body.defaultChatMessages + body.steeredChatMessages:
        check_text(message.content, ctx.limits)
    await ctx.check(body.modelId)
    chats = {"DEFAULT": body.defaultChatMessages, "STEERED": body.steeredChatMessages}
    prompts = await ctx.run(body.modelId, lambda m: {t: chat_prompt(m, msgs) for t, msgs in chats.items()})
    if prompts["DEFAULT"] == prompts["STEERED"]:
        return [(_steer_body(body, prompts["STEERED"], ["STEERED", "DEFAULT"]), body.steeredChatMessages)]
    return [(_steer_body(body, prompts[t], [t]), chats[t]) for t in ("STEERED", "DEFAULT")]


def _chat_output(prompt: str, messages: list[ChatMessage], reply: str) -> ChatOutput:
    return ChatOutput(raw=prompt + reply, chatTemplate=[*messages, ChatMessage(role="assistant", content=reply)])


@router.post("/api/steer-chat", response_model=SteerChatResult, summary="Steered vs default chat replies", **LIVE)
async def steer_chat(body: SteerChatRequest, ctx: ExperimentContextDep, request: Request):
    """Reply to `steeredChatMessages` with `features` added and to `defaultChatMessages` without,
    same seed; with `stream: true`, `text/event-stream` of partial results as tokens come."""
    plans = await _chat_plans(ctx, body)
    settings = body.model_dump(exclude={"modelId", "features", "defaultChatMessages", "steeredChatMessages"})
    if body.stream:
        first = await steer_stream_query(ctx, plans[0][0])  # bad input answers 4xx before the first byte
        return StreamingResponse(_chat_events(ctx, body, plans, settings, first), media_type="text/event-stream", headers=SSE_HEADERS)
    result = SteerChatResult(modelId=body.modelId, settings=settings)
    for steer, messages in plans:
        done = await steer_query(ctx, steer)
        for completion in done.outputs:
            setattr(result, completion.type, _chat_output(steer.prompt, messages, completion.text))
    return await share(request, ctx.store, "chat", body, result)


async def _chat_events(ctx, body: SteerChatRequest, plans, settings: dict, first_lines) -> AsyncIterator[bytes]:
    result: dict[str, Any] = {"modelId": body.modelId, "STEERED": None, "DEFAULT": None, "settings": settings}
    for n, (request, messages) in enumerate(plans):
        lines = first_lines if n == 0 else await steer_stream_query(ctx, request)
        async for line in lines:
            event = json.loads(line)
            if "error" in event:
                yield sse(event)
                return
            if "type" in event:
                result[event["type"]] = _chat_output(request.prompt, messages, event["text"]).model_dump()
                yield sse(result)


# ---------------------------------------------------------------------------- lists


def _list_id(value: str | int) -> int:
    try:
        list_id = int(value)
    except ValueError:
        raise NotFoundError(f"no list {value!r}") from None
    if not 0 < list_id < 2**63:
        raise NotFoundError(f"no list {value!r}")
    return list_id


def _summary(record) -> NPListSummary:
    return NPListSummary(id=str(record.id), name=record.name, description=record.description, public=record.public, url=list_url(record.id))


def _neuron(item) -> NPListNeuron:
    return NPListNeuron(modelId=item.model_id, layer=item.source, index=str(item.latent_index), description=item.note,
                        url=feature_url(item.model_id, item.source, item.latent_index))  # fmt: skip


def _readable_list(store: Store, value: str | int, user):
    record = store.get_list(_list_id(value))
    if record is None or not can_read_list(record, user):
        raise NotFoundError(f"no list {value!r}")
    return record


@router.post("/api/list/list", response_model=list[NPListSummary], responses=ERRORS, summary="Your lists (Neuronpedia's shape)")
def my_lists(store: StoreDep, user: CurrentUser) -> list[NPListSummary]:
    return [_summary(r) for r in store.lists_of(user.id)]


@router.post("/api/list/get", response_model=NPListFull, responses=ERRORS, summary="A list and its latents (Neuronpedia's shape)",
             openapi_extra=READ_EXTRA)  # fmt: skip
def get_list(body: ListIdIn, store: StoreDep, user: OptionalUser) -> NPListFull:
    record = _readable_list(store, body.listId, user)
    return NPListFull(**_summary(record).model_dump(), neurons=[_neuron(i) for i in store.list_items(record.id)])


@router.post("/api/list/add-features", response_model=list[NPListNeuron], responses=ERRORS, summary="Add latents to your list")
def add_features(body: AddFeaturesIn, store: StoreDep, user: CurrentUser) -> list[NPListNeuron]:
    """Add `featuresToAdd` to list `listId` (yours); answers the list's latents now."""
    record = _readable_list(store, body.listId, user)
    if record.owner_id != user.id:
        raise HTTPException(403, "only the list's owner may change it")
    for feature in body.featuresToAdd:
        source = source_record(store, feature.modelId, feature.layer)
        store.add_list_item(record.id, source.id, feature.index, feature.description)
    return [_neuron(i) for i in store.list_items(record.id)]


# ---------------------------------------------------------------------------- quick-list


def _quick_items(raw: str) -> list[dict]:
    try:
        items = json.loads(raw)
    except ValueError:
        raise HTTPException(422, "features must be a JSON list of {modelId, layer, index}") from None
    ok = isinstance(items, list) and len(items) <= MAX_QUICK_ITEMS and all(
        isinstance(i, dict) and isinstance(i.get("modelId"), str) and isinstance(i.get("layer"), str) and str(i.get("index", "")).isdigit()
        for i in items
    )  # fmt: skip
    if not ok:
        raise HTTPException(422, f"features must be a JSON list of at most {MAX_QUICK_ITEMS} {{modelId, layer, index}} objects")
    return items


def quick_list_data(store: Store, name: str, raw: str) -> QuickListPage:
    """Each latent of the URL, with its best explanation where the atlas has it."""
    out = []
    for item in _quick_items(raw):
        model, layer, index = item["modelId"], item["layer"], int(str(item["index"]))
        try:
            record = source_record(store, model, layer)
        except (NotFoundError, ValueError):
            record = None
        found = record is not None and index < record.d_sae
        explanation = store.top_explanations(record.id, [index]).get(index) if found else None
        out.append(QuickListItem(modelId=model, layer=layer, index=str(index), found=found, explanation=explanation,
                                 url=feature_url(model, layer, index) if found else None))  # fmt: skip
    return QuickListPage(name=name, features=out)


MAX_QUICK_ITEMS = 500
QuickName = Annotated[str, Query(max_length=500)]
QuickFeatures = Annotated[str, Query(max_length=200_000, description="JSON list of {modelId, layer, index}")]


@router.get("/api/quick-list", response_model=QuickListPage, summary="The latents of a quick-list URL")
def quick_list_json(store: StoreDep, features: QuickFeatures = "[]", name: QuickName = "temporary_list") -> QuickListPage:
    return quick_list_data(store, name, features)


@router.get("/quick-list", response_class=HTMLResponse, include_in_schema=False)
def quick_list_page(request: Request, store: StoreDep, features: QuickFeatures = "[]", name: QuickName = "temporary_list") -> HTMLResponse:
    """A temporary list from its URL (SAELens' `get_neuronpedia_quick_list`); nothing is stored."""
    page = quick_list_data(store, name, features)
    return render_page(request, "quick_list.html", page, with_query("/api/quick-list", {"name": name, "features": features}))


# ---------------------------------------------------------------------------- shared steering


def shared_steer_data(store: Store, public_id: str) -> SharedSteer:
    record = get_steer(store, public_id)
    result = {**record.data, "id": record.public_id, "shareUrl": steer_url(record.public_id)}
    return SharedSteer(id=record.public_id, modelId=record.model_id, kind=record.kind, result=result,
                       created_at=record.created_at.isoformat(), url=steer_url(record.public_id))  # fmt: skip


SteerId = Annotated[str, Path(max_length=64)]


@router.get("/api/steer/{steer_id}", response_model=SharedSteer, responses={404: ERRORS[404]}, summary="A shared steering result")
def shared_steer_json(steer_id: SteerId, store: StoreDep) -> SharedSteer:
    return shared_steer_data(store, steer_id)


@router.get("/steer/{steer_id}", response_class=HTMLResponse, include_in_schema=False)
def shared_steer_page(request: Request, steer_id: SteerId, store: StoreDep) -> HTMLResponse:
    """A kept steering answer: its settings, features and both outputs."""
    page = shared_steer_data(store, steer_id)
    return render_page(request, "steer.html", page, f"/api/steer/{page.id}")
