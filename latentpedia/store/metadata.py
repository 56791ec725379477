"""Every table of the store in one `Base.metadata`: the atlas tables (store/schema.py) and the
accounts and community tables (store/community_schema.py). Alembic and the migration check read
it from here; a module with new tables is imported here (and gets a migration)."""

from __future__ import annotations

from latentpedia.store import community_schema, explanation_search, families, game, graphs, jobs, maps, schema, steers
from latentpedia.store.schema import Base

TABLE_MODULES = (schema, community_schema, graphs, explanation_search, jobs, families, game, maps, steers)
# tables and indexes a migration makes with raw SQL (FTS5, expression indexes): not in the models
UNMANAGED_NAMES = frozenset().union(*(getattr(m, "UNMANAGED_NAMES", ()) for m in TABLE_MODULES))

__all__ = ["TABLE_MODULES", "UNMANAGED_NAMES", "Base"]
