"""Marks POST routes that write nothing in the OpenAPI spec.

Routes declared with `openapi_extra=COMPUTE_EXTRA` run a model on a caller's text but write
nothing; they are rate limited (web/ratelimit.py). Routes declared with `openapi_extra=READ_EXTRA`
only read, but take their query as a POST body because Neuronpedia's API does (`/api/umap`,
`/api/list/get`). The auth test that walks the spec for write routes skips both kinds.
"""

COMPUTE_EXTENSION = "x-latentpedia-compute"
COMPUTE_EXTRA = {COMPUTE_EXTENSION: True}
READ_EXTENSION = "x-latentpedia-read"
READ_EXTRA = {READ_EXTENSION: True}
