"""Typed dependencies of the route handlers (swap them in tests with `app.dependency_overrides`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from latentpedia.store.api import Store
from latentpedia.engine.tokens import TokenText


def get_store(request: Request) -> Store:
    """The store opened once by the app's lifespan."""
    return request.app.state.store


StoreDep = Annotated[Store, Depends(get_store)]


def get_token_text(request: Request) -> dict[str, TokenText]:
    """Per-model token decoders, built once per model and kept for the app's lifetime."""
    return request.app.state.token_text


def token_text_for(store: Store, cache: dict[str, TokenText], model: str) -> TokenText:
    """The decoder of `model`'s vocabulary (cached once the vocabulary exists: a model
    registered while serving gets its vocabulary a moment later)."""
    if model in cache:
        return cache[model]
    text = TokenText(store.get_vocab(model))
    if text.vocab:
        cache[model] = text
    return text


TokenTextDep = Annotated[dict[str, TokenText], Depends(get_token_text)]
