"""Accounts: log in and out, the account page, API keys, users (admins), deleting sources (admins).

Users are made by admins (`latentpedia user add`, or the form on /account); there is no open
sign-up. The session cookie is HttpOnly and SameSite=Lax; cookie-authenticated writes also
need the CSRF token (see web/auth.py).
"""

from __future__ import annotations

import math
import os
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from latentpedia.store.accounts import ROLE_ADMIN, ROLE_USER
from latentpedia.web.auth import LOGIN, SESSION_COOKIE, AdminUser, CurrentUser, OptionalUser, viewer
from latentpedia.web.community_schemas import (
    AccountPage,
    ApiKeyOut,
    Done,
    LoginIn,
    LoginOut,
    NewApiKey,
    NewKeyIn,
    NewUserIn,
    PasswordIn,
    UserOut,
)
from latentpedia.web.deps import StoreDep
from latentpedia.web.ratelimit import RateLimiter, client_address
from latentpedia.web.pages.common import NotFoundError, source_record
from latentpedia.web.pages.community import account_page_data, user_out
from latentpedia.web.render import render_page
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["accounts"])
AUTH_ERRORS = {401: {"model": ErrorBody, "description": "not signed in"}, 403: {"model": ErrorBody, "description": "not allowed or no CSRF token"}}
LOGIN_FAILED = "wrong username or password"
LOGIN_RATE_ENV = "LATENTPEDIA_LOGIN_RATE"  # login attempts per minute per client address (0: no limit)


def same_origin(request: Request) -> None:
    """403 for a login posted from anywhere but this server's own origin (login CSRF).

    Browsers send `Origin` with every POST: it must be an http(s) origin naming this host
    (`null`, sent after a cross-site redirect or by sandboxed pages, is refused; an http origin
    is refused when the server is reached over https). Without `Origin`, a `Referer` must name
    this host. `Sec-Fetch-Site` other than same-origin is refused. Scripts send none of these."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, f"cross-site login refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is not None and not _own_origin(origin, request):
        raise HTTPException(403, "cross-site login refused: log in from this server's own /login page")


def _own_origin(origin: str, request: Request) -> bool:
    """Whether `origin` (an Origin or Referer value) is this server's own origin."""
    parts = urlsplit(origin)
    host = request.headers.get("host", "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.netloc.lower() != host:
        return False
    return not (request.url.scheme == "https" and parts.scheme != "https")


def _attempt_limiter(request: Request, name: str) -> RateLimiter:
    """The app's limiter `name` for password guesses: $LATENTPEDIA_LOGIN_RATE a minute, in bursts as large."""
    limiter = getattr(request.app.state, name, None)
    if limiter is None:
        per_minute = float(os.environ.get(LOGIN_RATE_ENV, 10))
        limiter = RateLimiter(per_minute, burst=max(int(per_minute), 1))
        setattr(request.app.state, name, limiter)
    return limiter


def _take(limiter: RateLimiter, key: str, what: str) -> None:
    """One attempt from `key`'s bucket, or 429 with Retry-After."""
    wait = limiter.acquire(key)
    if wait > 0:
        raise HTTPException(429, f"too many {what}; try again in {math.ceil(wait)} s",
                            headers={"Retry-After": str(math.ceil(wait))})  # fmt: skip


def login_limit(request: Request) -> None:
    """429 when a client tries to log in too often (guessing passwords)."""
    _take(_attempt_limiter(request, "login_limiter"), client_address(request), "login attempts")


def password_limit(request: Request, user: CurrentUser) -> None:
    """429 when a password change is tried too often, per client address and per account
    (a stolen session must not guess the current password quickly from many addresses)."""
    limiter = _attempt_limiter(request, "password_limiter")
    _take(limiter, f"address {client_address(request)}", "password change attempts from your address")
    _take(limiter, f"user {user.id}", "password change attempts for this account")


def _start_session(request: Request, response: Response, store, user_id: int) -> str:
    """Set the session cookie on `response`; returns the session's CSRF token."""
    store.purge_sessions()
    token, csrf = store.create_session(user_id)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        max_age=14 * 24 * 3600, path="/")  # fmt: skip
    return csrf


def _end_session(request: Request, response: Response, store) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        store.delete_session(token)
    response.delete_cookie(SESSION_COOKIE, path="/")


