"""The game: /play and its JSON twins, submit / vote / skip, boards, sign-up, moderation.

The rules live in latentpedia.interp.game (`Game`); these handlers check who is calling, rate
limit writes per account and per client address, and convert to the typed models of
web/play_schemas.py. Scoring embeds text on the live torch worker (web/ never runs torch).
Sign-up is `closed` unless the server says otherwise (`latentpedia serve --signup open|invite`,
$LATENTPEDIA_SIGNUP or `app.state.signup`).
"""

from __future__ import annotations

import asyncio
import math
import os
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from latentpedia.interp.game.batching import EmbedBatcher, embed_on_few_threads
from latentpedia.interp.game.play import Game
from latentpedia.store.accounts import CommunityError, UserRecord
from latentpedia.store.game import CampaignRecord
from latentpedia.web.auth import LOGIN, AdminUser, CurrentUser, OptionalUser, viewer
from latentpedia.web.community_schemas import Done, LoginOut
from latentpedia.web.deps import StoreDep
from latentpedia.web.pages.common import NotFoundError, source_record
from latentpedia.web.pages.community import user_out
from latentpedia.web.play_schemas import (
    AdminPage, Board, CampaignIn, CampaignOut, DeleteAccountIn, InviteOut, Me, ModerateIn, PlayerPage, PlayHome,
    PlayIn, PlayResult, PrefsIn, PrefsOut, Progress, Puzzle, ReportIn, ReportOut, SignupIn, SubmitIn, VoteIn,
)  # fmt: skip
from latentpedia.web.ratelimit import RateLimiter, client_address
from latentpedia.web.pages.clues import cached_clue_list
from latentpedia.web.render import render_page
from latentpedia.web.routers.accounts import _start_session, login_limit, same_origin
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["game"])
ERRORS = {
    400: {"model": ErrorBody, "description": "a move the game refuses"},
    401: {"model": ErrorBody, "description": "not signed in"},
    403: {"model": ErrorBody, "description": "not allowed, or no CSRF token"},
    404: {"model": ErrorBody, "description": "unknown campaign, latent or explanation"},
    429: {"model": ErrorBody, "description": "too many submissions or votes: retry after Retry-After seconds"},
}
SIGNUP_ENV = "LATENTPEDIA_SIGNUP"
SIGNUP_MODES = ("open", "invite", "closed")
RATE_ENV, BURST_ENV = "LATENTPEDIA_GAME_RATE", "LATENTPEDIA_GAME_BURST"


# app state: the game, its embedder on the torch worker, the sign-up mode, the limiter


def _embedder(request: Request):
    live, loop = request.app.state.live, asyncio.get_running_loop()

    def embed(texts: list[str]):  # on one torch thread (interp/game/batching.py says why)
        return asyncio.run_coroutine_threadsafe(live.run(None, lambda _model: embed_on_few_threads(texts)), loop).result()

    return embed


async def get_game(request: Request) -> Game:
    """The app's `Game` (made on first use, its embedder batched and bound to the live torch worker;
    a puzzle shown makes its latent's held-out set in the background)."""
    game = getattr(request.app.state, "game", None)
    if game is None:
        embed = EmbedBatcher(_embedder(request))  # concurrent submits share one call on the torch worker
        game = request.app.state.game = Game(request.app.state.store, embed, llm=_llm_config(), prefetch=True)
        game.prepare_campaigns()  # the first latents of each active campaign, in the background
    return game


GameDep = Depends(get_game)


def _llm_config():
    """The server's LLM endpoint ($LATENTPEDIA_LLM_BASE_URL / _MODEL / _KEY), or None."""
    if not os.environ.get("LATENTPEDIA_LLM_BASE_URL"):
        return None
    from latentpedia.errors import LatentpediaError
    from latentpedia.interp.llm.client import LLMConfig

    try:
        return LLMConfig.resolve()
    except LatentpediaError:
        return None


def signup_mode(request: Request) -> str:
    mode = getattr(request.app.state, "signup", None) or os.environ.get(SIGNUP_ENV, "closed")
    return mode if mode in SIGNUP_MODES else "closed"


def game_limit(request: Request, user: CurrentUser) -> None:
    """429 when an account or a client address submits or votes too often."""
    limiter = getattr(request.app.state, "game_limiter", None)
    if limiter is None:
        limiter = RateLimiter(float(os.environ.get(RATE_ENV, 30)), int(os.environ.get(BURST_ENV, 10)))
        request.app.state.game_limiter = limiter
    for key, who in ((f"user {user.id}", "this account"), (f"address {client_address(request)}", "your address")):
        wait = limiter.acquire(key)
        if wait > 0:
            raise HTTPException(429, f"too many game moves from {who}: the limit is {limiter.rate * 60:g} a minute; retry in {math.ceil(wait)} s",
                                headers={"Retry-After": str(math.ceil(wait))})  # fmt: skip


