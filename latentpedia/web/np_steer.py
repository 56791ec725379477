"""Steering answers the Neuronpedia way, shared by routers/experiments.py (`/api/steer`) and
routers/neuronpedia_compat.py (`/api/steer-chat`, `/steer/{id}`): the `text/event-stream` form
of a streamed answer, and keeping an answer for a signed-in caller under a share link."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from latentpedia import security
from latentpedia.store.api import Store
from latentpedia.store.steers import save_steer
from latentpedia.web import experiment_schemas as S
from latentpedia.web.auth import CSRF_HEADER, viewer
from latentpedia.web.experiment_queries import steer_stream_query

SSE_HEADERS = {"Cache-Control": "no-cache, no-transform"}


def sse(data: dict) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


async def steer_stream_response(ctx, request: S.SteerRequest) -> StreamingResponse:
    """`/api/steer` with `stream: true`: Neuronpedia's event stream, `data: {"STEERED": prompt +
    text so far, "DEFAULT": ...}` per generated token, the last one complete. Bad input is
    refused before the first byte (steer_stream_query), so it keeps its 4xx status."""
    lines = await steer_stream_query(ctx, request)

    async def events() -> AsyncIterator[bytes]:
        result: dict[str, Any] = {"modelId": request.modelId, "prompt": request.prompt, "STEERED": None, "DEFAULT": None}
        async for line in lines:
            event = json.loads(line)
            if "error" in event:
                yield sse(event)
                return
            if "type" in event:
                result[event["type"]] = request.prompt + event["text"]
                yield sse(result)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


def sharing_user(request: Request):
    """The caller a steering answer is kept for: an API key's user, or a signed-in browser that
    sent its CSRF token; None (nothing kept) for anyone else, writes need a signed-in caller."""
    try:
        found = viewer(request)
    except HTTPException:
        return None
    if found.via == "key" or (found.via == "session" and security.same(request.headers.get(CSRF_HEADER, ""), found.csrf_token or "")):
        return found.user
    return None


def steer_url(public_id: str) -> str:
    return f"/steer/{public_id}"


async def share(request: Request, store: Store, kind: str, body: Any, result: Any) -> Any:
    """Keep `result` (the answer to a steer or steer-chat `body`) for a signed-in caller: sets
    its `id` and `shareUrl` (left None for anonymous callers)."""
    user = await run_in_threadpool(sharing_user, request)
    if user is None:
        return result
    features = [f.model_dump(mode="json") for f in body.features]
    data = {**result.model_dump(mode="json", exclude={"id", "shareUrl"}), "features": features}
    result.id = await run_in_threadpool(save_steer, store, body.modelId, kind, data, user.id)
    result.shareUrl = str(request.base_url).rstrip("/") + steer_url(result.id)
    return result
