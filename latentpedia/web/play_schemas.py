"""Typed request and response models of the game's routes (web/routers/play.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from latentpedia.web.community_schemas import LatentRef


class PlayIn(LatentRef):
    """Which latent is being played: Neuronpedia's `modelId`, `layer` (source id), `index`, and
    the campaign it is played in (none: played from its feature page), `daily` for today's puzzle."""

    campaign: str | None = Field(default=None, max_length=64)
    daily: bool = False


class SubmitIn(PlayIn):
    text: str = Field(min_length=1, max_length=2000)


class VoteIn(BaseModel):
    explanation_id: int
    campaign: str | None = Field(default=None, max_length=64)
    daily: bool = False


class ReportIn(BaseModel):
    explanation_id: int
    reason: str = Field(default="", max_length=1000)


class ModerateIn(BaseModel):
    explanation_id: int
    action: Literal["hide", "restore", "dismiss", "ban"]


class PrefsIn(BaseModel):
    mode: Literal["simple", "advanced"] | None = None
    tutorial_done: bool | None = None


class PrefsOut(BaseModel):
    mode: str
    tutorial_done: bool


class SignupIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    invite: str | None = Field(default=None, max_length=40)


class DeleteAccountIn(BaseModel):
    mode: Literal["anonymise", "remove"] = "anonymise"
    password: str = Field(max_length=1024)


class CampaignIn(BaseModel):
    slug: str = Field(max_length=64)
    title: str = Field(default="", max_length=200)
    modelId: str
    layer: str
    indices: list[int] | None = Field(default=None, description="latents to cover (default: the whole source)")
    list_id: int | None = Field(default=None, description="or: the latents of this list (of one source)")
    order: Literal["unexplained", "dense", "sparse", "index"] = "unexplained"
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class Progress(BaseModel):
    latents: int
    beating_baseline: int
    fraction: float
    label: str


class CampaignOut(BaseModel):
    slug: str
    title: str
    modelId: str
    layer: str
    order: str
    n_latents: int | None = Field(description="chosen latents (None: the whole source)")
    starts_at: datetime | None
    ends_at: datetime | None
    contest: bool
    active: bool
    progress: Progress
    url: str


class Example(BaseModel):
    tokens: list[str]
    values: list[float]
    maxValue: float
    maxValueTokenIndex: int


class PuzzleExplanation(BaseModel):
    id: int
    text: str
    author: str | None
    machine: bool
    vote_score: int
    my_vote: int
    mine: bool


class Me(BaseModel):
    username: str
    points: int
    streak: int
    mode: str
    tutorial_done: bool
    share: str | None


class Puzzle(BaseModel):
    campaign: str
    campaign_title: str
    modelId: str
    layer: str
    index: int | None
    daily: str | None
    done: bool = Field(description="the player has played every latent of the campaign")
    clues: list[Example] = []
    quantiles: list[Example] = []
    frac_nonzero: float | None = None
    max_act: float | None = None
    pos_str: list[str] = []
    pos_values: list[float] = []
    neg_str: list[str] = []
    neg_values: list[float] = []
    explanations: list[PuzzleExplanation] = []
    already_played: list[str] = []
    me: Me | None = None
    feature_url: str | None = None


class Reference(BaseModel):
    id: int | None = None
    text: str
    score: float | None
    author: str | None = None


class PlayResult(BaseModel):
    action: Literal["explain", "duplicate", "vote", "skip"]
    outcome: str = Field(description="best | beat | below (the baseline) | duplicate | vote | skip")
    points: int = Field(description="points earned now (votes earn theirs on the boards while they back the best)")
    explanation_id: int | None = None
    score: float | None = None
    baseline: float | None = None
    machine: Reference | None = None
    best: Reference | None = None
    previous_best: float | None = None
    duplicate_of: str | None = None
    similarity: float | None = None
    vote_score: int | None = None
    total_points: int
    next_url: str | None = None
    scoring_later: list[str] = Field(default=[], description="scorers still running in the background (an LLM's): their "
                                     "results appear in `other_scores` on the player page")


class BoardRow(BaseModel):
    rank: int
    username: str
    points: int
    explanations: int
    votes: int
    skips: int


class Board(BaseModel):
    period: str
    campaign: str | None
    rows: list[BoardRow]


class PlayHome(BaseModel):
    campaigns: list[CampaignOut]
    daily: str | None = Field(description="URL of today's puzzle")
    signup: str = Field(description="open | invite | closed")
    me: Me | None
    board: Board


class OtherScore(BaseModel):
    scorer: str = Field(description="e.g. detection, simulation (an LLM's, scored in the background after the submit)")
    status: str
    score: float | None
    baseline: float | None


class PlayerExplanation(BaseModel):
    id: int
    text: str
    modelId: str
    layer: str
    index: int
    score: float | None = Field(description="the game's held-out embedding score (points are on it)")
    points: int
    vote_score: int
    other_scores: list[OtherScore] = Field(default=[], description="other scorers' results on the atlas's score split")


class PlayerPage(BaseModel):
    username: str
    points: int
    streak: int
    plays: int
    explanations: list[PlayerExplanation]


class ReportOut(BaseModel):
    id: int
    explanation_id: int
    reporter: str
    reason: str
    status: str
    text: str | None
    author: str | None
    modelId: str | None
    layer: str | None
    index: int | None


class InviteOut(BaseModel):
    code: str
    created_at: datetime
    used_at: datetime | None
    used_by: str | None


class AdminPage(BaseModel):
    campaigns: list[CampaignOut]
    reports: list[ReportOut]
    invites: list[InviteOut]
    signup: str
