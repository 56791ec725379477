"""Community routes: explanations, votes, comments, lists, user pages.

Writes need a signed-in user (session + CSRF token, or x-api-key). Deleting an explanation
or a comment is for its author or an admin; changing a list, for its owner.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import HTMLResponse

from latentpedia.store.accounts import UserRecord
from latentpedia.store.api import Store
from latentpedia.web.auth import CurrentUser, OptionalUser, safe_viewer, viewer
from latentpedia.web.community_schemas import (
    CommentOut,
    Done,
    ExplanationOut,
    LatentRef,
    ListItemIn,
    ListOut,
    ListPage,
    NewCommentIn,
    NewExplanationIn,
    NewListIn,
    UpdateListIn,
    UserPage,
    VoteIn,
    VoteOut,
)
from latentpedia.web.deps import StoreDep
from latentpedia.web.pages.common import NotFoundError, source_record
from latentpedia.web.pages.community import (
    comment_out,
    explanation_out,
    list_out,
    list_page_data,
    list_url,
    shared_list_url,
    user_page_data,
    user_url,
)
from latentpedia.web.render import render_page
from latentpedia.web.routers import forms
from latentpedia.web.routers.explanation_search import embed_written
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["community"])
router.include_router(forms.router)  # POST /form: these routes for browsers without JavaScript
ERRORS = {
    401: {"model": ErrorBody, "description": "not signed in"},
    403: {"model": ErrorBody, "description": "not yours, or no CSRF token"},
    404: {"model": ErrorBody, "description": "unknown latent, explanation, comment or list"},
}


def _source_id(store: Store, ref: LatentRef) -> int:
    return source_record(store, ref.modelId, ref.layer).id


def _mine_or_admin(user: UserRecord, owner_id: int | None, what: str) -> None:
    if owner_id != user.id and not user.is_admin:
        raise HTTPException(403, f"only its author or an admin may delete this {what}")


def _own_list(store: Store, list_id: int, user: UserRecord):
    record = store.get_list(list_id)
    if record is None or (record.owner_id != user.id and not (record.public or user.is_admin)):
        raise NotFoundError(f"no list {list_id}")
    if record.owner_id != user.id:
        raise HTTPException(403, "only the list's owner may change it")
    return record


# explanations and votes


@router.post("/api/explanation/new", response_model=ExplanationOut, responses=ERRORS, summary="Explain a latent")
def new_explanation(body: NewExplanationIn, store: StoreDep, user: CurrentUser, request: Request, background: BackgroundTasks) -> ExplanationOut:
    eid = store.add_explanation(_source_id(store, body), body.index, body.text, "human", author_id=user.id)
    background.add_task(embed_written, request.app, [eid])  # explanation search: its vector, on the torch worker
    return explanation_out(store.get_explanation(eid))


@router.delete("/api/explanation/{explanation_id}", response_model=Done, responses=ERRORS, summary="Delete an explanation")
def delete_explanation(explanation_id: int, store: StoreDep, user: CurrentUser) -> Done:
    found = store.get_explanation(explanation_id)
    if found is None:
        raise NotFoundError(f"no explanation {explanation_id}")
    _mine_or_admin(user, found.author_id, "explanation")
    store.delete_explanation(explanation_id)
    return Done(detail=f"deleted explanation {explanation_id}")


@router.post("/api/explanation/{explanation_id}/vote", response_model=VoteOut, responses=ERRORS, summary="Vote +1/-1 (0 withdraws)")
def vote(explanation_id: int, body: VoteIn, store: StoreDep, user: CurrentUser) -> VoteOut:
    total = store.vote(user.id, explanation_id, body.value)
    return VoteOut(explanation_id=explanation_id, vote_score=total, my_vote=body.value)


# comments


@router.post("/api/comment/new", response_model=CommentOut, responses=ERRORS, summary="Comment on a latent")
def new_comment(body: NewCommentIn, store: StoreDep, user: CurrentUser) -> CommentOut:
    comment_id = store.add_comment(_source_id(store, body), body.index, user.id, body.text)
    return comment_out(store.get_comment(comment_id))


@router.delete("/api/comment/{comment_id}", response_model=Done, responses=ERRORS, summary="Delete a comment")
def delete_comment(comment_id: int, store: StoreDep, user: CurrentUser) -> Done:
    found = store.get_comment(comment_id)
    if found is None:
        raise NotFoundError(f"no comment {comment_id}")
    _mine_or_admin(user, found.user_id, "comment")
    store.delete_comment(comment_id)
    return Done(detail=f"deleted comment {comment_id}")


# lists


@router.post("/api/list/new", response_model=ListOut, responses=ERRORS, summary="Create a list of latents")
def new_list(body: NewListIn, store: StoreDep, user: CurrentUser) -> ListOut:
    return list_out(store.create_list(user.id, body.name, body.description, body.public), user)


@router.post("/api/list/{list_id}/update", response_model=ListOut, responses=ERRORS, summary="Rename, publish or re-share a list")
def update_list(list_id: int, body: UpdateListIn, store: StoreDep, user: CurrentUser) -> ListOut:
    _own_list(store, list_id, user)
    changes = body.model_dump(exclude_unset=True)
    return list_out(store.update_list(list_id, **changes), user)


@router.delete("/api/list/{list_id}", response_model=Done, responses=ERRORS, summary="Delete a list")
def delete_list(list_id: int, store: StoreDep, user: CurrentUser) -> Done:
    _own_list(store, list_id, user)
    store.delete_list(list_id)
    return Done(detail=f"deleted list {list_id}")


@router.post("/api/list/{list_id}/add", response_model=ListPage, responses=ERRORS, summary="Add a latent to a list")
def add_to_list(list_id: int, body: ListItemIn, store: StoreDep, user: CurrentUser) -> ListPage:
    _own_list(store, list_id, user)
    store.add_list_item(list_id, _source_id(store, body), body.index, body.note)
    return list_page_data(store, list_id, user)


@router.post("/api/list/{list_id}/remove", response_model=ListPage, responses=ERRORS, summary="Remove a latent from a list")
def remove_from_list(list_id: int, body: LatentRef, store: StoreDep, user: CurrentUser) -> ListPage:
    _own_list(store, list_id, user)
    store.remove_list_item(list_id, _source_id(store, body), body.index)
    return list_page_data(store, list_id, user)


@router.get("/api/list/shared/{token}", response_model=ListPage, responses=ERRORS, summary="A list opened by its share link")
def shared_list_json(token: str, store: StoreDep, user: OptionalUser) -> ListPage:
    return list_page_data(store, 0, user, share_token=token)


@router.get("/api/list/{list_id}", response_model=ListPage, responses=ERRORS, summary="A list and its latents")
def list_json(list_id: int, store: StoreDep, user: OptionalUser) -> ListPage:
    return list_page_data(store, list_id, user)


@router.get("/list/shared/{token}", response_class=HTMLResponse, include_in_schema=False)
def shared_list_html(request: Request, token: str, store: StoreDep, user: OptionalUser) -> HTMLResponse:
    page = list_page_data(store, 0, user, share_token=token)
    return render_page(request, "list.html", page, "/api" + shared_list_url(token))


@router.get("/list/{list_id}", response_class=HTMLResponse, include_in_schema=False)
def list_html(request: Request, list_id: int, store: StoreDep, user: OptionalUser) -> HTMLResponse:
    page = list_page_data(store, list_id, user)
    return render_page(request, "list.html", page, "/api" + list_url(list_id), csrf_token=viewer(request).csrf_token)


# user pages


@router.get("/api/user/{username}", response_model=UserPage, responses=ERRORS, summary="A user's explanations, comments, lists")
def user_json(username: str, store: StoreDep, user: OptionalUser) -> UserPage:
    return user_page_data(store, username, user)


@router.get("/user/{username}", response_class=HTMLResponse, include_in_schema=False)
def user_html(request: Request, username: str, store: StoreDep, user: OptionalUser) -> HTMLResponse:
    return render_page(request, "user.html", user_page_data(store, username, user), "/api" + user_url(username))


# template helpers for the feature-page panels (what only the signed-in viewer sees)


def my_votes(request: Request, explanations: list[ExplanationOut]) -> dict[int, int]:
    """The viewer's votes on these explanations ({id: ±1}); {} for anonymous viewers."""
    user = safe_viewer(request).user
    return {} if user is None else request.app.state.store.user_votes(user.id, [e.id for e in explanations])


def my_lists(request: Request, page) -> list[tuple[ListOut, bool]]:
    """The viewer's lists, each with whether it holds the page's latent."""
    user = safe_viewer(request).user
    if user is None:
        return []
    store: Store = request.app.state.store
    source = store.get_source(page.modelId, page.layer)
    holding = store.lists_holding(source.id, page.index, user.id) if source else set()
    return [(list_out(r, user), r.id in holding) for r in store.lists_of(user.id)]


TEMPLATE_GLOBALS = {"my_votes": my_votes, "my_lists": my_lists}
