"""The torch worker (`engine.worker.LiveModels`) as the web app sees it: a typed dependency and
the HTTP answers to its errors (503 + Retry-After when busy, 504 when too slow)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from latentpedia.engine.worker import LiveBusyError, LiveConfig, LiveModels, LiveTimeoutError, store_model_loader

__all__ = ["LiveBusyError", "LiveConfig", "LiveDep", "LiveModels", "LiveTimeoutError", "add_live_error_handlers", "get_live", "store_model_loader"]


def get_live(request: Request) -> LiveModels:
    """The app's live-inference service."""
    return request.app.state.live


LiveDep = Annotated[LiveModels, Depends(get_live)]


def add_live_error_handlers(app: Any) -> None:
    """Answer LiveBusyError with 503 and LiveTimeoutError with 504, both with Retry-After (web.errors' body)."""
    from fastapi.responses import JSONResponse

    from latentpedia.web.errors import error_response

    async def busy(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(str(exc), 503, {"Retry-After": "1"})

    async def too_slow(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(str(exc), 504, {"Retry-After": "5"})

    app.add_exception_handler(LiveBusyError, busy)
    app.add_exception_handler(LiveTimeoutError, too_slow)
