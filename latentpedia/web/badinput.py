"""Bad input answered with a 4xx, never a 500.

- Text no database can store (a NUL character, a lone surrogate) is refused by the store, on
  every backend, with `store.textcheck.InvalidTextError`, wherever it comes from: a path, a
  query, a JSON body, a form. `UnstorableText` (ASGI middleware, outside every route and the
  feature-JSON fast path) answers it with 422 (an error page for browsers),
  unless the response had already started.
- A JSON body must be valid Unicode: a lone surrogate (a `\\ud800` escape without its pair),
  which no database, tokenizer or response can encode, is refused by `UnicodeJson` (ASGI
  middleware) with 422 naming the field, before any route sees the body.
- A request the schema refuses is 422 with FastAPI's usual `detail` list of errors, except that
  echoed input that is not valid Unicode is shown with backslash escapes instead of failing
  to encode; the same for the `detail` of any HTTPException.

Every JSON error body here is `web.errors.error_body`: `{"error": one line, "detail": ...}`.
"""

from __future__ import annotations

import json
from typing import Any

import math

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException
from sqlalchemy.exc import DataError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latentpedia.store.textcheck import InvalidTextError
from latentpedia.web.errors import error_response


def printable(value: Any) -> Any:
    """`value` with every string made encodable as UTF-8 (lone surrogates as `\\udXXX`) and
    every float JSON can carry (NaN and infinities echoed from a request body as text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def problem_response(request: Request, message: str, status: int) -> Response:
    """A refusal: JSON `error_body(message)`, or for browsers on HTML routes an error page."""
    if "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/"):
        templates = request.app.state.templates
        return templates.TemplateResponse(request, "problem.html", {"message": message, "status": status}, status_code=status)
    return error_response(message, status)


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a refused request (`detail` the list of errors, `error` them in one
    line), with echoed input made printable."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else [str(exc)]
    return error_response(printable(jsonable_encoder(errors)), 422)


async def printable_http_error(_request: Request, exc: Exception) -> Response:
    """An HTTPException's status, headers and `detail` (made encodable) as an error body."""
    status, headers = exc.status_code, getattr(exc, "headers", None)  # type: ignore[attr-defined]
    if not is_body_allowed_for_status_code(status):
        return Response(status_code=status, headers=headers)
    return error_response(printable(exc.detail), status, headers)  # type: ignore[attr-defined]


def invalid_unicode_field(body: bytes) -> str | None:
    """Where a JSON body holds a string that is not valid Unicode (a lone surrogate), or None
    (also for bodies that are not JSON: the route's own parsing answers those)."""
    if b"\\u" not in body:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return _first_unencodable(parsed, "body")


def _first_unencodable(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return where if printable(value) != value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        key_problem = isinstance(key, str) and printable(key) != key
        found = where if key_problem else _first_unencodable(item, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
        if found:
            return found
    return None


async def _whole_body(receive: Receive) -> tuple[bytes, list[Message]]:
    messages, chunks = [], []
    while True:
        message = await receive()
        messages.append(message)
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return b"".join(chunks), messages


class UnicodeJson:
    """ASGI middleware: 422 for a JSON body holding a lone surrogate (see the module docstring)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
        if scope["type"] != "http" or b"json" not in content_type.lower():
            await self.app(scope, receive, send)
            return
        body, messages = await _whole_body(receive)
        where = invalid_unicode_field(body)
        if where is not None:
            detail = f"{where}: the text contains an unpaired surrogate, which is not valid Unicode"
            await error_response(detail, 422)(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class UnstorableText:
    """ASGI middleware: InvalidTextError raised anywhere inside becomes a 422 answer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except InvalidTextError as err:
            if started:
                raise
            await problem_response(Request(scope, receive), str(err), err.status)(scope, receive, send)
        except (OverflowError, DataError):  # e.g. an id past 2**63, a name longer than its column
            if started:
                raise
            message = "a number or text in the request is out of the range the atlas can store"
            await problem_response(Request(scope, receive), message, 422)(scope, receive, send)


def install_bad_input_handling(app: FastAPI) -> None:
    """Answer unstorable text, JSON that is not valid Unicode and refused requests with 4xx
    whose text can be encoded (see the module docstring)."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, printable_http_error)
    app.add_middleware(UnstorableText)
    app.add_middleware(UnicodeJson)
