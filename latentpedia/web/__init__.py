"""The web atlas: FastAPI app, page data, templates and static files.

`create_app(db_url)` builds the app; `latentpedia serve` runs it with uvicorn. Every HTML page
is rendered from the same page-data model its JSON twin under `/api/` returns.
"""

from latentpedia.web.app import create_app

__all__ = ["create_app"]
