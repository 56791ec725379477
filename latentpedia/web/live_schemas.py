"""Request and response bodies of the live-inference routes (Neuronpedia's field names)."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, Field, model_validator

from latentpedia.web.np_schemas import NPIndex

MAX_RESULTS = 200
MAX_K = 50
MAX_TEXTS = 8  # texts per batch request (Neuronpedia's client sends lists)
Texts = str | list[str]


class ActivationRequest(BaseModel):
    """`POST /api/activation/new`: one latent's per-token activations on `text`."""

    modelId: str
    layer: str = Field(validation_alias=AliasChoices("layer", "source"), description="the source id, e.g. 8-mlp")
    index: int = Field(ge=0, description="an integer, or a string of one as Neuronpedia sends it")
    text: Texts = Field(
        validation_alias=AliasChoices("text", "customText"), description=f"one text, or a list of up to {MAX_TEXTS} (answered by a list)"
    )

    @model_validator(mode="before")
    @classmethod
    def _nested_feature(cls, data: Any) -> Any:
        """Neuronpedia's client nests the latent: `{"feature": {modelId, layer, index}, "customText"}`."""
        if isinstance(data, dict) and isinstance(data.get("feature"), dict):
            data = {**data["feature"], **{k: v for k, v in data.items() if k != "feature"}}
        return data


class ActivationResult(BaseModel):
    modelId: str
    layer: str
    index: NPIndex = Field(description="the latent's index, a decimal string as in Neuronpedia's activation rows")
    tokens: list[str] = Field(description="display text of each token; tokens[0] is the BOS-like token we prepend")
    token_ids: list[int]
    values: list[float] = Field(description="the latent's activation at each token")
    maxValue: float = Field(description="max over the tokens after BOS")
    maxValueIndex: int
    maxValueTokenIndex: int = Field(description="the same as maxValueIndex (Neuronpedia's name)")
    source: str = Field(description="the source id (the same as layer)")
    url: str


class SearchRequest(BaseModel):
    """`POST /api/search-all` and `POST /api/search-topk-by-token`."""

    modelId: str
    text: Texts = Field(validation_alias=AliasChoices("text", "prompt"), description=f"one text, or a list of up to {MAX_TEXTS}")
    sources: list[str] | None = Field(
        default=None, validation_alias=AliasChoices("sources", "layers", "selectedLayers"),
        description="source ids to search (default: every built source of the model)",
    )  # fmt: skip
    ignoreBos: bool = Field(default=True, description="leave the first (BOS) token out of rankings")
    densityThreshold: float | None = Field(
        default=None, description="skip latents active on a larger fraction of tokens than this (None or <= 0: no ceiling)"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        """Neuronpedia's top-k client names one `source`; search-all's also sends `sourceSet` (unused)."""
        if isinstance(data, dict) and isinstance(data.get("source"), str) and not any(k in data for k in ("sources", "layers", "selectedLayers")):
            data = {**data, "sources": [data["source"]]}
        return data


class SearchAllRequest(SearchRequest):
    sortIndexes: list[int] = Field(default_factory=list, description="rank by the max over these token positions (default: all)")
    numResults: int = Field(default=20, ge=1, le=MAX_RESULTS)


class TopkRequest(SearchRequest):
    k: int = Field(default=5, ge=1, le=MAX_K, validation_alias=AliasChoices("k", "numResults"))


class SearchHit(BaseModel):
    modelId: str
    layer: str = Field(description="the source id")
    source: str = Field(description="the same as layer")
    index: NPIndex = Field(description="the latent's index, a decimal string as in Neuronpedia's search results")
    value: float = Field(description="the score the ranking used: max activation over the sorted positions")
    maxValue: float
    maxValueIndex: int
    values: list[float] = Field(description="activation at each token")
    frac_nonzero: float | None = Field(description="stored density of the latent")
    url: str
    api_url: str


class SearchAllResult(BaseModel):
    modelId: str
    tokens: list[str]
    token_ids: list[int]
    sources: list[str]
    sortIndexes: list[int]
    result: list[SearchHit]


class TokenLatent(BaseModel):
    layer: str
    index: int
    value: float
    url: str


class TopFeature(BaseModel):
    """Neuronpedia's entry of `topFeatures`."""

    featureIndex: int
    activationValue: float
    source: str


class TokenTop(BaseModel):
    position: int
    token: str
    top: list[TokenLatent]
    topFeatures: list[TopFeature] = Field(description="the same latents, Neuronpedia's field names")


class TopkResult(BaseModel):
    modelId: str
    tokens: list[str]
    token_ids: list[int]
    sources: list[str]
    k: int
    results: list[TokenTop]


class SearchAllBatch(BaseModel):
    """`search-all` on a list of texts: one result per text, in order (Neuronpedia's shape)."""

    results: list[SearchAllResult]


class TopkBatch(BaseModel):
    """`search-topk-by-token` on a list of texts: one result per text, in order."""

    results: list[TopkResult]


class LiveMeta(BaseModel):
    """`GET /api/search`: what can be searched and the limits that apply."""

    models: dict[str, list[str]] = Field(description="model id -> its built sources")
    max_chars: int
    max_tokens: int
    rate_per_minute: float
    burst: int
    max_results: int = MAX_RESULTS
    max_k: int = MAX_K
