"""Request and response bodies of the attribution-graph routes (web/routers/graph.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GraphGenerateRequest(BaseModel):
    """Neuronpedia's field names where they exist (`modelId`, `prompt`, `maxNLogits`, ...)."""

    modelId: str
    prompt: str = Field(min_length=1)
    sources: list[str] | None = Field(default=None, description="transcoder sources to use (default: every transcoder of the model, one per layer)")
    maxNLogits: int = Field(default=10, ge=1, le=50)
    desiredLogitProb: float = Field(default=0.95, gt=0, le=1)
    nodeThreshold: float = Field(default=0.8, gt=0, le=1)
    edgeThreshold: float = Field(default=0.98, gt=0, le=1)
    maxFeatureNodes: int = Field(default=256, ge=1, le=20_000, description="latents whose incoming edges are computed, most influential first")
    slug: str | None = Field(default=None, max_length=200)


class GraphSaved(BaseModel):
    id: str = Field(description="the graph's public id")
    url: str = Field(description="its page, /graph/{id}")
    json_url: str
    title: str
    n_nodes: int
    n_links: int


class SubgraphRequest(BaseModel):
    """Pinned node ids and supernodes ([name, node id, ...]) to save as a new graph."""

    pinnedIds: list[str] = Field(default_factory=list, max_length=5000)
    supernodes: list[list[str]] = Field(default_factory=list, max_length=500)
    title: str | None = Field(default=None, max_length=200)


class GraphPage(BaseModel):
    """What the graph page shows; its JSON twin is the graph document itself."""

    id: str
    title: str
    model_id: str
    prompt: str
    origin: str
    json_url: str
    n_nodes: int
    n_links: int
    parent_url: str | None = None
    info: dict[str, Any] = Field(default_factory=dict)


class GraphListItem(BaseModel):
    id: str
    url: str
    title: str
    model_id: str
    origin: str
    created_at: str


class GraphIndexPage(BaseModel):
    graphs: list[GraphListItem]
    models: list[str]
