"""Who is calling: login sessions (cookie + CSRF token), API keys (`x-api-key`), roles.

Typed dependencies for route handlers:

    @router.post("/api/thing", dependencies=[Depends(require_user)])   # any signed-in user
    def make_thing(body: Thing, user: CurrentUser) -> ...              # the user, or 401
    def maybe(user: OptionalUser) -> ...                               # the user or None
    def wipe(user: AdminUser) -> ...                                   # admins only, else 403

A write (any method but GET/HEAD/OPTIONS) with the session cookie must carry the session's
CSRF token, in the `x-csrf-token` header or the `csrf_token` form field, else 403. API-key
callers need no CSRF token (a browser never sends the key on its own). Anonymous callers of
a route that needs a user get 401; users without the role get 403.

Routes that only compute (live activations, search-all, steering) and are open to anonymous
callers are declared with `ratelimit.compute_route(...)` (the `x-latentpedia-compute` marker of
web/compute.py); the security test skips those and checks that every other write route refuses
anonymous callers. Logins are refused unless posted from this server's own origin.

Text no database can store (a NUL character, a lone surrogate), anywhere in a path, a query or
a body, is refused by the store (store/textcheck.py) and answered with 422 (web/badinput.py).
Behind a reverse proxy, client addresses come from web/proxies.py (trusted proxies only).

Private atlases (`create_app(..., private=True)` or LATENTPEDIA_PRIVATE=1) refuse anonymous
reads too (401), except the login page, its API and static files.
"""

from __future__ import annotations

import os
from html import escape
from typing import Annotated, Any

from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from latentpedia import security
from latentpedia.store.accounts import UserRecord
from latentpedia.web.badinput import install_bad_input_handling, problem_response
from latentpedia.web.errors import error_response

LOGIN: dict[str, Any] = {"openapi_extra": {"x-latentpedia-login": True}}  # the only anonymous writes
SESSION_COOKIE = "latentpedia_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PRIVATE_ENV = "LATENTPEDIA_PRIVATE"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="an API key from `latentpedia user key NAME` or /account")
session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="a login session (writes also need the x-csrf-token header)")