async def _call(fn, *args, **kwargs) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


PAGES_AT_ONCE = 2  # puzzles worked on together by one server process


async def _call_puzzle(request: Request, *args: Any) -> Puzzle:
    """`_puzzle` in the thread pool, at most PAGES_AT_ONCE at a time, in arrival order: 32
    players' pages arriving together then finish one after another (a few ms each) instead of all
    at the end of the burst, as threads sharing one GIL would."""
    gate = getattr(request.app.state, "puzzle_gate", None)
    if gate is None:
        gate = request.app.state.puzzle_gate = asyncio.Semaphore(PAGES_AT_ONCE)
    async with gate:
        return await _call(_puzzle, *args)


# conversions


def campaign_out(game: Game, c: CampaignRecord) -> CampaignOut:
    return CampaignOut(slug=c.slug, title=c.title, modelId=c.model_id, layer=c.source, order=c.order,
                       n_latents=None if c.latents is None else len(c.latents), starts_at=c.starts_at, ends_at=c.ends_at,
                       contest=c.contest, active=c.active(datetime.now(UTC)), progress=Progress(**game.progress(c)),
                       url=f"/play/c/{c.slug}")  # fmt: skip


def me_out(game: Game, user: UserRecord | None, plays: list | None = None) -> Me | None:
    """The caller's standing (`plays`: all their plays, when the handler has read them)."""
    if user is None:
        return None
    mode, tutorial = game.games.prefs(user.id)
    player = game.standing(user, plays=plays)
    return Me(username=user.username, points=player["points"], streak=player["streak"], mode=mode, tutorial_done=tutorial,
              share=player["share"])  # fmt: skip


def _result(game: Game, user: UserRecord, found: dict[str, Any], next_url: str | None) -> PlayResult:
    return PlayResult(**{k: v for k, v in found.items() if k in PlayResult.model_fields},
                      total_points=game.standing(user)["points"], next_url=next_url)  # fmt: skip


def _next_url(body: PlayIn | VoteIn) -> str | None:
    if body.daily:
        return "/play"
    return f"/play/c/{body.campaign}" if body.campaign else None


def _daily_key(body: PlayIn | VoteIn) -> str | None:
    return datetime.now(UTC).date().isoformat() if body.daily else None


# home, puzzles


def _home(game: Game, request: Request, user: UserRecord | None) -> PlayHome:
    campaigns = [campaign_out(game, c) for c in game.games.list_campaigns()]
    return PlayHome(campaigns=campaigns, daily="/play/daily" if game.featured() else None, signup=signup_mode(request),
                    me=me_out(game, user), board=Board(period="all", campaign=None, rows=game.leaderboard(limit=10)))  # fmt: skip


@router.get("/api/play", response_model=PlayHome, responses=ERRORS, summary="The game: campaigns, today's puzzle, you, the board")
async def play_json(request: Request, user: OptionalUser, game: Game = GameDep) -> PlayHome:
    return await _call(_home, game, request, user)


@router.get("/play", response_class=HTMLResponse, include_in_schema=False)
async def play_html(request: Request, user: OptionalUser, game: Game = GameDep) -> HTMLResponse:
    page = await _call(_home, game, request, user)
    return render_page(request, "play.html", page, "/api/play")


def _puzzle(game: Game, user: UserRecord | None, campaign: str | None, index: int | None, daily: bool) -> Puzzle:
    plays = game.games.plays(user_id=user.id) if user else None  # read once: the next latent, what was played, the standing
    found = game.puzzle(user, campaign, index=index, daily=daily, plays=plays)
    feature = f"/{found['modelId']}/{found['layer']}/{found['index']}" if found.get("index") is not None else None
    return Puzzle(**found, me=me_out(game, user, plays), feature_url=feature)


@router.get("/api/play/puzzle", response_model=Puzzle, responses=ERRORS, summary="A campaign's next latent for you (or `index`)")
async def puzzle_json(request: Request, campaign: str, user: OptionalUser, index: int | None = None, game: Game = GameDep) -> Puzzle:
    return await _call_puzzle(request, game, user, campaign, index, False)


