"""Pydantic models of what the web app returns: the JSON API contract (see /openapi.json).

Each page's data model is what both its HTML template and its JSON twin are made from.
Field names follow Neuronpedia's feature JSON where one exists (camelCase included), so
scripts written for it carry over; our extras use snake_case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from latentpedia.web.community_schemas import CommentOut, ExplanationOut
from latentpedia.web.family_schemas import MatchedLatent, MatchSummary, NeighbourGroup, RecentExplanation
from latentpedia.web.map_schemas import MapPosition
from latentpedia.web.np_schemas import NPIndex


class ErrorBody(BaseModel):
    """A JSON error (web/errors.py): `error` (Neuronpedia's key) and `detail` (FastAPI's) say
    what was not found or not valid."""

    error: str = Field(description="the message in one line")
    detail: str = Field(description="the same message")


class ModelInfo(BaseModel):
    id: str
    family: str
    n_layers: int
    d_model: int
    d_mlp: int
    vocab_size: int


class SourceInfo(BaseModel):
    """A source as listed on the home page and shown on its own pages."""

    model: str
    name: str
    kind: str
    hook_name: str
    layer: int | None
    width: int = Field(description="number of latents (d_sae)")
    d_in: int
    tokens_seen: int | None = Field(description="tokens the statistics were computed over (BOS excluded)")
    status: str
    format: str | None
    built_at: datetime | None
    logits_basis: str | None = Field(description="how ± logits were computed, e.g. final_norm_scale*W_U")
    quality: dict[str, float] = Field(
        default_factory=dict, description="SAE evaluation figures when known (meta['quality']: l0, explained_variance, ce_loss_recovered, ...)"
    )
    live: bool = Field(default=True, description="false: a static source (imported without its model or weights): no live features")
    url: str
    api_url: str
    map_url: str | None = Field(default=None, description="the source's latent map page (None until its map is computed)")
    map_thumbnail_url: str | None = Field(default=None, description="the map as a small SVG")


class JobInfo(BaseModel):
    id: int
    kind: str
    target: str
    status: str
    progress: float
    message: str
    updated_at: datetime


class HomePage(BaseModel):
    """`/`: what the atlas holds."""

    models: list[ModelInfo]
    sources: list[SourceInfo]
    jobs: list[JobInfo]
    arriving: list[JobInfo] = Field(default_factory=list, description="the default atlas's stages still queued or running (`latentpedia demo`), oldest first")
    random_explained_url: str | None = Field(default=None, description="redirects to a random explained latent (None: nothing explained yet)")
    recent_explanations: list[RecentExplanation] = Field(default_factory=list, description="recently voted, then newest explanations")


class LatentRow(BaseModel):
    index: int
    max_act: float | None
    frac_nonzero: float | None
    mean_act: float | None
    url: str
    explanation: str | None = Field(default=None, description="the best-voted explanation, if any")


LatentOrder = Literal["index", "max_act", "frac_nonzero", "mean_act"]


class SourcePage(BaseModel):
    """`/{model}/{source}`: one page of the source's latents, sorted and filtered."""

    source: SourceInfo
    latents: list[LatentRow]
    total: int = Field(description="latents matching the filters")
    offset: int
    limit: int
    order_by: LatentOrder
    desc: bool
    min_density: float | None
    max_density: float | None
    explained: bool | None = Field(default=None, description="filter: only latents with (true) / without (false) an explanation")
    prev_url: str | None
    next_url: str | None
    matches: list[MatchSummary] = Field(default_factory=list, description="computed neighbour / match pairs with their best-match distribution (universality)")


