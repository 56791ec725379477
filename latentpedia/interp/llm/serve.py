"""`latentpedia llm-serve`: a local model behind the OpenAI API, so the LLM path works offline.

    app = create_llm_app(LocalLM(load_model("smollm2-135m")), api_key=None)

Routes (OpenAI's shapes): `GET /v1/models`, `POST /v1/chat/completions` (optionally with
`logprobs`/`top_logprobs`), `POST /v1/completions` (with `echo` + `logprobs` the prompt's tokens
come back with their log-probabilities; `max_tokens: 0` generates nothing). With `api_key` set,
requests need `Authorization: Bearer <key>` (401 otherwise). The model runs in FastAPI's thread
pool, one request at a time; bad requests are 400s with a message.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from latentpedia.errors import LatentpediaError
from latentpedia.interp.llm.local import LocalLM


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=256, ge=0, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=0, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    seed: int | None = None


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = Field(default=16, ge=0, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int | None = None


def create_llm_app(lm: LocalLM, *, api_key: str | None = None) -> FastAPI:
    """The OpenAI-compatible app serving `lm`."""
    app = FastAPI(title="latentpedia llm-serve", summary=f"{lm.name} over the OpenAI API")

    def check_key(authorization: Annotated[str | None, Header()] = None) -> None:
        if api_key and authorization != f"Bearer {api_key}":
            raise HTTPException(401, "invalid or missing API key (send Authorization: Bearer <key>)")

    auth = [Depends(check_key)]

    @app.get("/v1/models", dependencies=auth)
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": lm.name, "object": "model", "created": int(time.time()),
                                            "owned_by": "latentpedia"}]}  # fmt: skip

    @app.post("/v1/chat/completions", dependencies=auth)
    def chat(body: ChatRequest) -> dict[str, Any]:
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        messages = [m.model_dump() for m in body.messages]
        return _run(lambda: lm.chat(messages, max_tokens=max_tokens or 0, temperature=body.temperature,
                                    logprobs=body.logprobs, top_logprobs=body.top_logprobs, seed=body.seed))  # fmt: skip

    @app.post("/v1/completions", dependencies=auth)
    def completions(body: CompletionRequest) -> dict[str, Any]:
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise HTTPException(400, "send one prompt per request")
            prompt = prompt[0]
        return _run(lambda: lm.complete(prompt, max_tokens=body.max_tokens, temperature=body.temperature,
                                        echo=body.echo, logprobs=body.logprobs, seed=body.seed))  # fmt: skip

    return app


def _run(fn: Any) -> dict[str, Any]:
    try:
        return fn()
    except LatentpediaError as err:
        raise HTTPException(400, str(err)) from err
