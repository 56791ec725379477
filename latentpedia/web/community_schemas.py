"""Pydantic models of accounts and community data: what comes in, what goes out.

Request bodies use Neuronpedia's names where they exist (`modelId`, `layer` = source id,
`index`, `text`); nothing here carries a password hash or a stored secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from latentpedia.interp.registry import EXPLAINERS, SCORERS
from latentpedia.store.community import LIMITS
from latentpedia.web.np_schemas import NPIndex

AUTOMATIC_METHODS = [v.method for e in EXPLAINERS.values() for v in e.all_stored()]


class LatentRef(BaseModel):
    """A latent named the Neuronpedia way."""

    modelId: str = Field(max_length=200)
    layer: str = Field(max_length=200, description="the source id, e.g. 6-mlp")
    index: int = Field(ge=0)


class UserOut(BaseModel):
    username: str
    role: Literal["admin", "user"]
    created_at: datetime
    url: str


class ScoreOut(BaseModel):
    """One scorer's result; compare `score` with `baseline_score` (same scorer, a baseline explanation)."""

    id: int
    scorer: str = Field(description=" | ".join(SCORERS))
    scorer_model: str | None
    prompt_version: str | None
    status: Literal["ok", "error"]
    score: float | None
    baseline_score: float | None
    baseline_explanation_id: int | None
    details: dict[str, Any]
    error: str | None
    created_at: datetime


class ExplanationOut(BaseModel):
    """An explanation of a latent (Neuronpedia's `description` is `text`)."""

    id: int
    modelId: str
    layer: str
    index: NPIndex = Field(description="the latent's index, a decimal string as in Neuronpedia")
    text: str
    description: str = Field(description="the same as text (Neuronpedia's name)")
    method: str = Field(description=f"human, or the automatic method: {' | '.join(AUTOMATIC_METHODS)}")
    explainer_model: str | None
    typeName: str = Field(description="the same as method (Neuronpedia's name)")
    explanationModelName: str | None = Field(description="the same as explainer_model (Neuronpedia's name)")
    source: str = Field(description="the source id, the same as layer (what Neuronpedia's client reads)")
    prompt_version: str | None
    author: str | None = Field(description="username; null for automatic explanations")
    author_url: str | None
    vote_score: int = Field(description="sum of +1/-1 votes")
    scores: list[ScoreOut]
    details: dict[str, Any]
    created_at: datetime
    url: str = Field(description="the latent's page")


class CommentOut(BaseModel):
    id: int
    modelId: str
    layer: str
    index: NPIndex = Field(description="the latent's index, a decimal string as in Neuronpedia")
    username: str
    author_url: str
    text: str
    created_at: datetime
    url: str = Field(description="the latent's page")


class ListItemOut(BaseModel):
    modelId: str
    layer: str
    index: int
    note: str
    added_at: datetime
    url: str


class ListOut(BaseModel):
    id: int
    owner: str
    name: str
    description: str
    public: bool
    n_items: int
    created_at: datetime
    url: str
    api_url: str
    share_url: str | None = Field(description="link that opens the list without an account; shown to its owner only")


class ListPage(BaseModel):
    """`/list/{id}`: a list and its latents."""

    list: ListOut
    items: list[ListItemOut]
    editable: bool = Field(description="whether the viewer owns the list")


class UserPage(BaseModel):
    """`/user/{name}`: what a user wrote and collected."""

    user: UserOut
    explanations: list[ExplanationOut]
    comments: list[CommentOut]
    lists: list[ListOut] = Field(description="public lists (all of them for their owner)")


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="first 8 characters of the key")
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewApiKey(ApiKeyOut):
    key: str = Field(description="the API key: shown this once, stored only as a hash")


class AccountPage(BaseModel):
    """`/account`: the signed-in user, their API keys and lists; admins also see every user."""

    user: UserOut
    api_keys: list[ApiKeyOut]
    lists: list[ListOut]
    users: list[UserOut] | None = Field(description="every user (admins only)")


# requests


class LoginIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class LoginOut(BaseModel):
    user: UserOut
    csrf_token: str = Field(description="send it as x-csrf-token with writes that use the session cookie")


class NewUserIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    admin: bool = False


class PasswordIn(BaseModel):
    old_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class NewKeyIn(BaseModel):
    name: str = Field(default="default", max_length=200)


class NewExplanationIn(LatentRef):
    text: str = Field(min_length=1, max_length=LIMITS["explanation"])


class VoteIn(BaseModel):
    value: Literal[-1, 0, 1] = Field(description="+1, -1, or 0 to withdraw your vote")


class VoteOut(BaseModel):
    explanation_id: int
    vote_score: int
    my_vote: int


class NewCommentIn(LatentRef):
    text: str = Field(min_length=1, max_length=LIMITS["comment"])


class NewListIn(BaseModel):
    name: str = Field(min_length=1, max_length=LIMITS["list name"])
    description: str = Field(default="", max_length=LIMITS["description"])
    public: bool = False


class UpdateListIn(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=LIMITS["list name"])
    description: str | None = Field(default=None, max_length=LIMITS["description"])
    public: bool | None = None
    new_share_token: bool = Field(default=False, description="replace the share link (the old one stops working)")


class ListItemIn(LatentRef):
    note: str = Field(default="", max_length=LIMITS["note"])


class Done(BaseModel):
    ok: bool = True
    detail: str = ""
