"""Request and response models of the exchange routes: Neuronpedia's feature upload batch
(`POST /api/feature/upload-batch`), field for field, plus two optional latentpedia fields for
creating the source (`dSae`, `hookName`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class UploadLogit(BaseModel):
    token: str = Field(max_length=200)
    value: float


class UploadExplanation(BaseModel):
    text: str = Field(min_length=1, max_length=512)
    methodName: str | None = Field(default=None, max_length=50)
    modelName: str | None = Field(default=None, max_length=200)


class UploadActivation(BaseModel):
    """One example: token texts and the latent's value at each (as many values as tokens)."""

    tokens: list[str] = Field(min_length=1, max_length=1024)
    values: list[float] = Field(min_length=1, max_length=1024)
    quantileMax: float | None = Field(default=None, le=99_999_999)
    quantileMin: float | None = Field(default=None, le=99_999_999, description="absent: a top example")
    quantileFraction: float | None = Field(default=None, ge=0, le=1)


class UploadFeature(BaseModel):
    index: int = Field(ge=0, le=10_000_000)
    density: float | None = Field(default=None, ge=0, le=1)
    topLogits: list[UploadLogit] | None = Field(default=None, max_length=20)
    bottomLogits: list[UploadLogit] | None = Field(default=None, max_length=20)
    explanations: list[UploadExplanation] | None = None
    activations: list[UploadActivation] = Field(min_length=1)


class UploadBatchIn(BaseModel):
    """Neuronpedia's upload-batch body: up to 128 features of one source."""

    modelId: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200, description="the source id, e.g. 6-res-jb")
    features: list[UploadFeature] = Field(min_length=1, max_length=128)
    dSae: int | None = Field(default=None, ge=1, le=10_000_001, description="latentpedia: the width of a new source")
    hookName: str | None = Field(default=None, max_length=200, description="latentpedia: the hook of a new source")


class UploadBatchOut(BaseModel):
    message: str
    features: int
    activations: int
    explanations: int
