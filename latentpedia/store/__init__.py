"""The atlas database: `Store.open(url)` (SQLite or PostgreSQL), see api.py.

Exports are lazy so that `latentpedia.store.records` imports without SQLAlchemy/alembic.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Store": "latentpedia.store.api",
    "SourceConflictError": "latentpedia.store.api",
    "upgrade": "latentpedia.store.migrate",
    "ExampleBatch": "latentpedia.store.records",
    "LatentStats": "latentpedia.store.records",
    "SourceResults": "latentpedia.store.records",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'latentpedia.store' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
