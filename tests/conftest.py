"""Shared fixtures: fresh atlas databases on SQLite and on the real PostgreSQL.

`db_url` is parametrized over both backends; every test using it runs twice. SQLite gets a
file in the test's tmp dir. PostgreSQL gets a fresh, uniquely named schema (selected through
`search_path` in the URL) that is dropped afterwards, so parallel runs never collide. The
server is $LATENTPEDIA_TEST_PG, else postgresql+psycopg://postgres@127.0.0.1:5432/test;
PostgreSQL params carry the `postgres` mark (deselect with `-m "not postgres"`) and are
skipped, with the reason, when the server cannot be reached.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

# Converted model copies are shared by every test (and kept between local runs): the embedded
# GGUF is converted once (~30 s), not once per test that builds an atlas.
os.environ.setdefault("LATENTPEDIA_MODELS", str(Path(__file__).resolve().parents[1] / ".data" / "models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Everything else a test writes without choosing a folder (build work dirs, activation caches,
# trained SAEs) goes to a private data dir, never the user's own atlas.
os.environ.setdefault("LATENTPEDIA_HOME", tempfile.mkdtemp(prefix="latentpedia-tests-"))

if TYPE_CHECKING:
    from latentpedia.store import Store

PG_DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _pg_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, connect_args={"connect_timeout": 5}, poolclass=sa.pool.NullPool)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of the PostgreSQL server used by tests (skip if it is unreachable)."""
    url = os.environ.get("LATENTPEDIA_TEST_PG", PG_DEFAULT_URL)
    try:
        with _pg_engine(url).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI"):  # CI must test both databases: unreachable is a failure there
            pytest.fail(f"PostgreSQL not reachable at {url} in CI: {exc.orig}")
        pytest.skip(f"PostgreSQL not reachable at {url}: {exc.orig}")
    return url


@contextmanager
def pg_schema_url(server_url: str) -> Iterator[str]:
    """A URL whose default schema is a new, uniquely named, empty schema; dropped on exit."""
    schema = f"lp_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = _pg_engine(server_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_engine(server_url).url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text("SET lock_timeout = '20s'"))
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def _backend_url(request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{folder / 'atlas.db'}"
        return
    with pg_schema_url(request.getfixturevalue("pg_server_url")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test: SQLite file, or a new PostgreSQL schema."""
    with _backend_url(request, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Like `db_url`, shared by the tests of one module (for expensive seeded fixtures)."""
    with _backend_url(request, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated `latentpedia.store.Store` on `db_url`, closed after the test."""
    from latentpedia.store import Store

    opened = Store.open(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray of 2 CPUs started once for the session (the Ray build and explain tests)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module", params=BACKENDS)
def catlas(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The seeded atlas with accounts (tests/community_fixtures.py) on each backend, per module;
    a module defines its own `catlas` where it needs another setup."""
    from tests.community_fixtures import community_atlas

    with community_atlas(request.param, request, tmp_path_factory) as found:
        yield found
