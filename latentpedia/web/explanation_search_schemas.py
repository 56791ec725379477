"""Request and response bodies of explanation search (web/routers/explanation_search.py).

The `POST /api/explanation/search*` bodies and result rows carry Neuronpedia's field names and
types (`modelId`, `layers`, `query`, `offset`; rows with `modelId`, `layer` = source id, `index`
as a string, `description`, `typeName`, `explanationModelName`, `cosine_similarity`, `neuron`;
`resultsCount`, `hasMore`, `nextOffset`); latentpedia's own extras are added beside them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

MAX_QUERY = 500  # characters
PAGE_SIZE = 20  # Neuronpedia's MAX_EXPLANATION_SEARCH_RESULTS
MAX_OFFSET = 1000
SearchMode = Literal["hybrid", "semantic", "text"]

Query = Field(description="what to look for (at least 3 characters, at most 500)", min_length=3, max_length=MAX_QUERY,
              examples=["python exceptions"])  # fmt: skip
Offset = Field(0, ge=0, le=MAX_OFFSET, description="skip this many results (pagination)")


class SearchAllIn(BaseModel):
    """`POST /api/explanation/search-all`: every model and source of the atlas."""

    query: str = Query
    offset: int = Offset


class SearchModelIn(SearchAllIn):
    """`POST /api/explanation/search-model`: one model's sources."""

    modelId: str = Field(description="the model id, e.g. smollm2-135m", max_length=200)


class SearchSourcesIn(SearchModelIn):
    """`POST /api/explanation/search`: some sources of one model."""

    layers: list[str] = Field(description="source ids, e.g. [\"8-mlp\", \"14-res-topk-4.5k\"]", min_length=1, max_length=64)


class NeuronActivation(BaseModel):
    """The top example of a latent (Neuronpedia's activation row, BOS left out)."""

    tokens: list[str]
    values: list[float]
    maxValue: float
    maxValueTokenIndex: int


class NeuronSummary(BaseModel):
    """The latent a result explains (Neuronpedia's `neuron`)."""

    modelId: str
    layer: str
    index: str
    maxActApprox: float | None
    frac_nonzero: float | None
    activations: list[NeuronActivation]


class ExplanationResult(BaseModel):
    """One search result: an explanation row with Neuronpedia's names, plus our extras."""

    id: str
    modelId: str
    layer: str
    index: str
    description: str
    typeName: str
    explanationModelName: str | None
    authorName: str | None = Field(description="the author's username; null for automatic explanations")
    cosine_similarity: float | None = Field(description="cosine of the query and explanation embeddings")
    score: float | None = Field(description="the explanation's best scorer value (ok scores only)")
    scorer: str | None
    frac_nonzero: float | None = Field(description="the latent's density")
    rank_score: float = Field(description="reciprocal-rank-fusion score of the semantic and full-text lists")
    text_rank: int | None = Field(description="rank in the full-text list (null: not a full-text match)")
    url: str
    neuron: NeuronSummary | None


class SearchResponse(BaseModel):
    """Neuronpedia's search answer: the request echoed, the results and the next page."""

    request: dict
    results: list[ExplanationResult]
    resultsCount: int
    hasMore: bool
    nextOffset: int | None


class SearchFilters(BaseModel):
    model: str | None = None
    sources: list[str] = []
    method: list[str] = []
    author: str | None = None
    min_score: float | None = None
    min_density: float | None = None
    max_density: float | None = None


class ExplanationSearchPage(BaseModel):
    """`/search/explanations` and its JSON twin `/api/search/explanations`."""

    q: str
    mode: SearchMode
    filters: SearchFilters
    offset: int
    limit: int
    results: list[ExplanationResult]
    hasMore: bool
    nextOffset: int | None
    index: dict = Field(description="the vector index: kind (exact, hnsw, pgvector), size, explanations not yet embedded")
    models: dict[str, list[str]] = Field(description="models and their sources (the filter choices)")
    methods: list[str]
