"""`/{model}/{source}/{index}` and `/api/feature/{model}/{source}/{index}`: a latent's dashboard."""

from __future__ import annotations

import random

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from latentpedia.web.deps import StoreDep, token_text_for
from latentpedia.web.featurehtml import feature_html as feature_html_cache
from latentpedia.web.featurejson import feature_json as feature_json_cache
from latentpedia.web.pages.common import feature_url, source_record
from latentpedia.web.render import render_page
from latentpedia.web.schemas import ErrorBody, FeaturePage

router = APIRouter(tags=["atlas"])
NOT_FOUND = {404: {"model": ErrorBody, "description": "unknown model, source or latent"}}


@router.get("/api/feature/{model}/{source}/{index}", response_model=FeaturePage, responses=NOT_FOUND, summary="A latent's dashboard")
async def feature_json(request: Request, model: str, source: str, index: int) -> Response:
    """`FeaturePage` as JSON (`feature_page_data`, the HTML page's data), served from cached
    bytes with the community fields spliced in (web/featurejson.py). Runs on the
    event loop: a cached body costs well under a millisecond, less than a hop to the thread pool."""
    state = request.app.state
    body = feature_json_cache(state).body(state.store, token_text_for(state.store, state.token_text, model), model, source, index)
    return Response(body, media_type="application/json")


@router.get("/{model}/{source}/random", response_class=RedirectResponse, include_in_schema=False)
def random_feature(model: str, source: str, store: StoreDep) -> RedirectResponse:
    """A redirect to a random latent of the source."""
    record = source_record(store, model, source)
    return RedirectResponse(feature_url(model, source, random.randrange(max(record.d_sae, 1))), status_code=307)


EMBED_HEADERS = {"content-security-policy": "frame-ancestors *"}  # embeds may be framed by any site (web/auth.py)


@router.get("/{model}/{source}/{index}", response_class=HTMLResponse, include_in_schema=False)
async def feature_html(request: Request, model: str, source: str, index: int, embed: bool = False) -> HTMLResponse:
    """The dashboard; `?embed=true` (Neuronpedia's): its panels and examples alone, no header,
    footer or forms, framable by other sites. The examples and panels come from the HTML cached
    per latent and build, the rest is rendered per request (web/featurehtml.py). Runs on the
    event loop like the JSON: a cached page costs about a millisecond, less than the thread
    pool's hops (one per dependency) cost under many readers."""
    state = request.app.state
    text = token_text_for(state.store, state.token_text, model)
    page, parts = feature_html_cache(state).page(state.store, text, state.templates.env, model, source, index)
    response = render_page(request, "feature.html", page, page.api_url, embed=embed, parts=parts)
    if embed:
        response.headers.update(EMBED_HEADERS)
    return response
