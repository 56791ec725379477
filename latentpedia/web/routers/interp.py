"""Automatic interpretation from the web: generate an explanation for a latent, score one.

Writes, so they need a signed-in user; the LLM explainer and the LLM scorers also need an admin
(they spend the server's endpoint and credits) and an endpoint configured on the server
($LATENTPEDIA_LLM_BASE_URL / _MODEL / _KEY): users never make the server call a URL of theirs.
The explainer and scorer names come from the registries (interp/registry.py). Store reads and LLM
requests run in FastAPI's thread pool; every torch step (the embedding model) is handed to the
live torch worker (`app.state.live`). Failures of an endpoint are stored as error scores.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from latentpedia.engine.worker import LiveBusyError, LiveModels, LiveTimeoutError
from latentpedia.errors import LatentpediaError
from latentpedia.interp import registry
from latentpedia.interp.registry import EXPLAINERS, SCORERS, VARIANT_NAMES, TorchRunner
from latentpedia.store.accounts import UserRecord
from latentpedia.store.api import Store
from latentpedia.web.auth import CurrentUser
from latentpedia.web.community_schemas import ExplanationOut, LatentRef
from latentpedia.web.deps import StoreDep
from latentpedia.web.live import LiveDep
from latentpedia.web.pages.common import NotFoundError, source_record
from latentpedia.web.pages.community import explanation_out
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["interpretation"])
ExplainerName = Literal[tuple(EXPLAINERS)]  # type: ignore[valid-type]
VariantName = Literal[VARIANT_NAMES]  # type: ignore[valid-type]
ScorerName = Literal[tuple(SCORERS)]  # type: ignore[valid-type]
ERRORS = {
    400: {"model": ErrorBody, "description": "no LLM endpoint configured, or the latent cannot be explained"},
    401: {"model": ErrorBody, "description": "not signed in"},
    403: {"model": ErrorBody, "description": "LLM actions are for admins"},
    404: {"model": ErrorBody, "description": "unknown latent or explanation"},
}
WORKER_ERRORS = (LiveBusyError, LiveTimeoutError)  # answered 503 / 504 by the app


class GenerateIn(LatentRef):
    explainer: ExplainerName = "offline"
    variant: VariantName = Field("examples", description="LLM prompt variant")
    scorers: list[ScorerName] = Field(default_factory=lambda: ["embedding"], max_length=len(SCORERS))


class ScoreIn(BaseModel):
    explanation_id: int
    scorers: list[ScorerName] = Field(default_factory=lambda: ["embedding"], min_length=1, max_length=len(SCORERS))
    scorer: ScorerName | None = Field(None, description="one scorer (the page's form); overrides `scorers`")


def _llm_config(user: UserRecord, needed: bool):
    if not needed:
        return None
    if not user.is_admin:
        raise HTTPException(403, "the LLM explainer and LLM scorers are for admins")
    from latentpedia.interp.llm.client import LLMConfig

    try:
        return LLMConfig.resolve()
    except LatentpediaError as err:
        raise HTTPException(400, f"the server has no LLM endpoint configured: {err}") from err


def worker_runner(live: LiveModels, model_id: str) -> TorchRunner:
    """Runs a torch step on the live worker (with `model_id` loaded) from a thread-pool thread:
    that thread waits while the event loop awaits the worker."""
    loop = asyncio.get_running_loop()

    def run(fn: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(live.run(model_id, fn), loop).result()

    return run


@router.post("/api/explanation/generate", response_model=list[ExplanationOut], responses=ERRORS,
             summary="Generate (and score) an automatic explanation of a latent")  # fmt: skip
async def generate(body: GenerateIn, store: StoreDep, user: CurrentUser, live: LiveDep) -> list[ExplanationOut]:
    llm = _llm_config(user, registry.needs_llm(body.explainer, body.scorers))
    return await run_in_threadpool(_generate, store, body, llm, worker_runner(live, body.modelId))


def _generate(store: Store, body: GenerateIn, llm: Any, on_torch: TorchRunner) -> list[ExplanationOut]:
    from latentpedia.interp.api import explain_latent

    source = source_record(store, body.modelId, body.layer)
    if not 0 <= body.index < source.d_sae:
        raise NotFoundError(f"source {body.layer!r} has latents 0..{source.d_sae - 1}")
    try:
        errors = explain_latent(store, body.modelId, body.layer, body.index, explainer=body.explainer, variant=body.variant,
                                scorers=body.scorers, llm=llm, on_torch=on_torch)["errors"]  # fmt: skip
    except WORKER_ERRORS:
        raise
    except LatentpediaError as err:
        raise HTTPException(400, str(err)) from err
    found = [e for e in store.list_explanations(source.id, body.index) if e.author_id is None]
    if not found and errors:
        raise HTTPException(400, f"no explanation: {errors[0]}")
    return [explanation_out(e) for e in found]


@router.post("/api/explanation/score", response_model=ExplanationOut, responses=ERRORS,
             summary="Score an explanation beside a random baseline")  # fmt: skip
async def score(body: ScoreIn, store: StoreDep, user: CurrentUser, live: LiveDep) -> ExplanationOut:
    found = await run_in_threadpool(store.get_explanation, body.explanation_id)
    if found is None:
        raise NotFoundError(f"no explanation {body.explanation_id}")
    scorers = [body.scorer] if body.scorer else list(dict.fromkeys(body.scorers))
    llm = _llm_config(user, registry.needs_llm(None, scorers))
    return await run_in_threadpool(_score, store, found.id, scorers, llm, worker_runner(live, found.model_id))


def _score(store: Store, explanation_id: int, scorers: list[str], llm: Any, on_torch: TorchRunner) -> ExplanationOut:
    from latentpedia.interp.api import score_explanation

    try:
        score_explanation(store, explanation_id, scorers, llm=llm, on_torch=on_torch)
    except WORKER_ERRORS:
        raise
    except LatentpediaError as err:
        raise HTTPException(400, str(err)) from err
    return explanation_out(store.get_explanation(explanation_id))
