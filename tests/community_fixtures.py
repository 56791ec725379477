"""A community atlas for web tests: the seeded tiny atlas (its own copy, on SQLite or in a fresh
PostgreSQL schema) plus three accounts, `root` (admin), `alice` and `bob`, each with an API key."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from latentpedia.store.api import Store
from tests.conftest import pg_schema_url
from tests.web_atlas import SeededAtlas, seed_atlas, sqlite_atlas

PASSWORD = "correct horse battery"
USERS = {"root": "admin", "alice": "user", "bob": "user"}


@dataclass
class CommunityAtlas:
    atlas: SeededAtlas
    url: str
    keys: dict[str, str] = field(default_factory=dict)  # username -> API key

    @property
    def model(self) -> str:
        return self.atlas.model

    def key(self, username: str) -> dict[str, str]:
        """Headers authenticating as `username` with their API key."""
        return {"x-api-key": self.keys[username]}


def _copy_sqlite(url: str, folder: Path) -> str:
    """A private copy of a SQLite atlas (so community writes do not leak into other tests)."""
    source, target = url.removeprefix("sqlite:///"), folder / "community.db"
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


def add_accounts(url: str) -> dict[str, str]:
    store = Store.open(url)
    try:
        keys = {}
        for name, role in USERS.items():
            user = store.get_user(name) or store.add_user(name, PASSWORD, role)
            keys[name] = store.create_api_key(user.id, "tests")[0]
        return keys
    finally:
        store.close()


@contextmanager
def community_atlas(backend: str, request, tmp_path_factory) -> Iterator[CommunityAtlas]:
    """The seeded atlas with accounts, on `backend` ("sqlite" or "postgres")."""
    if backend == "sqlite":
        atlas = sqlite_atlas(tmp_path_factory)
        url = _copy_sqlite(atlas.url, tmp_path_factory.mktemp("community"))
        yield CommunityAtlas(atlas, url, add_accounts(url))
        return
    with pg_schema_url(request.getfixturevalue("pg_server_url")) as url:
        atlas = seed_atlas(url, Path(tmp_path_factory.mktemp("community-pg")))
        yield CommunityAtlas(atlas, url, add_accounts(url))


# Module fixtures over conftest's `catlas`, for modules that import them by name (`from
# tests.community_fixtures import client, store`): the public app's client and an open store.


@pytest.fixture(scope="module")
def client(catlas: CommunityAtlas) -> Iterator[TestClient]:
    from latentpedia.web import create_app

    with TestClient(create_app(catlas.url, private=False)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def store(catlas: CommunityAtlas) -> Iterator[Store]:
    opened = Store.open(catlas.url)
    yield opened
    opened.close()
