"""`create_app(db_url)`: the web atlas as a FastAPI application.

    app = create_app("sqlite:///atlas.db")
    uvicorn.run(app, host="127.0.0.1", port=8000)

The store is opened once in the lifespan and closed on shutdown. `model_loader` (a callable
returning a loaded model) is kept on `app.state` for the live-inference routes; nothing is
loaded until one needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from latentpedia.store.api import Store
from latentpedia.web.pages import NotFoundError
from latentpedia.web.render import STATIC_DIR, make_templates
from latentpedia.web.routers import features, home, sources

ModelLoader = Callable[[], Any]
# In matching order: /api/home must be matched before the /{model}/{source} page.
ROUTERS = (home.router, features.router, sources.router)


def create_app(db_url: str, *, model_loader: ModelLoader | None = None) -> FastAPI:
    """The web atlas serving the store at `db_url` (SQLAlchemy URL)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = Store.open(db_url)
        try:
            yield
        finally:
            app.state.store.close()

    app = FastAPI(
        title="latentpedia",
        summary="An offline atlas of what the neurons and SAE latents of language models do.",
        lifespan=lifespan,
    )
    app.state.templates = make_templates()
    app.state.token_text = {}
    app.state.model_loader = model_loader
    app.add_exception_handler(NotFoundError, _not_found)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return not request.url.path.startswith("/api/") and "text/html" in accept


async def _not_found(request: Request, exc: Exception) -> Response:
    """404: a JSON `{"detail": ...}`, or an HTML page for browsers on HTML routes."""
    if _wants_html(request):
        templates = request.app.state.templates
        return templates.TemplateResponse(request, "error.html", {"message": str(exc)}, status_code=404)
    return JSONResponse({"detail": str(exc)}, status_code=404)
