"""Request and response bodies of the Neuronpedia-compatible routes (web/routers/neuronpedia_compat.py).

Field names and types are Neuronpedia's (its webapp API and the official `neuronpedia` Python
client): `index` is a string where Neuronpedia sends one, `layer` is the source id, error
answers carry `{"error": ...}` (web/errors.py). docs/neuronpedia.md maps every call and lists the differences.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, Field, PlainSerializer

from latentpedia.web.experiment_schemas import MAX_STEER_TOKENS, SteerFeature

MAX_TEXTS = 8  # texts per batch request (Neuronpedia: 4 for activation/source)
MAX_LIST_ITEMS = 128

NPIndex = Annotated[int, PlainSerializer(str, return_type=str, when_used="json")]
"""A latent's index: an int in Python (pages do arithmetic with it), a decimal string in JSON,
as in Neuronpedia's feature, explanation, comment and activation objects."""


# ---------------------------------------------------------------------------- activation/source


class ActivationSourceRequest(BaseModel):
    """`POST /api/activation/source`: every latent of one source on one text or a few texts."""

    modelId: str
    source: str = Field(validation_alias=AliasChoices("source", "layer"), description="the source id, e.g. 8-mlp")
    customText: str | list[str] = Field(
        validation_alias=AliasChoices("customText", "text"), description="one text, or a list of up to 8 texts"
    )


class ActivationSourceText(BaseModel):
    tokens: list[str] = Field(description="display text of each token; tokens[0] is the BOS-like token we prepend")
    token_ids: list[int]
    activeFeatures: dict[str, list[tuple[int, float]]] = Field(
        description="latent index (a string) -> [[token position, value], ...] of its non-zero activations after BOS"
    )


class ActivationSourceResult(BaseModel):
    modelId: str
    source: str
    results: list[ActivationSourceText] = Field(description="one entry per text, in order")


# ---------------------------------------------------------------------------- steer-chat


class ChatMessage(BaseModel):
    role: Literal["user", "assistant", "system", "model", "developer"]
    content: str


class SteerChatRequest(BaseModel):
    """`POST /api/steer-chat`: a chat reply with and without `features` steering (Neuronpedia's shape)."""

    modelId: str
    features: list[SteerFeature] = Field(default_factory=list)
    defaultChatMessages: list[ChatMessage] = Field(min_length=1, max_length=64)
    steeredChatMessages: list[ChatMessage] = Field(min_length=1, max_length=64)
    steer_method: str = "SIMPLE_ADDITIVE"
    normalize_steering: bool = False
    n_tokens: int = Field(default=32, ge=1, le=MAX_STEER_TOKENS, validation_alias=AliasChoices("n_tokens", "n_completion_tokens"))
    temperature: float = 0.5
    freq_penalty: float = 0.0
    seed: int = 16
    strength_multiplier: float = 1.0
    steer_special_tokens: bool = Field(default=True, description="accepted for compatibility; every position is steered")
    stream: bool = Field(default=False, description="answer as text/event-stream: `data: {partial result}` per token")


class ChatOutput(BaseModel):
    raw: str = Field(description="the chat prompt as the model saw it, then the reply")
    chatTemplate: list[ChatMessage] = Field(description="the messages, then the assistant's reply")


class SteerChatResult(BaseModel):
    modelId: str
    STEERED: ChatOutput | None = None
    DEFAULT: ChatOutput | None = None
    settings: dict
    id: str | None = Field(default=None, description="kept for a signed-in caller: /steer/{id} shows it again")
    shareUrl: str | None = None


# ---------------------------------------------------------------------------- lists


class ListIdIn(BaseModel):
    listId: str | int = Field(description="the list's id")


class NPListFeatureIn(BaseModel):
    modelId: str
    layer: str = Field(validation_alias=AliasChoices("layer", "source"), max_length=200)
    index: int = Field(ge=0, description="an integer or a string of one, as Neuronpedia sends it")
    description: str = Field(default="", max_length=2000)


class AddFeaturesIn(ListIdIn):
    featuresToAdd: list[NPListFeatureIn] = Field(min_length=1, max_length=MAX_LIST_ITEMS)


class NPListNeuron(BaseModel):
    modelId: str
    layer: str
    index: str
    description: str
    url: str


class NPListSummary(BaseModel):
    id: str
    name: str
    description: str
    public: bool
    url: str


class NPListFull(NPListSummary):
    neurons: list[NPListNeuron]


# ---------------------------------------------------------------------------- quick-list


class QuickListItem(BaseModel):
    modelId: str
    layer: str
    index: str
    found: bool = Field(description="false: the atlas has no such model, source or latent")
    explanation: str | None = Field(default=None, description="the best-voted explanation, if any")
    url: str | None


class QuickListPage(BaseModel):
    """`/quick-list?name=...&features=[{modelId, layer, index}, ...]` (the URL SAELens builds)."""

    name: str
    features: list[QuickListItem]


# ---------------------------------------------------------------------------- shared steering


class SharedSteer(BaseModel):
    """`/steer/{id}`: a kept steering answer (Neuronpedia's share link)."""

    id: str
    modelId: str
    kind: Literal["completion", "chat"]
    result: dict = Field(description="the answer as /api/steer or /api/steer-chat gave it")
    created_at: str
    url: str
