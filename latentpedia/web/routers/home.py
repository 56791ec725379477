"""`/` and `/api/home`: what the atlas holds."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from latentpedia.web.deps import StoreDep
from latentpedia.web.pages import home_page_data
from latentpedia.web.render import render_page
from latentpedia.web.schemas import HomePage

router = APIRouter(tags=["atlas"])


@router.get("/api/home", response_model=HomePage, summary="Models, sources and recent jobs")
def home_json(store: StoreDep) -> HomePage:
    return home_page_data(store)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home_html(request: Request, store: StoreDep) -> HTMLResponse:
    return render_page(request, "home.html", home_page_data(store), "/api/home")
