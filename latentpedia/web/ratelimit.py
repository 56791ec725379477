"""Per-client rate limits and prompt limits of the live-inference routes.

A token bucket per client IP: each request takes one token; a bucket holds at most `burst`
tokens and refills at `per_minute / 60` tokens a second. An empty bucket answers 429 with
`Retry-After` (seconds until a token is back). Configure with `LATENTPEDIA_LIVE_RATE`
(requests per minute, default 60; 0 turns the limit off) and `LATENTPEDIA_LIVE_BURST`
(default 10), or set `app.state.rate_limiter` / `app.state.prompt_limits`.

Clients are told apart by `client_address(request)`: the socket's peer, or behind a trusted
reverse proxy the address it forwards (web/proxies.py); an `X-Forwarded-For` header from
anyone else is ignored, so a client cannot pick a fresh bucket per request.

Prompt limits: `LATENTPEDIA_LIVE_MAX_CHARS` (default 4,000 characters) and
`LATENTPEDIA_LIVE_MAX_TOKENS` (default 512 tokens, BOS included); longer text -> 413 with the
limit in `detail`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request


class RateLimiter:
    """Token buckets keyed by client (an IP address)."""

    def __init__(self, per_minute: float = 60.0, burst: int = 10, *, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = max(int(burst), 1)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last update)
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> RateLimiter:
        return cls(float(os.environ.get("LATENTPEDIA_LIVE_RATE", 60)), int(os.environ.get("LATENTPEDIA_LIVE_BURST", 10)))

    def acquire(self, client: str) -> float:
        """Take a token for `client`: 0.0 if allowed, else the seconds to wait for one."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                self._forget_full(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (keeps memory bounded under many clients)."""
        if len(self._buckets) < 10_000:
            return
        refill = self.burst / self.rate
        self._buckets = {c: (t, last) for c, (t, last) in self._buckets.items() if now - last < refill}


@dataclass(frozen=True)
class PromptLimits:
    max_chars: int = 4000
    max_tokens: int = 512

    @classmethod
    def from_env(cls) -> PromptLimits:
        env = os.environ.get
        return cls(int(env("LATENTPEDIA_LIVE_MAX_CHARS", cls.max_chars)), int(env("LATENTPEDIA_LIVE_MAX_TOKENS", cls.max_tokens)))


class PromptTooLongError(HTTPException):
    """A prompt over the character or token limit (HTTP 413)."""

    def __init__(self, detail: str):
        super().__init__(status_code=413, detail=detail)


def _state(request: Request, name: str, factory):
    value = getattr(request.app.state, name, None)
    if value is None:
        value = factory()
        setattr(request.app.state, name, value)
    return value


def client_address(request: Request) -> str:
    """The caller's address, the key of its rate-limit buckets (see the module docstring)."""
    return request.client.host if request.client else "unknown"


def rate_limited(request: Request) -> None:
    """Dependency of every live route: one token of the caller's bucket, or 429."""
    limiter: RateLimiter = _state(request, "rate_limiter", RateLimiter.from_env)
    client = client_address(request)
    wait = limiter.acquire(client)
    if wait > 0:
        raise HTTPException(
            status_code=429,
            detail=f"too many live requests from {client}: the limit is {limiter.rate * 60:g} per minute (bursts of {limiter.burst}); retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )


def prompt_limits(request: Request) -> PromptLimits:
    return _state(request, "prompt_limits", PromptLimits.from_env)


RateLimitDep = Depends(rate_limited)
PromptLimitsDep = Annotated[PromptLimits, Depends(prompt_limits)]


def check_text(text: str, limits: PromptLimits) -> str:
    """`text` if it is usable: not blank (422), valid Unicode (422), within `max_chars` (413)."""
    if not text or not text.strip():
        raise HTTPException(status_code=422, detail="text is empty: type some text to run the model on")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(status_code=422, detail="text is not valid Unicode (it holds unpaired surrogates)") from None
    if len(text) > limits.max_chars:
        raise PromptTooLongError(f"text is {len(text):,} characters long; the limit is {limits.max_chars:,} characters")
    return text


def check_tokens(n_tokens: int, limits: PromptLimits) -> None:
    """413 if the tokenized text (BOS included) is over `max_tokens`."""
    if n_tokens > limits.max_tokens:
        raise PromptTooLongError(f"text is {n_tokens:,} tokens long; the limit is {limits.max_tokens:,} tokens")


def compute_route(*, too_long: str, invalid: str) -> dict:
    """Decorator options of an anonymous compute route: the spec's compute marker, the rate limit,
    and the error table every live route shares (`too_long` / `invalid` describe its 413 / 422)."""
    from latentpedia.web.compute import COMPUTE_EXTRA
    from latentpedia.web.schemas import ErrorBody

    errors = {
        404: {"model": ErrorBody, "description": "unknown model, source or latent"},
        413: {"model": ErrorBody, "description": too_long},
        422: {"model": ErrorBody, "description": invalid},
        429: {"model": ErrorBody, "description": "rate limit: retry after Retry-After seconds"},
        503: {"model": ErrorBody, "description": "live inference is busy"},
        504: {"model": ErrorBody, "description": "the request took too long"},
    }
    return dict(responses=errors, openapi_extra=COMPUTE_EXTRA, dependencies=[RateLimitDep])
