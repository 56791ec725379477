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
    """Answer LiveBusyError with 503 and LiveTimeoutError with 504, both with Retry-After (JSON `detail`)."""
    from fastapi.responses import JSONResponse

    async def busy(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    async def too_slow(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=504, headers={"Retry-After": "5"})

    app.add_exception_handler(LiveBusyError, busy)
    app.add_exception_handler(LiveTimeoutError, too_slow)
