"""Feature families and ways in: `/{model}/{source}/{index}/family` (+ `/api/family/...`), the
source's match summaries (`/api/matches/{model}/{source}`: universality), and `/random`
(+ `/api/random`): a random latent, `explained=1` for one with an explanation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from latentpedia.store import families
from latentpedia.web.deps import StoreDep
from latentpedia.web.family_schemas import FamilyPage, MatchSummary, RandomLatent
from latentpedia.web.pages.common import NotFoundError, feature_api_url, feature_url, source_record, with_query
from latentpedia.web.pages.families import family_page_data, match_summaries
from latentpedia.web.render import render_page
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["families"])
NOT_FOUND = {404: {"model": ErrorBody, "description": "unknown model, source or latent; or no latent to pick"}}
Explained = Annotated[bool, Query(description="only latents with at least one explanation")]


@router.get("/api/family/{model}/{source}/{index}", response_model=FamilyPage, responses=NOT_FOUND, summary="A latent's family across SAE widths and depth")
def family_json(model: str, source: str, index: int, store: StoreDep) -> FamilyPage:
    return family_page_data(store, model, source, index)


@router.get("/{model}/{source}/{index}/family", response_class=HTMLResponse, include_in_schema=False)
def family_html(request: Request, model: str, source: str, index: int, store: StoreDep) -> HTMLResponse:
    page = family_page_data(store, model, source, index)
    return render_page(request, "family.html", page, page.api_url)


@router.get("/api/matches/{model}/{source}", response_model=list[MatchSummary], responses=NOT_FOUND, summary="A source's neighbour and match pairs (universality)")
def matches_json(model: str, source: str, store: StoreDep) -> list[MatchSummary]:
    return match_summaries(store, model, source)


def _random(store, explained: bool, model: str | None) -> RandomLatent:
    pick = families.random_latent(store, explained=explained, model_id=model)
    if pick is None:
        raise NotFoundError("the atlas has no explained latent yet (run `latentpedia explain`)" if explained else "the atlas has no built latent")
    model_id, source, index = pick
    record = source_record(store, model_id, source)
    text = store.top_explanations(record.id, [index]).get(index)
    return RandomLatent(modelId=model_id, layer=source, index=index, explanation=text,
                        url=feature_url(model_id, source, index), api_url=feature_api_url(model_id, source, index))  # fmt: skip


@router.get("/api/random", response_model=RandomLatent, responses=NOT_FOUND, summary="A random latent (explained=true: one with an explanation)")
def random_json(store: StoreDep, explained: Explained = False, model: str | None = None) -> RandomLatent:
    return _random(store, explained, model)


@router.get("/random", response_class=RedirectResponse, include_in_schema=False)
def random_html(store: StoreDep, explained: Explained = False, model: str | None = None) -> RedirectResponse:
    return RedirectResponse(_random(store, explained, model).url, status_code=307)


def random_explained_url(model: str | None = None) -> str:
    return with_query("/random", {"explained": 1, "model": model})
