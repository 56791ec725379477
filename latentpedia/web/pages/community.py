"""Community page data: user pages, list pages, the account page, and the explanations and
comments panels of a feature page. Like the other page functions, these read the Store and
know nothing about HTTP; `viewer` (the signed-in user or None) decides what is visible."""

from __future__ import annotations

from urllib.parse import quote

from latentpedia.store.accounts import UserRecord
from latentpedia.store.api import Store
from latentpedia.store.community import CommentRecord, ExplanationRecord
from latentpedia.store.lists import ListItemRecord, ListRecord
from latentpedia.web.community_schemas import (
    AccountPage,
    ApiKeyOut,
    CommentOut,
    ExplanationOut,
    ListItemOut,
    ListOut,
    ListPage,
    ScoreOut,
    UserOut,
    UserPage,
)
from latentpedia.web.pages.common import NotFoundError, feature_url


def user_url(username: str) -> str:
    return f"/user/{quote(username, safe='')}"


def list_url(list_id: int) -> str:
    return f"/list/{int(list_id)}"


def shared_list_url(token: str) -> str:
    return f"/list/shared/{quote(token, safe='')}"


def user_out(user: UserRecord) -> UserOut:
    return UserOut(username=user.username, role=user.role, created_at=user.created_at, url=user_url(user.username))


def explanation_out(e: ExplanationRecord) -> ExplanationOut:
    return ExplanationOut(
        id=e.id, modelId=e.model_id, layer=e.source, index=e.latent_index, text=e.text, description=e.text,
        method=e.method, explainer_model=e.explainer_model, typeName=e.method, explanationModelName=e.explainer_model,
        source=e.source, prompt_version=e.prompt_version, author=e.author,
        author_url=user_url(e.author) if e.author else None, vote_score=e.vote_score,
        scores=[ScoreOut(**{k: s[k] for k in ScoreOut.model_fields}) for s in e.scores],
        details=e.details, created_at=e.created_at, url=feature_url(e.model_id, e.source, e.latent_index),
    )  # fmt: skip


def comment_out(c: CommentRecord) -> CommentOut:
    return CommentOut(
        id=c.id, modelId=c.model_id, layer=c.source, index=c.latent_index, username=c.username,
        author_url=user_url(c.username), text=c.text, created_at=c.created_at,
        url=feature_url(c.model_id, c.source, c.latent_index),
    )  # fmt: skip


def list_out(record: ListRecord, viewer: UserRecord | None) -> ListOut:
    owner = viewer is not None and viewer.id == record.owner_id
    return ListOut(
        id=record.id, owner=record.owner, name=record.name, description=record.description, public=record.public,
        n_items=record.n_items, created_at=record.created_at, url=list_url(record.id),
        api_url=f"/api{list_url(record.id)}", share_url=shared_list_url(record.share_token) if owner else None,
    )  # fmt: skip


def item_out(item: ListItemRecord) -> ListItemOut:
    return ListItemOut(modelId=item.model_id, layer=item.source, index=item.latent_index, note=item.note,
                       added_at=item.added_at, url=feature_url(item.model_id, item.source, item.latent_index))  # fmt: skip


def explanations_for(store: Store, source_id: int, index: int) -> list[ExplanationOut]:
    """A feature page's explanations, best voted first."""
    return [explanation_out(e) for e in store.list_explanations(source_id, index)]


def comments_for(store: Store, source_id: int, index: int) -> list[CommentOut]:
    return [comment_out(c) for c in store.list_comments(source_id, index)]


def can_read_list(record: ListRecord, viewer: UserRecord | None) -> bool:
    return record.public or (viewer is not None and (viewer.id == record.owner_id or viewer.is_admin))


def list_page_data(store: Store, list_id: int, viewer: UserRecord | None, share_token: str | None = None) -> ListPage:
    """A list and its latents; NotFoundError unless it is public, the viewer's, or opened
    with its share token (a private list looks the same as a missing one)."""
    record = store.get_list_by_token(share_token) if share_token else store.get_list(list_id)
    if record is None or (not share_token and not can_read_list(record, viewer)):
        raise NotFoundError(f"no list {list_id}" if not share_token else "no list with this share link")
    items = [item_out(i) for i in store.list_items(record.id)]
    editable = viewer is not None and viewer.id == record.owner_id
    return ListPage(list=list_out(record, viewer), items=items, editable=editable)


def user_page_data(store: Store, username: str, viewer: UserRecord | None) -> UserPage:
    user = store.get_user(username)
    if user is None:
        raise NotFoundError(f"no user {username!r}")
    lists = [list_out(r, viewer) for r in store.lists_of(user.id) if can_read_list(r, viewer)]
    return UserPage(
        user=user_out(user), lists=lists,
        explanations=[explanation_out(e) for e in store.explanations_by_author(user.id)],
        comments=[comment_out(c) for c in store.comments_by_user(user.id)],
    )  # fmt: skip


def account_page_data(store: Store, viewer: UserRecord) -> AccountPage:
    keys = [ApiKeyOut(**{k: key[k] for k in ApiKeyOut.model_fields}) for key in store.list_api_keys(viewer.id)]
    users = [user_out(u) for u in store.list_users()] if viewer.is_admin else None
    lists = [list_out(r, viewer) for r in store.lists_of(viewer.id)]
    return AccountPage(user=user_out(viewer), api_keys=keys, lists=lists, users=users)