def private_from_env() -> bool:
    return os.environ.get(PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class Viewer:
    """The caller as the request sees it: a user (or None), how they signed in, their CSRF token."""

    def __init__(self, user: UserRecord | None, via: str | None = None, csrf_token: str | None = None):
        self.user, self.via, self.csrf_token = user, via, csrf_token


def viewer(request: Request) -> Viewer:
    """Resolve (once per request) who is calling; 401 for an unknown or revoked API key.

    Also a template global: `{% set me = viewer(request) %}`."""
    cached = getattr(request.state, "viewer", None)
    if cached is not None:
        return cached
    store = request.app.state.store
    key = request.headers.get("x-api-key")
    if key:
        user = store.api_key_user(key)
        if user is None:
            raise HTTPException(401, "invalid or revoked API key")
        found = Viewer(user, "key")
    else:
        token = request.cookies.get(SESSION_COOKIE)
        session = store.session_user(token) if token else None
        found = Viewer(*session[:1], "session", session[1]) if session else Viewer(None)
    request.state.viewer = found
    return found


def _resolved_viewer(
    request: Request,
    _key: Annotated[str | None, Security(api_key_header)] = None,
    _cookie: Annotated[str | None, Security(session_cookie)] = None,
) -> Viewer:
    """`viewer` as a sync dependency, so its database lookups run in the thread pool."""
    return viewer(request)


async def _csrf_checked(request: Request, found: Viewer) -> Viewer:
    """`found`, after checking a cookie-authenticated write's CSRF token (403 if wrong)."""
    if found.via != "session" or request.method in SAFE_METHODS:
        return found
    sent = request.headers.get(CSRF_HEADER)
    if not sent and request.headers.get("content-type", "").startswith(FORM_TYPES):
        sent = (await request.form()).get(CSRF_FIELD)
    if not isinstance(sent, str) or not security.same(sent, found.csrf_token or ""):
        raise HTTPException(403, "missing or wrong CSRF token (send the x-csrf-token header or the csrf_token field)")
    return found


async def optional_user(request: Request, found: Annotated[Viewer, Depends(_resolved_viewer)]) -> UserRecord | None:
    """The signed-in user, or None for anonymous callers (writes: CSRF-checked)."""
    return (await _csrf_checked(request, found)).user


async def require_user(user: Annotated[UserRecord | None, Depends(optional_user)]) -> UserRecord:
    """The signed-in user; 401 for anonymous callers."""
    if user is None:
        raise HTTPException(401, "sign in first: log in at /login, or send an API key as x-api-key",
                            headers={"WWW-Authenticate": "x-api-key"})  # fmt: skip
    return user


async def require_admin(user: Annotated[UserRecord, Depends(require_user)]) -> UserRecord:
    """The signed-in admin; 403 for other users."""
    if not user.is_admin:
        raise HTTPException(403, "admins only")
    return user


OptionalUser = Annotated[UserRecord | None, Depends(optional_user)]
CurrentUser = Annotated[UserRecord, Depends(require_user)]
AdminUser = Annotated[UserRecord, Depends(require_admin)]


def is_private(request: Request) -> bool:
    return bool(getattr(request.app.state, "private", False))


PUBLIC_PREFIXES = ("/static/", "/login", "/api/login", "/favicon")


class PrivateAtlas:
    """ASGI middleware of a private atlas: anonymous requests get 401 (the login page and
    static files excepted; browsers asking for HTML are sent to /login instead)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            found = await run_in_threadpool(viewer, request)
        except HTTPException as err:
            found, detail = Viewer(None), err.detail
        else:
            detail = "this atlas is private: log in at /login, or send an API key as x-api-key"
        if found.user is None:
            await _refusal(request, str(detail))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _refusal(request: Request, detail: str) -> Response:
    """401: JSON `{"error", "detail"}` (web/errors.py), or for browsers a short page linking to the login form."""
    path = request.url.path
    if "text/html" in request.headers.get("accept", "") and not path.startswith("/api/"):
        login = "/login?" + urlencode({"next": path})
        body = f'<!doctype html><title>log in</title><p>{escape(detail)} <a href="{escape(login)}">Log in</a></p>'
        return HTMLResponse(body, 401)
    return error_response(detail, 401)


def safe_viewer(request: Request) -> Viewer:
    """`viewer` for templates: anonymous instead of an error."""
    try:
        return viewer(request)
    except HTTPException:
        return Viewer(None)


def install_accounts(app: FastAPI, *, private: bool | None = None) -> None:
    """Wire accounts into `app`: community errors and bad input as 4xx, the `viewer`
    template global, the private-atlas middleware when `private` (default: $LATENTPEDIA_PRIVATE)
    and, when $LATENTPEDIA_TRUSTED_PROXIES names proxies, their client addresses."""
    from latentpedia.store.accounts import CommunityError
    from latentpedia.web.proxies import TrustedProxies, proxies_from_env

    app.state.private = private_from_env() if private is None else private
    app.state.trusted_proxies = proxies_from_env()
    app.state.templates.env.globals.update(viewer=safe_viewer)
    app.add_exception_handler(CommunityError, _community_error)
    if app.state.private:
        app.add_middleware(PrivateAtlas)
    install_bad_input_handling(app)  # unstorable text -> 422 from anywhere inside
    app.add_middleware(SecurityHeaders)
    if app.state.trusted_proxies:  # outermost: every layer sees the real client
        app.add_middleware(TrustedProxies, proxies=app.state.trusted_proxies)


SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),  # no clickjacking of vote / delete buttons
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # share-link tokens never leak in a Referer
]


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                if _framable(message.get("headers", [])):  # an embed (?embed=true) says who may frame it
                    names.add(b"x-frame-options")
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _framable(headers) -> bool:
    return any(k.lower() == b"content-security-policy" and b"frame-ancestors" in v for k, v in headers)


async def _community_error(request: Request, exc: Exception) -> Response:
    """A refused community request: JSON `{"error", "detail"}` with the error's status, or an error page."""
    return problem_response(request, str(exc), getattr(exc, "status", 400))