@router.get("/api/play/daily", response_model=Puzzle, responses=ERRORS, summary="Today's puzzle (the same latent for everyone, UTC)")
async def daily_json(request: Request, user: OptionalUser, game: Game = GameDep) -> Puzzle:
    return await _call_puzzle(request, game, user, None, None, True)


def _puzzle_page(request: Request, page: Puzzle, twin: str) -> HTMLResponse:
    """The puzzle page; its clue spans come from the per-latent cache (web/pages/clues.py)."""
    advanced = page.me is not None and page.me.mode == "advanced"
    key = (page.modelId, page.layer, page.index)
    clues = cached_clue_list(("clues", *key), page.clues, page.max_act, titles=advanced)
    quantiles = cached_clue_list(("quantiles", *key), page.quantiles, page.max_act, titles=True) if advanced else ""
    return render_page(request, "play_puzzle.html", page, twin, csrf_token=viewer(request).csrf_token,
                       clues_html=clues, quantiles_html=quantiles)


@router.get("/play/c/{campaign}", response_class=HTMLResponse, include_in_schema=False)
async def puzzle_html(request: Request, campaign: str, user: OptionalUser, index: int | None = None, game: Game = GameDep) -> HTMLResponse:
    page = await _call_puzzle(request, game, user, campaign, index, False)
    twin = f"/api/play/puzzle?campaign={campaign}" + (f"&index={index}" if index is not None else "")
    return _puzzle_page(request, page, twin)


@router.get("/play/daily", response_class=HTMLResponse, include_in_schema=False)
async def daily_html(request: Request, user: OptionalUser, game: Game = GameDep) -> HTMLResponse:
    page = await _call_puzzle(request, game, user, None, None, True)
    return _puzzle_page(request, page, "/api/play/daily")


# moves


def _source_id(game: Game, store, body: PlayIn) -> int:
    """The id of the source the move names: its campaign's (kept in memory) when the campaign is of
    that model and source, else read from the store (NotFoundError if unknown)."""
    if body.campaign:
        try:
            record = game.campaign(body.campaign)
        except CommunityError:  # unknown campaign: the move reports it
            record = None
        if record is not None and (record.model_id, record.source) == (body.modelId, body.layer):
            return record.source_id
    return source_record(store, body.modelId, body.layer).id


def _submit(game: Game, store, user: UserRecord, body: SubmitIn) -> PlayResult:
    found = game.submit(user, body.campaign, _source_id(game, store, body), body.index, body.text, daily=_daily_key(body))
    return _result(game, user, found, _next_url(body))


@router.post("/api/play/submit", response_model=PlayResult, responses=ERRORS, dependencies=[Depends(game_limit)],
             summary="Explain the latent: scored at once on held-out examples; a near-duplicate counts as a vote")  # fmt: skip
async def submit(body: SubmitIn, store: StoreDep, user: CurrentUser, game: Game = GameDep) -> PlayResult:
    return await _call(_submit, game, store, user, body)


def _vote(game: Game, user: UserRecord, body: VoteIn) -> PlayResult:
    return _result(game, user, game.vote(user, body.explanation_id, body.campaign, daily=_daily_key(body)), _next_url(body))


@router.post("/api/play/vote", response_model=PlayResult, responses=ERRORS, dependencies=[Depends(game_limit)],
             summary="Vote for an existing explanation of the latent")  # fmt: skip
async def vote(body: VoteIn, user: CurrentUser, game: Game = GameDep) -> PlayResult:
    return await _call(_vote, game, user, body)


def _skip(game: Game, store, user: UserRecord, body: PlayIn) -> PlayResult:
    return _result(game, user, game.skip(user, body.campaign, _source_id(game, store, body), body.index, daily=_daily_key(body)), _next_url(body))


@router.post("/api/play/skip", response_model=PlayResult, responses=ERRORS, summary="Skip the latent")
async def skip(body: PlayIn, store: StoreDep, user: CurrentUser, game: Game = GameDep) -> PlayResult:
    return await _call(_skip, game, store, user, body)


@router.post("/api/play/prefs", response_model=PrefsOut, responses=ERRORS, summary="Simple or advanced mode; tutorial seen")
def prefs(body: PrefsIn, store: StoreDep, user: CurrentUser) -> PrefsOut:
    from latentpedia.store.game import GameStore

    mode, done = GameStore(store).set_prefs(user.id, mode=body.mode, tutorial_done=body.tutorial_done)
    return PrefsOut(mode=mode, tutorial_done=done)


