"""Request and response bodies of the experiment routes (steer, ablate, patch, logit lens, DLA).

`POST /api/steer` takes Neuronpedia's request shape (`prompt`, `modelId`, `features[{modelId,
layer, index, strength}]`, `steer_method`, `normalize_steering`, `n_completion_tokens`,
`temperature`, `seed`, `strength_multiplier`, `types`) so scripts written for it carry over.
Target tokens are given as text that is exactly one token (e.g. " Paris") or as an integer id.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field

STEER_METHODS = {
    "SIMPLE_ADDITIVE": "additive", "ORTHOGONAL_DECOMP": "orthogonal", "PROJECTION_CAP": "projection_cap",
    "additive": "additive", "orthogonal": "orthogonal", "projection_cap": "projection_cap",
}  # fmt: skip
TokenSpec = str | int
PATCH_HOOKS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "latent")
MAX_STEER_TOKENS = 256  # tokens generated per completion (experiments.steering.MAX_NEW_TOKENS)


class SteerFeature(BaseModel):
    modelId: str | None = Field(default=None, description="defaults to the request's modelId")
    layer: str = Field(validation_alias=AliasChoices("layer", "source"), description="the source id, e.g. 8-mlp")
    index: int = Field(ge=0)
    strength: float


class SteerVector(BaseModel):
    hook: str = Field(description="hook point, e.g. blocks.8.hook_resid_post")
    vector: list[float]
    strength: float = 1.0


class SteerRequest(BaseModel):
    prompt: str
    modelId: str
    features: list[SteerFeature] = Field(default_factory=list)
    vectors: list[SteerVector] = Field(default_factory=list)
    steer_method: str = Field(default="SIMPLE_ADDITIVE", description=f"one of {', '.join(STEER_METHODS)}")
    normalize_steering: bool = Field(default=False, description="rescale each direction to unit norm first")
    n_completion_tokens: int = Field(default=32, validation_alias=AliasChoices("n_completion_tokens", "n_tokens"))  # bounded by SteerConfig
    temperature: float = 0.5
    seed: int = 16
    strength_multiplier: float = 1.0
    freq_penalty: float = 0.0
    types: list[Literal["STEERED", "DEFAULT"]] = Field(default_factory=lambda: ["STEERED", "DEFAULT"])
    positions: list[int] | None = Field(default=None, description="absolute token positions to steer (default: all, generated ones too)")
    stream: bool = Field(default=False, description="answer as text/event-stream (Neuronpedia's): `data: {STEERED, DEFAULT so far}` per token")


class Completion(BaseModel):
    type: Literal["STEERED", "DEFAULT"]
    text: str = Field(description="the completion alone")
    tokens: list[str]
    token_ids: list[int]


class SteerResult(BaseModel):
    modelId: str
    prompt: str
    STEERED: str | None = Field(default=None, description="prompt + steered completion (Neuronpedia's field)")
    DEFAULT: str | None = Field(default=None, description="prompt + default completion")
    outputs: list[Completion]
    settings: dict
    id: str | None = Field(default=None, description="kept for a signed-in caller (API key or session): /steer/{id} shows it again")
    shareUrl: str | None = None


class LatentRef(BaseModel):
    modelId: str
    layer: str = Field(validation_alias=AliasChoices("layer", "source"), description="the source id")
    index: int = Field(ge=0)


class AblateRequest(LatentRef):
    prompt: str
    mode: Literal["zero", "mean", "resample"] = "zero"
    target_tokens: list[TokenSpec] = Field(default_factory=list, description="tokens whose log-probabilities to report")
    positions: list[int] | None = Field(default=None, description="positions to ablate (default: all but BOS)")
    seed: int = 0


class TargetEffect(BaseModel):
    token: str
    token_id: int
    before: list[float] = Field(description="log-probability at each position, before")
    after: list[float]


class AblateResult(BaseModel):
    modelId: str
    layer: str
    index: int
    mode: str
    replacement: str = Field(description="where the replacement values came from")
    tokens: list[str]
    token_ids: list[int]
    activations: list[float]
    replaced: list[float]
    loss_before: list[float | None] = Field(description="next-token loss at each position (None at the last)")
    loss_after: list[float | None]
    mean_loss_before: float | None
    mean_loss_after: float | None
    targets: list[TargetEffect]


class PatchRequest(BaseModel):
    modelId: str
    clean_prompt: str
    corrupted_prompt: str
    answer_token: TokenSpec = Field(description="the clean run's answer")
    foil_token: TokenSpec = Field(description="the corrupted run's answer")
    hook: Literal[PATCH_HOOKS] = "resid_pre"
    layers: list[int] | None = None
    layer: str | None = Field(default=None, description="hook 'latent': the source id")
    index: int | None = Field(default=None, ge=0, description="hook 'latent': the latent")
    batch_size: int = Field(default=16, ge=1, le=64)


class PatchResult(BaseModel):
    modelId: str
    hook: str
    layers: list[int] = Field(description="heatmap rows (empty for a latent: one row)")
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    scores: list[list[float]] = Field(description="[row][position]: 0 = corrupted, 1 = clean")
    logit_diff_clean: float
    logit_diff_corrupted: float
    n_forward: int
    n_patched: int
    batch_size: int
    seconds: float


class LensRequest(BaseModel):
    modelId: str
    prompt: str
    k: int = Field(default=5, ge=1, le=20)
    target_token: TokenSpec | None = None
    layers: list[int] | None = None


class LensToken(BaseModel):
    token: str
    id: int
    prob: float


class LensResult(BaseModel):
    modelId: str
    tokens: list[str]
    layers: list[int]
    top: list[list[list[LensToken]]] = Field(description="[layer][position][rank]")
    target: str | None = None
    target_probs: list[list[float]] | None = None
    target_ranks: list[list[int]] | None = None


class DLARequest(BaseModel):
    modelId: str
    prompt: str
    target_token: TokenSpec
    position: int = Field(default=-1, description="absolute position, or negative from the end")
    layer: str | None = Field(default=None, description="a source id: DLA of its active latents (or of `index`)")
    index: int | None = Field(default=None, ge=0, description="with `layer`: one latent at every position")
    top: int = Field(default=20, ge=1, le=200)


class DLAItem(BaseModel):
    label: str
    contribution: float
    activation: float | None = None
    per_unit: float | None = Field(default=None, description="logit effect per unit activation (the feature page's value)")
    url: str | None = None


class DLAResult(BaseModel):
    modelId: str
    kind: Literal["components", "source", "latent"]
    tokens: list[str]
    target: str
    target_id: int
    position: int | None
    target_logit: float | None = Field(description="the model's actual logit at `position`")
    items: list[DLAItem] = Field(default_factory=list)
    others: float = Field(default=0.0, description="sum of contributions not listed")
    remainder: float = Field(default=0.0, description="target_logit - sum(items) - others")
    decomposition: str
    activations: list[float] | None = Field(default=None, description="latent: activation at each position")
    contributions: list[float] | None = Field(default=None, description="latent: direct contribution at each position")
    target_logits: list[float] | None = None
