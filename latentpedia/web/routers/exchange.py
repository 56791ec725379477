"""Exchange routes: Neuronpedia's feature upload batch, for admins (session or API key)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from latentpedia.errors import InvalidInputError
from latentpedia.exchange.upload import UploadConflictError, upload_batch
from latentpedia.web.auth import AdminUser
from latentpedia.web.deps import StoreDep
from latentpedia.web.exchange_schemas import UploadBatchIn, UploadBatchOut
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["exchange"])
ERRORS = {
    400: {"model": ErrorBody, "description": "a malformed feature (the detail names the field)"},
    401: {"model": ErrorBody, "description": "not signed in"},
    403: {"model": ErrorBody, "description": "admins only"},
    404: {"model": ErrorBody, "description": "unknown model, or unknown source without dSae"},
    409: {"model": ErrorBody, "description": "the source was built from the model"},
}


@router.post("/api/feature/upload-batch", response_model=UploadBatchOut, responses=ERRORS)
def feature_upload_batch(body: UploadBatchIn, store: StoreDep, user: AdminUser) -> UploadBatchOut:
    """Add or replace up to 128 features of one source (Neuronpedia's upload-batch shape), with
    their activations, logits and explanations, in one transaction."""
    features = [f.model_dump() for f in body.features]
    try:
        result = upload_batch(store, body.modelId, body.source, features, author_id=user.id,
                              d_sae=body.dSae, hook_name=body.hookName)  # fmt: skip
    except UploadConflictError as err:
        raise HTTPException(409, str(err)) from None
    except InvalidInputError as err:
        raise HTTPException(400, str(err)) from None
    return UploadBatchOut(message=f"{result.features} features created.", features=result.features,
                          activations=result.activations, explanations=result.explanations)  # fmt: skip