@router.post("/api/play/report", response_model=Done, responses=ERRORS, dependencies=[Depends(game_limit)], summary="Report an explanation to the moderators")
def report(body: ReportIn, store: StoreDep, user: CurrentUser) -> Done:
    from latentpedia.store.game import GameStore

    report_id = GameStore(store).add_report(body.explanation_id, user.id, body.reason)
    return Done(detail=f"report {report_id} is in the moderation queue")


# boards and players


def _board(game: Game, period: str, campaign: str | None) -> Board:
    return Board(period=period, campaign=campaign, rows=game.leaderboard(period=period, campaign=campaign))


@router.get("/api/play/leaderboard", response_model=Board, responses=ERRORS, summary="Points by player: all time, this week, or one campaign")
async def board_json(period: str = "all", campaign: str | None = None, game: Game = GameDep) -> Board:
    return await _call(_board, game, period, campaign)


@router.get("/play/leaderboard", response_class=HTMLResponse, include_in_schema=False)
async def board_html(request: Request, period: str = "all", campaign: str | None = None, game: Game = GameDep) -> HTMLResponse:
    page = await _call(_board, game, period, campaign)
    query = f"?period={period}" + (f"&campaign={campaign}" if campaign else "")
    return render_page(request, "play_board.html", page, "/api/play/leaderboard" + query)


def _player(game: Game, store, username: str) -> PlayerPage:
    found = store.get_user(username)
    if found is None or found.disabled:
        raise NotFoundError(f"no player {username!r}")
    data = game.player(found)
    return PlayerPage(**{k: data[k] for k in PlayerPage.model_fields})


@router.get("/api/play/player/{username}", response_model=PlayerPage, responses=ERRORS, summary="A player's points, streak and scored explanations")
async def player_json(username: str, store: StoreDep, game: Game = GameDep) -> PlayerPage:
    return await _call(_player, game, store, username)


@router.get("/play/player/{username}", response_class=HTMLResponse, include_in_schema=False)
async def player_html(request: Request, username: str, store: StoreDep, game: Game = GameDep) -> HTMLResponse:
    page = await _call(_player, game, store, username)
    return render_page(request, "play_player.html", page, f"/api/play/player/{username}")


# accounts: sign-up, deleting one's account


@router.post("/api/play/signup", response_model=LoginOut, responses=ERRORS, summary="Sign up (when the server allows it) and log in",
             dependencies=[Depends(same_origin), Depends(login_limit)], **LOGIN)  # fmt: skip
def signup(body: SignupIn, request: Request, response: Response, store: StoreDep) -> LoginOut:
    from latentpedia.store.game import GameStore

    mode = signup_mode(request)
    if mode == "closed":
        raise HTTPException(403, "sign-up is closed on this server: ask an admin for an account")
    if mode == "invite":
        if not body.invite:
            raise HTTPException(403, "sign-up needs an invite code on this server")
        user = GameStore(store).use_invite(body.invite, body.username, body.password)
    else:
        user = store.add_user(body.username, body.password)
    return LoginOut(user=user_out(user), csrf_token=_start_session(request, response, store, user.id))


@router.get("/signup", response_class=HTMLResponse, include_in_schema=False)
def signup_html(request: Request, invite: str = "") -> HTMLResponse:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, "play_signup.html", {"mode": signup_mode(request), "invite": invite, "twin_url": None})


@router.post("/api/play/account/delete", response_model=Done, responses=ERRORS, summary="Delete your account (explanations anonymised or removed)")
def delete_account(body: DeleteAccountIn, store: StoreDep, user: CurrentUser) -> Done:
    from latentpedia.store.game import GameStore

    if store.authenticate(user.username, body.password) is None:
        raise HTTPException(403, "the password is wrong")
    done = GameStore(store).delete_account(user.id, remove_content=body.mode == "remove")
    verb = "removed" if body.mode == "remove" else "anonymised"
    return Done(detail=f"account {user.username} deleted; {done['explanations']} explanation(s) {verb}")


# admins: campaigns, invites, moderation


def _admin(game: Game, request: Request) -> AdminPage:
    reports = [ReportOut(id=r.id, explanation_id=r.explanation_id, reporter=r.reporter, reason=r.reason, status=r.status,
                         text=r.text, author=r.author, modelId=r.model_id, layer=r.source, index=r.latent_index)
               for r in game.games.reports(status=None) if r.status in ("open", "hidden")]  # fmt: skip
    return AdminPage(campaigns=[campaign_out(game, c) for c in game.games.list_campaigns()], reports=reports,
                     invites=[InviteOut(**i) for i in game.games.invites()], signup=signup_mode(request))  # fmt: skip


