"""Typed shapes of the latent map routes (web/routers/maps.py) and the feature page's map panel."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class MapPosition(BaseModel):
    """Where a latent sits on its source's map (the feature page's `map`)."""

    x: float
    y: float
    cluster: int
    u: float = Field(description="x scaled to [0, 1] over the map's extent (the thumbnail's left to right)")
    v: float = Field(description="y scaled to [0, 1] over the map's extent (the thumbnail's bottom to top)")
    url: str = Field(description="the map page, this latent highlighted")
    thumbnail_url: str


class MapPage(BaseModel):
    """`/{model}/{source}/map` and `/api/map/{model}/{source}`: every latent of a source on its
    2-D map, as parallel arrays (element i of each array is one latent)."""

    modelId: str
    layer: str = Field(description="the source id (Neuronpedia calls it layer)")
    n: int = Field(description="number of latents on the map")
    index: list[int]
    x: list[float]
    y: list[float]
    density: list[float | None] = Field(description="fraction of tokens on which the latent is active")
    score: list[float | None] = Field(description="score of the latent's best-scored explanation (None: none scored)")
    cluster: list[int]
    explanation: list[str | None] = Field(description="the latent's best-scored explanation, if any")
    n_clusters: int
    info: dict[str, Any] = Field(description="how the map was made: UMAP settings, space, seconds")
    url: str
    api_url: str
    source_url: str
    feature_url: str = Field(description="a latent's page: replace {index}")
    list_url: str = Field(description="POST here to make a list of selected latents (a logged-in user)")
    thumbnail_url: str
    highlight: int | None = Field(default=None, description="the latent to highlight (?highlight=)")


class MapListIn(BaseModel):
    """A new list made of latents selected on a map (a lasso)."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    indices: list[int] = Field(min_length=1, max_length=100_000)


class MapListOut(BaseModel):
    id: int
    url: str
    n_items: int


class UmapRequest(BaseModel):
    """Neuronpedia's `POST /api/umap` body."""

    modelId: str
    layers: list[str] = Field(min_length=1, max_length=64, description="source ids")


class UmapPoint(BaseModel):
    """One latent as Neuronpedia's `/api/umap` lists it."""

    modelId: str
    layer: str
    index: str
    description: str | None
    umap_x: float
    umap_y: float
    umap_cluster: int
    umap_log_feature_sparsity: float | None
