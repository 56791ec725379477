"""Pydantic models of neighbours, matches and feature families (pages/families.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MatchedLatent(BaseModel):
    """A latent of some source matched to this one (decoder cosine or activation correlation)."""

    source: str = Field(description="source id (Neuronpedia's layer)")
    index: int
    value: float = Field(description="cosine of the decoder directions, or Pearson correlation of activations")
    url: str
    explanation: str | None = Field(default=None, description="its best explanation (best voted, then newest), if any")
    explanation_score: float | None = Field(default=None, description="that explanation's first ok score, if any")
    explanation_scorer: str | None = Field(default=None, description="the scorer of `explanation_score`")


class NeighbourGroup(BaseModel):
    """This latent's nearest latents in one source by one method."""

    source: str
    method: str = Field(description="decoder_cos | act_corr")
    latents: list[MatchedLatent]


class FamilyNode(BaseModel):
    """A latent in a family tree: its matches in the next wider source are its `children`."""

    source: str
    width: int
    index: int
    value: float | None = Field(description="how well it matches its parent (None for the root)")
    method: str | None
    explanation: str | None
    explanation_score: float | None = Field(default=None, description="the explanation's first ok score, if any")
    explanation_scorer: str | None = Field(default=None, description="the scorer of `explanation_score`")
    url: str
    family_url: str
    children: list[FamilyNode] = Field(default_factory=list)


class FamilyPage(BaseModel):
    """`/{model}/{source}/{index}/family` and `/api/family/{model}/{source}/{index}`: a latent, the
    latents it splits into in wider SAEs at the same hook (a tree across widths), its best match in
    each narrower SAE, and where it continues downstream / comes from upstream."""

    modelId: str
    layer: str
    index: int
    tree: FamilyNode
    parents: list[FamilyNode] = Field(description="best match in each narrower source at the same hook")
    continues_as: list[FamilyNode] = Field(description="best match at the next deeper layer")
    comes_from: list[FamilyNode] = Field(description="best match at the previous layer")
    min_match: float = Field(description="matches below this value are not shown as family")
    url: str
    api_url: str


class MatchSummary(BaseModel):
    """A computed source pair: the distribution of each latent's best match (universality)."""

    source: str
    other: str
    other_url: str
    method: str
    k: int
    median: float | None = Field(description="median best match over latents that fired")
    hist_edges: list[float]
    hist_counts: list[int]
    n_tokens: int | None = None


class RandomLatent(BaseModel):
    """`/api/random?explained=1`: a random (explained) latent."""

    modelId: str
    layer: str
    index: int
    explanation: str | None
    url: str
    api_url: str


class RecentExplanation(BaseModel):
    modelId: str
    layer: str
    index: int
    text: str
    author: str | None
    score: float | None = Field(description="its first ok score, if any")
    url: str