@router.get("/api/play/admin", response_model=AdminPage, responses=ERRORS, summary="Campaigns, the moderation queue, invites (admins)")
async def admin_json(request: Request, _admin_user: AdminUser, game: Game = GameDep) -> AdminPage:
    return await _call(_admin, game, request)


@router.get("/play/admin", response_class=HTMLResponse, include_in_schema=False)
async def admin_html(request: Request, user: OptionalUser, game: Game = GameDep) -> Response:
    if user is None or not user.is_admin:
        return RedirectResponse("/login?next=/play/admin", status_code=303)
    page = await _call(_admin, game, request)
    return render_page(request, "play_admin.html", page, "/api/play/admin", csrf_token=viewer(request).csrf_token)


def _new_campaign(game: Game, store, body: CampaignIn, admin: UserRecord) -> CampaignOut:
    source = source_record(store, body.modelId, body.layer)
    indices = body.indices
    if body.list_id is not None:
        found = store.get_list(body.list_id)
        if found is None:
            raise NotFoundError(f"no list {body.list_id}")
        indices = [i.latent_index for i in store.list_items(body.list_id) if i.source_id == source.id] or None
        if indices is None:
            raise CommunityError(f"list {body.list_id} has no latent of {source.name}")
    record = game.games.add_campaign(body.slug, body.title, source.id, order=body.order, latents=indices,
                                     starts_at=body.starts_at, ends_at=body.ends_at, created_by=admin.id)  # fmt: skip
    game.forget_campaigns()
    return campaign_out(game, record)


@router.post("/api/play/campaign", response_model=CampaignOut, responses=ERRORS, summary="Make a campaign from a source, latents or a list (admins)")
async def new_campaign(body: CampaignIn, store: StoreDep, admin: AdminUser, game: Game = GameDep) -> CampaignOut:
    return await _call(_new_campaign, game, store, body, admin)


@router.delete("/api/play/campaign/{slug}", response_model=Done, responses=ERRORS, summary="Delete a campaign (admins; plays stay)")
async def delete_campaign(slug: str, _admin_user: AdminUser, game: Game = GameDep) -> Done:
    if not game.games.delete_campaign(slug):
        raise NotFoundError(f"no campaign {slug!r}")
    game.forget_campaigns()
    return Done(detail=f"deleted campaign {slug}")


@router.post("/api/play/invite", response_model=InviteOut, responses=ERRORS, summary="Make a sign-up invite code (admins)")
def new_invite(store: StoreDep, admin: AdminUser) -> InviteOut:
    from latentpedia.store.game import GameStore

    games = GameStore(store)
    code = games.new_invite(admin.id)
    return next(InviteOut(**i) for i in games.invites() if i["code"] == code)


def _moderate(game: Game, store, body: ModerateIn, admin: UserRecord) -> Done:
    games, eid = game.games, body.explanation_id
    if body.action == "hide":
        if not games.hide_explanation(eid, admin.id):
            raise NotFoundError(f"no explanation {eid}")
        games.resolve_reports(eid, "hidden", admin.id)
        return Done(detail=f"explanation {eid} hidden")
    if body.action == "restore":
        if not games.restore_explanation(eid):
            raise NotFoundError(f"explanation {eid} is not hidden")
        games.resolve_reports(eid, "restored", admin.id)
        return Done(detail=f"explanation {eid} restored")
    if body.action == "dismiss":
        return Done(detail=f"{games.resolve_reports(eid, 'dismissed', admin.id)} report(s) dismissed")
    author = _author(games, store, eid)
    if author is None:
        raise CommunityError(f"explanation {eid} has no author to ban")
    if author.is_admin:
        raise HTTPException(403, "admins cannot be banned from here")
    store.set_user(author.username, disabled=True)
    games.hide_explanation(eid, admin.id)
    games.resolve_reports(eid, "hidden", admin.id)
    return Done(detail=f"{author.username} banned: their points are off the boards")


def _author(games, store, eid: int) -> UserRecord | None:
    author_id = games.author_of(eid)
    return store.get_user_by_id(author_id) if author_id is not None else None


@router.post("/api/play/moderate", response_model=Done, responses=ERRORS, summary="Hide, restore, dismiss reports of, or ban the author of an explanation (admins)")
async def moderate(body: ModerateIn, store: StoreDep, admin: AdminUser, game: Game = GameDep) -> Done:
    return await _call(_moderate, game, store, body, admin)