def _safe_next(target: str | None) -> str:
    """Only same-site paths (no //host or scheme) are followed after logging in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.post("/api/login", response_model=LoginOut, responses={401: {"model": ErrorBody}}, summary="Log in (sets the session cookie)",
             dependencies=[Depends(same_origin), Depends(login_limit)], **LOGIN)  # fmt: skip
def login_json(body: LoginIn, request: Request, response: Response, store: StoreDep) -> LoginOut:
    user = store.authenticate(body.username, body.password)
    if user is None:
        raise HTTPException(401, LOGIN_FAILED)
    return LoginOut(user=user_out(user), csrf_token=_start_session(request, response, store, user.id))


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "error": None, "twin_url": None})


@router.post("/login", response_class=HTMLResponse, include_in_schema=False, dependencies=[Depends(same_origin), Depends(login_limit)], **LOGIN)
def login_submit(request: Request, store: StoreDep, username: Annotated[str, Form(max_length=64)],
                 password: Annotated[str, Form(max_length=1024)], next: Annotated[str, Form()] = "/") -> Response:  # fmt: skip
    user = store.authenticate(username, password)
    if user is None:
        templates = request.app.state.templates
        context = {"next": _safe_next(next), "error": LOGIN_FAILED, "username": username, "twin_url": None}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _start_session(request, response, store, user.id)
    return response


@router.post("/api/logout", response_model=Done, responses=AUTH_ERRORS, summary="Log out (ends the session)")
def logout_json(request: Request, response: Response, store: StoreDep, user: CurrentUser) -> Done:
    _end_session(request, response, store)
    return Done(detail=f"logged out {user.username}")


@router.post("/logout", include_in_schema=False)
def logout_submit(request: Request, store: StoreDep, user: CurrentUser) -> Response:
    response = RedirectResponse("/", status_code=303)
    _end_session(request, response, store)
    return response


@router.get("/api/account", response_model=AccountPage, responses=AUTH_ERRORS, summary="The signed-in user, API keys, lists")
def account_json(store: StoreDep, user: CurrentUser) -> AccountPage:
    return account_page_data(store, user)


@router.get("/account", response_class=HTMLResponse, include_in_schema=False)
def account_html(request: Request, store: StoreDep, user: OptionalUser) -> Response:
    if user is None:
        return RedirectResponse("/login?next=/account", status_code=303)
    return render_page(request, "account.html", account_page_data(store, user), "/api/account", csrf_token=viewer(request).csrf_token)


@router.post("/api/account/password", response_model=Done, responses={**AUTH_ERRORS, 429: {"model": ErrorBody}},
             summary="Change your password (ends your sessions; rate limited)", dependencies=[Depends(password_limit)])  # fmt: skip
def change_password(body: PasswordIn, store: StoreDep, user: CurrentUser) -> Done:
    if store.authenticate(user.username, body.old_password) is None:
        raise HTTPException(403, "the current password is wrong")
    store.set_user(user.username, password=body.new_password)
    return Done(detail="password changed; log in again")


@router.post("/api/key/new", response_model=NewApiKey, responses=AUTH_ERRORS, summary="Create an API key (shown once)")
def new_key(body: NewKeyIn, store: StoreDep, user: CurrentUser) -> NewApiKey:
    key, record = store.create_api_key(user.id, body.name)
    return NewApiKey(key=key, **{k: record[k] for k in ApiKeyOut.model_fields})


@router.delete("/api/key/{key_id}", response_model=ApiKeyOut, responses=AUTH_ERRORS, summary="Revoke one of your API keys")
def revoke_key(key_id: int, store: StoreDep, user: CurrentUser) -> ApiKeyOut:
    record = store.revoke_api_key(user.id, key_id)
    return ApiKeyOut(**{k: record[k] for k in ApiKeyOut.model_fields})


@router.post("/api/user/new", response_model=UserOut, responses=AUTH_ERRORS, summary="Create a user (admins)")
def new_user(body: NewUserIn, store: StoreDep, _admin: AdminUser) -> UserOut:
    return user_out(store.add_user(body.username, body.password, ROLE_ADMIN if body.admin else ROLE_USER))


@router.delete("/api/source/{model}/{source}", response_model=Done, responses=AUTH_ERRORS, summary="Delete a source and its latents (admins)")
def delete_source(model: str, source: str, store: StoreDep, _admin: AdminUser) -> Done:
    source_record(store, model, source)
    if not store.delete_source(model, source):
        raise NotFoundError(f"model {model!r} has no source {source!r}")
    return Done(detail=f"deleted {model}/{source}")