class Activation(BaseModel):
    """One example window with per-token values (dense, window length, BOS first); Neuronpedia's
    activation row fields (modelId, layer, source, string index, binMin/binMax/binContains) too."""

    modelId: str
    layer: str = Field(description="the source id")
    source: str = Field(description="the same as layer (what Neuronpedia's client reads)")
    index: str = Field(description="the latent's index, a string as in Neuronpedia")
    tokens: list[str] = Field(description="display text of each token of the window")
    token_ids: list[int]
    values: list[float]
    maxValue: float
    maxValueTokenIndex: int
    binMin: float | None = Field(description="lower bound of the quantile interval (None for top examples)")
    binMax: float | None
    binContains: float | None = Field(default=None, description="fraction of the latent's activations in the interval, when known")
    kind: Literal["top", "quantile"]
    group: int = Field(description="quantile interval 0..9 of (0, max], -1 for top examples")
    window: int = Field(description="window index in the source's corpus")


class QuantileGroup(BaseModel):
    group: int
    binMin: float
    binMax: float
    count: int


class LinkedLatent(BaseModel):
    """A latent of the same source related to this one (a correlated latent)."""

    index: int
    value: float
    url: str


class DecoderEntry(BaseModel):
    """A large entry of the latent's decoder/output direction."""

    dim: int
    value: float


class FeaturePage(BaseModel):
    """`/{model}/{source}/{index}` and `/api/feature/{model}/{source}/{index}`."""

    modelId: str
    layer: str = Field(description="the source id (Neuronpedia calls it layer)")
    index: NPIndex = Field(description="the latent's index, a decimal string as in Neuronpedia")
    source: SourceInfo
    max_act: float | None
    mean_act: float | None
    frac_nonzero: float | None
    density_log10: float | None
    pos_str: list[str]
    pos_values: list[float]
    pos_token_ids: list[int]
    neg_str: list[str]
    neg_values: list[float]
    neg_token_ids: list[int]
    logits_basis: str | None
    freq_hist_data_bar_heights: list[int]
    freq_hist_data_bar_values: list[float]
    logits_hist_data_bar_heights: list[int]
    logits_hist_data_bar_values: list[float]
    activations: list[Activation]
    quantile_groups: list[QuantileGroup]
    explanations: list[ExplanationOut] = Field(default_factory=list, description="best voted first, with scores")
    comments: list[CommentOut] = Field(default_factory=list)
    aligned: list[DecoderEntry]
    aligned_space: str | None = Field(description="the space decoder entries index, e.g. blocks.6.hook_mlp_out")
    correlated: list[LinkedLatent]
    map: MapPosition | None = Field(default=None, description="where the latent sits on its source's map (None: no map yet)")
    topkCosSimIndices: list[int] = Field(default_factory=list, description="this source's latents nearest by decoder cosine, the latent itself first (Neuronpedia's name)")
    topkCosSimValues: list[float] = Field(default_factory=list, description="their decoder cosines")
    neuron_alignment_indices: list[int] = Field(default_factory=list, description="the dims of `aligned` (Neuronpedia's name)")
    neuron_alignment_values: list[float] = Field(default_factory=list, description="the values of `aligned`")
    neuron_alignment_l1: list[float] = Field(default_factory=list, description="not computed: empty")
    correlated_features_indices: list[int] = Field(default_factory=list, description="the latents of `correlated` (Neuronpedia's name)")
    correlated_features_pearson: list[float] = Field(default_factory=list, description="their Pearson correlation")
    correlated_features_l1: list[float] = Field(default_factory=list, description="not computed: empty")
    correlated_neurons_indices: list[int] = Field(default_factory=list, description="not computed: empty")
    correlated_neurons_pearson: list[float] = Field(default_factory=list, description="not computed: empty")
    correlated_neurons_l1: list[float] = Field(default_factory=list, description="not computed: empty")
    neighbours: list[NeighbourGroup] = Field(default_factory=list, description="nearest latents per source (decoder_cos) and best activation matches (act_corr)")
    continues_as: MatchedLatent | None = Field(default=None, description="best match at the next deeper layer")
    family_url: str | None = None
    url: str
    api_url: str
    prev_url: str | None
    next_url: str | None
    random_url: str
