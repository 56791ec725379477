"""What the lab pages take and return: `/toy` (+ `/api/toy`) and `/benchmarks` (+ `/api/benchmarks`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

# Bounds of a web retrain, measured with the 2 cores loaded ~5x over: the default request takes
# 12 s of the torch worker, the largest 37 s (the route's timeout is 60 s); less on idle cores.
WEB_MAX_FEATURES, WEB_MAX_HIDDEN, WEB_MAX_STEPS = 64, 32, 2000
WEB_SWEEP = 10  # sparsities of the sweep trained beside the one asked for


class ToyRequest(BaseModel):
    """A toy model of superposition to train (bounded so one request cannot hog the server)."""

    n_features: int = Field(30, ge=2, le=WEB_MAX_FEATURES, description="input features n")
    n_hidden: int = Field(6, ge=1, le=WEB_MAX_HIDDEN, description="hidden dimensions m (< n)")
    importance_decay: float = Field(1.0, gt=0, le=1, description="I_i = decay^i (1: uniform)")
    sparsity: float = Field(0.97, ge=0, lt=1, description="the sparsity S of the model shown in detail")
    steps: int = Field(1000, ge=100, le=WEB_MAX_STEPS, description="training steps")
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _fewer_hidden_than_features(self) -> ToyRequest:
        if self.n_hidden >= self.n_features:
            raise ValueError(f"n_hidden ({self.n_hidden}) must be smaller than n_features ({self.n_features})")
        return self


class ToyInstanceOut(BaseModel):
    """One trained model of the sweep."""

    sparsity: float
    density_inverse: float = Field(description="1 / (1 - S)")
    loss: float
    dims_per_feature: float = Field(description="D* = m / ||W||_F^2")
    feature_norms: list[float]
    dimensionality: list[float] = Field(description="D_i = ||W_i||^2 / sum_j (Ŵ_i · W_j)^2")
    geometry: dict[str, int] = Field(description="represented features on each sticky fraction, 'other', 'not represented'")


class ToyResult(BaseModel):
    """A sparsity sweep of toy models, and the detail of the one at the asked sparsity."""

    config: dict[str, Any]
    selected: int = Field(description="index in `instances` of the model at the asked sparsity")
    instances: list[ToyInstanceOut]
    wtw: list[list[float]] = Field(description="WᵀW of the selected model, [n, n]")
    superposition: list[float] = Field(description="sum_{j != i} (Ŵ_i · W_j)^2 per feature of the selected model")
    sticky_fractions: dict[str, str] = Field(description="fraction -> the geometry it stands for")
    seconds: float


class ToyPage(BaseModel):
    """The /toy page: the form, and the result (or why there is none)."""

    form: ToyRequest
    result: ToyResult | None = None
    error: str | None = None


class BenchmarkRow(BaseModel):
    """One SAE of the atlas with its quality and benchmark figures (None: not measured)."""

    model: str
    source: str
    url: str
    architecture: str | None
    width: int
    layer: int | None
    l0: float | None = None
    explained_variance: float | None = None
    ce_loss_recovered: float | None = None
    dead_fraction: float | None = None
    absorption: float | None = None
    absorption_miss_rate: float | None = None
    sparse_probing_top1: float | None = None
    sparse_probing_top5: float | None = None
    sparse_probing_hook: float | None = None
    autointerp_score: float | None = None
    autointerp_beats_baseline: float | None = None
    sparse_probing: dict[str, dict[str, float]] = Field(default_factory=dict, description="per task: top1, top5, hook accuracies")
    bench_seconds: dict[str, float] = Field(default_factory=dict, description="seconds each metric took")


class BenchmarksPage(BaseModel):
    """Every SAE of the atlas, comparable: /benchmarks and /api/benchmarks."""

    rows: list[BenchmarkRow]
    measured: int = Field(description="SAEs with at least one benchmark metric (`latentpedia saebench`)")
