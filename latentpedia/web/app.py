"""`create_app(db_url)`: the web atlas as a FastAPI application.

    app = create_app("sqlite:///atlas.db")
    uvicorn.run(app, host="127.0.0.1", port=8000)

The store is opened once in the lifespan and closed on shutdown. Live inference goes through
`app.state.live` (an `engine.worker.LiveModels`): `model_loader(model_id)` returns a loaded model
(default: reload it the way the store says it was built); nothing is loaded until a route needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from latentpedia.interp.registry import EXPLAINERS, SCORERS
from latentpedia.store.api import Store
from latentpedia.web.featurejson import FeatureJsonFastPath
from latentpedia.engine.worker import LiveConfig, LiveModels, store_model_loader
from latentpedia.web.errors import error_response
from latentpedia.web.live import add_live_error_handlers
from latentpedia.web.pages import NotFoundError
from latentpedia.web.render import STATIC_DIR, make_templates
from latentpedia.web.auth import install_accounts
from latentpedia.web.routers import accounts, community, exchange, experiments, explanation_search, families, features, graph, home, interp, jobs, lab, live, maps, neuronpedia_compat, play, search, sources

ModelLoader = Callable[[str], Any]
# In matching order: /api/home must be matched before the /{model}/{source} page.
ROUTERS = (home.router, jobs.router, accounts.router, community.router, interp.router, live.router, neuronpedia_compat.router, search.router, explanation_search.router, experiments.router, lab.router, graph.router, exchange.router, maps.router, families.router, play.router, features.router, sources.router)


def create_app(db_url: str, *, model_loader: ModelLoader | None = None, live_config: LiveConfig | None = None,
               private: bool | None = None) -> FastAPI:
    """The web atlas serving the store at `db_url` (SQLAlchemy URL); `private` refuses anonymous
    reads (default: $LATENTPEDIA_PRIVATE)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = Store.open(db_url)
        app.state.live = LiveModels(model_loader or store_model_loader(lambda: app.state.store), live_config)
        try:
            yield
        finally:
            app.state.live.close()
            app.state.store.close()

    app = FastAPI(
        title="latentpedia",
        summary="An offline atlas of what the neurons and SAE latents of language models do.",
        lifespan=lifespan,
    )
    app.state.templates = make_templates()
    app.state.templates.env.globals.update(community.TEMPLATE_GLOBALS)  # my_votes, my_lists
    app.state.templates.env.globals.update(interp_explainers=list(EXPLAINERS.values()), interp_scorers=list(SCORERS.values()))
    app.state.token_text = {}
    app.state.model_loader = model_loader
    app.add_exception_handler(NotFoundError, _not_found)
    add_live_error_handlers(app)
    app.add_middleware(FeatureJsonFastPath)  # innermost: inside the security and private-atlas middlewares
    install_accounts(app, private=private)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return not request.url.path.startswith("/api/") and "text/html" in accept


async def _not_found(request: Request, exc: Exception) -> Response:
    """404: JSON `{"error", "detail"}` (web/errors.py), or an HTML page for browsers on HTML routes."""
    if _wants_html(request):
        templates = request.app.state.templates
        return templates.TemplateResponse(request, "error.html", {"message": str(exc)}, status_code=404)
    return error_response(str(exc), 404)
