"""Experiments on a model: `POST /api/steer` (+ `/api/steer/stream`, NDJSON), `POST /api/ablate`,
`POST /api/patch`, `POST /api/logit-lens`, `POST /api/dla`, and the `/experiments` page
(activation patching heatmap and logit lens, rendered on the server from query parameters).

Anonymous compute routes (`x-latentpedia-compute` in the OpenAPI spec), rate limited like the
other live routes; the torch work runs on the live worker thread (web/live.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from latentpedia.experiments.registry import EXPERIMENTS
from latentpedia.web import experiment_schemas as S
from latentpedia.web.compute import COMPUTE_EXTRA
from latentpedia.web.deps import StoreDep, TokenTextDep
from latentpedia.web.experiment_queries import (
    ExperimentContext,
    ablate_query,
    dla_query,
    lens_query,
    patch_query,
    steer_query,
    steer_stream_query,
)
from latentpedia.web.live import LiveDep
from latentpedia.web.np_steer import share, steer_stream_response
from latentpedia.web.pages.common import NotFoundError, with_query
from latentpedia.web.ratelimit import PromptLimitsDep, RateLimitDep, compute_route
from latentpedia.web.render import render_page

router = APIRouter(tags=["experiments"])
COMPUTE = compute_route(too_long="prompt over the character or token limit", invalid="invalid input: bad hook, strength, token, positions...")


def experiment_context(store: StoreDep, live: LiveDep, limits: PromptLimitsDep, texts: TokenTextDep) -> ExperimentContext:
    return ExperimentContext(store, live, limits, texts)


ContextDep = Annotated[ExperimentContext, Depends(experiment_context)]


@router.post("/api/steer", response_model=S.SteerResult, summary="Steered vs default completions", **COMPUTE)
async def steer_route(body: S.SteerRequest, ctx: ContextDep, request: Request) -> S.SteerResult | StreamingResponse:
    """Generate from `prompt` with `features` (decoder directions) and/or raw `vectors` added at
    their hooks, and without, with the same seed (Neuronpedia's request shape). `stream: true`
    answers with Neuronpedia's event stream (text/event-stream) instead."""
    if body.stream:
        return await steer_stream_response(ctx, body)
    return await share(request, ctx.store, "completion", body, await steer_query(ctx, body))


@router.post(
    "/api/steer/stream", response_class=StreamingResponse, summary="Steering, tokens streamed as NDJSON", **COMPUTE
)
async def steer_stream_route(body: S.SteerRequest, ctx: ContextDep) -> StreamingResponse:
    """Like `/api/steer`, one JSON object per line as tokens are generated (steered and default
    interleaved): `{"type", "token", "token_str", "text"}`, then `{"type", "done": true, ...}`
    per completion and `{"event": "end"}`."""
    lines = await steer_stream_query(ctx, body)
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.post("/api/ablate", response_model=S.AblateResult, summary="Ablate a latent on a prompt", **COMPUTE)
async def ablate_route(body: S.AblateRequest, ctx: ContextDep) -> S.AblateResult:
    """Zero, mean or resample-ablate latent `index` of source `layer`; next-token loss and the
    target tokens' log-probabilities per position, before and after."""
    return await ablate_query(ctx, body)


@router.post("/api/patch", response_model=S.PatchResult, summary="Activation patching heatmap", **COMPUTE)
async def patch_route(body: S.PatchRequest, ctx: ContextDep) -> S.PatchResult:
    """Patch clean activations into the corrupted run per (layer, position) at `hook`, or one
    latent per position; score = normalised logit difference answer - foil (0 corrupted, 1 clean)."""
    return await patch_query(ctx, body)


@router.post("/api/logit-lens", response_model=S.LensResult, summary="Logit lens", **COMPUTE)
async def lens_route(body: S.LensRequest, ctx: ContextDep) -> S.LensResult:
    """Top next-token predictions read off each layer's residual stream at each position."""
    return await lens_query(ctx, body)


@router.post("/api/dla", response_model=S.DLAResult, summary="Direct logit attribution", **COMPUTE)
async def dla_route(body: S.DLARequest, ctx: ContextDep) -> S.DLAResult:
    """The target logit split over model components (no `layer`), over a source's active latents
    (`layer`), or one latent's contribution at every position (`layer` + `index`)."""
    return await dla_query(ctx, body)


# ---------------------------------------------------------------------------- the page


def heat_colour(value: float) -> str:
    """Background of a heatmap cell: white at 0, blue towards 1 (clean), red below 0."""
    v = max(-1.0, min(1.0, float(value)))
    if v >= 0:
        return f"rgb({round(255 - 200 * v)},{round(255 - 140 * v)},255)"
    return f"rgb(255,{round(255 + 170 * v)},{round(255 + 170 * v)})"


async def _maybe(model: type[BaseModel], params: dict[str, Any], run, ctx: ExperimentContext) -> tuple[Any, str | None]:
    """Run the query when the form was submitted; (result, error message)."""
    if not params.get("prompt") and not params.get("clean_prompt"):
        return None, None
    try:
        return await run(ctx, model.model_validate({k: v for k, v in params.items() if v not in (None, "")})), None
    except ValidationError as err:
        return None, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
    except (HTTPException, NotFoundError) as err:
        return None, str(getattr(err, "detail", err))


class ExperimentInfo(BaseModel):
    """One registered experiment (experiments/registry.py)."""

    name: str
    description: str
    cli_command: str
    api_route: str
    on_page: bool


class ExperimentsPage(BaseModel):
    """The /experiments page's data (its JSON twin is `GET /api/experiments` with the same query)."""

    experiments: list[ExperimentInfo]
    models: list[str]
    hooks: list[str]
    form: dict[str, Any]
    patch: S.PatchResult | None = None
    lens: S.LensResult | None = None
    error: str | None = None


async def experiments_page_data(ctx: ExperimentContext, form: dict[str, Any]) -> ExperimentsPage:
    models = [m.id for m in await run_in_threadpool(ctx.store.list_models)]
    form = {**form, "model": form.get("model") or (models[0] if models else "")}
    infos = [ExperimentInfo.model_validate(e, from_attributes=True) for e in EXPERIMENTS.values()]
    page = ExperimentsPage(experiments=infos, models=models, hooks=[h for h in S.PATCH_HOOKS if h != "latent"], form=form)
    if form["tool"] == "patch":
        keys = ("clean_prompt", "corrupted_prompt", "answer_token", "foil_token", "hook")
        page.patch, page.error = await _maybe(S.PatchRequest, {"modelId": form["model"], **{k: form[k] for k in keys}}, patch_query, ctx)
    elif form["tool"] == "lens":
        params = {"modelId": form["model"], "prompt": form["prompt"], "k": form["k"]}
        page.lens, page.error = await _maybe(S.LensRequest, params, lens_query, ctx)
    return page


def page_form(
    model: str | None = None,
    tool: Literal["patch", "lens"] = "patch",
    clean_prompt: str | None = None,
    corrupted_prompt: str | None = None,
    answer_token: str | None = None,
    foil_token: str | None = None,
    hook: str = "resid_pre",
    prompt: str | None = None,
    k: Annotated[int, Query(ge=1, le=20)] = 3,
) -> dict[str, Any]:
    return dict(model=model, tool=tool, clean_prompt=clean_prompt, corrupted_prompt=corrupted_prompt,
                answer_token=answer_token, foil_token=foil_token, hook=hook, prompt=prompt, k=k)  # fmt: skip


FormDep = Annotated[dict[str, Any], Depends(page_form)]
PAGE = dict(openapi_extra=COMPUTE_EXTRA, dependencies=[RateLimitDep])


@router.get("/api/experiments", response_model=ExperimentsPage, summary="The /experiments page's data", **PAGE)
async def experiments_json(ctx: ContextDep, form: FormDep) -> ExperimentsPage:
    """What the /experiments page shows for the same query: the form, and the patching heatmap
    or logit lens when the form is filled in."""
    return await experiments_page_data(ctx, form)


@router.get("/experiments", response_class=HTMLResponse, include_in_schema=False, **PAGE)
async def experiments_page(request: Request, ctx: ContextDep, form: FormDep) -> HTMLResponse:
    """Forms for activation patching and the logit lens; results rendered on the server."""
    page = await experiments_page_data(ctx, form)
    twin = with_query("/api/experiments", {k: v for k, v in form.items() if v not in (None, "")})
    return render_page(request, "experiments.html", page, twin, heat_colour=heat_colour)
