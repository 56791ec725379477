"""Latent maps: the page `/{model}/{source}/map` (a WebGL scatter of every latent, plotly.js) with
its JSON twin `GET /api/map/{model}/{source}`, the SVG thumbnail, a lasso's latents saved as a
list (`POST /api/map/{model}/{source}/list`, a logged-in user), Neuronpedia's `POST /api/umap`,
and plotly.js itself, read from the installed `plotly` package (`/vendor/plotly.min.js`: no CDN,
no copy in this repository; the page works offline)."""

from __future__ import annotations

from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from latentpedia.errors import NotFoundError
from latentpedia.web.auth import CurrentUser
from latentpedia.web.compute import READ_EXTRA
from latentpedia.web.deps import StoreDep
from latentpedia.web.map_schemas import MapListIn, MapListOut, MapPage, UmapPoint, UmapRequest
from latentpedia.web.pages.common import source_record
from latentpedia.web.pages.community import list_url
from latentpedia.web.pages.maps import map_page_data, thumbnail_svg, umap_points
from latentpedia.web.render import render_page
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["maps"])
NOT_FOUND = {404: {"model": ErrorBody, "description": "unknown model or source, or a source without a map"}}
Highlight = Annotated[int | None, Query(ge=0, description="a latent index to highlight")]


@lru_cache(maxsize=1)
def plotly_js_path() -> Path:
    """plotly.min.js inside the installed plotly wheel."""
    spec = find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError("the plotly package is not installed (pip install plotly)")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise NotFoundError(f"plotly.min.js is missing from the plotly package ({path})")
    return path


@router.get("/vendor/plotly.min.js", include_in_schema=False)
def plotly_js() -> FileResponse:
    return FileResponse(plotly_js_path(), media_type="text/javascript", headers={"cache-control": "public, max-age=86400"})


@router.get("/api/map/{model}/{source}", response_model=MapPage, responses=NOT_FOUND, summary="A source's latent map")
async def map_json(model: str, source: str, store: StoreDep, highlight: Highlight = None) -> MapPage:
    """Every latent of the source on its 2-D map (UMAP of decoder directions) as parallel arrays:
    `index`, `x`, `y`, `density`, best explanation `score` and text, `cluster`."""
    return await run_in_threadpool(map_page_data, store, model, source, highlight)


@router.get("/api/map/{model}/{source}/thumbnail.svg", responses=NOT_FOUND, summary="A source's map as a small SVG")
async def map_thumbnail(model: str, source: str, store: StoreDep) -> Response:
    svg = await run_in_threadpool(thumbnail_svg, store, model, source)
    return Response(svg, media_type="image/svg+xml", headers={"cache-control": "public, max-age=3600"})


@router.post("/api/map/{model}/{source}/list", response_model=MapListOut, responses=NOT_FOUND,
             summary="Save latents selected on the map as a new list")  # fmt: skip
async def map_list(model: str, source: str, body: MapListIn, store: StoreDep, user: CurrentUser) -> MapListOut:
    """A new (private) list of the user's holding exactly these latents of the source."""
    record = await run_in_threadpool(source_record, store, model, source)
    list_id = await run_in_threadpool(store.create_list_with_items, user.id, body.name, record.id, body.indices, body.description)
    return MapListOut(id=list_id, url=list_url(list_id), n_items=len(set(body.indices)))


@router.post("/api/umap", response_model=dict[str, list[UmapPoint]], responses=NOT_FOUND, summary="Map points of sources (Neuronpedia)",
             openapi_extra=READ_EXTRA)  # fmt: skip
async def umap_route(body: UmapRequest, store: StoreDep) -> dict[str, list[UmapPoint]]:
    """Neuronpedia's `/api/umap`: for each source id in `layers`, its latents with `umap_x`,
    `umap_y`, `umap_cluster`, `umap_log_feature_sparsity` and the best explanation."""
    return await run_in_threadpool(umap_points, store, body.modelId, body.layers)


@router.get("/{model}/{source}/map", response_class=HTMLResponse, include_in_schema=False)
async def map_html(request: Request, model: str, source: str, store: StoreDep, highlight: Highlight = None) -> HTMLResponse:
    page = await run_in_threadpool(map_page_data, store, model, source, highlight)
    return render_page(request, "map.html", page, page.api_url + (f"?highlight={highlight}" if highlight is not None else ""))
