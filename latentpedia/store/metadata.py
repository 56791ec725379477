"""Every table of the store in one `Base.metadata`: the atlas tables (store/schema.py) and the
accounts and community tables (store/community_schema.py). Alembic and the migration check read
it from here; a module with new tables is imported here (and gets a migration)."""

from __future__ import annotations

from latentpedia.store import community_schema, graphs, schema
from latentpedia.store.schema import Base

TABLE_MODULES = (schema, community_schema, graphs)

__all__ = ["TABLE_MODULES", "Base"]
