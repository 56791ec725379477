"""The lab: `/toy` (toy models of superposition, retrained from the page) with its twins
`GET /api/toy` (same query) and `POST /api/toy` (JSON body), and `/benchmarks` (every SAE of
the atlas, comparable) with `GET /api/benchmarks`.

Training a toy model is anonymous compute: the routes are rate limited like the live routes and
the torch work runs on the one torch worker (`app.state.live`), bounded by `ToyRequest`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from latentpedia.web.compute import COMPUTE_EXTRA
from latentpedia.web.deps import StoreDep
from latentpedia.web.lab_schemas import BenchmarksPage, ToyPage, ToyRequest, ToyResult
from latentpedia.web.live import LiveDep
from latentpedia.web.pages.common import with_query
from latentpedia.web.pages.lab import benchmark_charts, benchmarks_page_data, toy_charts, train_toy_result
from latentpedia.web.ratelimit import RateLimitDep, compute_route
from latentpedia.web.render import render_page

router = APIRouter(tags=["lab"])
COMPUTE = compute_route(too_long="not used by this route", invalid="invalid toy-model parameters (out of bounds, m >= n)")
PAGE = dict(openapi_extra=COMPUTE_EXTRA, dependencies=[RateLimitDep])
TOY_TIMEOUT = 60.0  # seconds: the largest allowed sweep takes ~10 s on 2 idle cores


async def train_on_worker(live, request: ToyRequest) -> ToyResult:
    return await live.run(None, lambda _model: train_toy_result(request), timeout=TOY_TIMEOUT)


@router.post("/api/toy", response_model=ToyResult, summary="Train a toy model of superposition", **COMPUTE)
async def toy_train(body: ToyRequest, live: LiveDep) -> ToyResult:
    """Train toy models (n features, m hidden dims, importance decay) over a sparsity sweep that
    includes `sparsity`; per model D*, D_i, feature norms and geometry; WᵀW of the asked one."""
    return await train_on_worker(live, body)


def toy_form(
    n_features: Annotated[int | None, Query()] = None,
    n_hidden: Annotated[int | None, Query()] = None,
    importance_decay: Annotated[float | None, Query()] = None,
    sparsity: Annotated[float | None, Query()] = None,
    steps: Annotated[int | None, Query()] = None,
    seed: Annotated[int | None, Query()] = None,
) -> dict:
    return {k: v for k, v in dict(n_features=n_features, n_hidden=n_hidden, importance_decay=importance_decay,
                                  sparsity=sparsity, steps=steps, seed=seed).items() if v is not None}


ToyFormDep = Annotated[dict, Depends(toy_form)]


async def toy_page_data(live, form: dict) -> ToyPage:
    """The form (defaults filled in) and its result; a bad form gives the message, no result."""
    try:
        request = ToyRequest.model_validate(form)
    except ValidationError as err:
        message = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in err.errors())
        return ToyPage(form=ToyRequest(), error=message)
    return ToyPage(form=request, result=await train_on_worker(live, request))


@router.get("/api/toy", response_model=ToyPage, summary="The /toy page's data", **PAGE)
async def toy_json(live: LiveDep, form: ToyFormDep) -> ToyPage:
    """What /toy shows for the same query: the form and the trained sweep."""
    return await toy_page_data(live, form)


@router.get("/toy", response_class=HTMLResponse, include_in_schema=False, **PAGE)
async def toy_page(request: Request, live: LiveDep, form: ToyFormDep) -> HTMLResponse:
    page = await toy_page_data(live, form)
    charts = toy_charts(page.result) if page.result else {}
    return render_page(request, "toy.html", page, with_query("/api/toy", form), charts=charts)


@router.get("/api/benchmarks", response_model=BenchmarksPage, summary="SAE benchmarks across the atlas")
def benchmarks_json(store: StoreDep) -> BenchmarksPage:
    """Every SAE source with L0 / EV / CE-loss recovered and, where `latentpedia saebench` ran,
    first-letter absorption, sparse probing, auto-interp score and the seconds each took."""
    return benchmarks_page_data(store)


@router.get("/benchmarks", response_class=HTMLResponse, include_in_schema=False)
async def benchmarks_page(request: Request, store: StoreDep) -> HTMLResponse:
    page = await run_in_threadpool(benchmarks_page_data, store)
    return render_page(request, "benchmarks.html", page, "/api/benchmarks", charts=benchmark_charts(page))
