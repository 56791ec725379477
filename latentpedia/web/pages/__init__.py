"""Page data: one function per page returning the pydantic model both the HTML page and its
JSON twin are rendered from (`home_page_data`, `source_page_data`, `feature_page_data`).
These functions read the Store only; they know nothing about HTTP."""

from latentpedia.web.pages.common import NotFoundError
from latentpedia.web.pages.feature import feature_page_data
from latentpedia.web.pages.home import home_page_data
from latentpedia.web.pages.source import source_page_data

__all__ = ["NotFoundError", "feature_page_data", "home_page_data", "source_page_data"]
