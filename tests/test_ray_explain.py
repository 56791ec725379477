"""`latentpedia explain --ray`: explanations and embedding scores computed on a local Ray (2 workers)
are stored exactly as a run in one process stores them (canonical explanations and scores
tables, byte for byte, and the explanations' search vectors), on SQLite and PostgreSQL; a Ray
run resumes where a stopped one ended; without Ray the option is a clear exit-2 error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from latentpedia.cli import app
from latentpedia.dashboards.ray_build import RayConfig
from latentpedia.exchange.dumps import write_dump
from latentpedia.interp.pipeline import ExplainRequest, run_explain
from latentpedia.store.api import Store
from latentpedia.store.community_schema import Explanation
from latentpedia.store.explanation_search import ExplanationEmbedding
from tests.conftest import BACKENDS, pg_schema_url
from tests.web_atlas import seed_atlas

QUIET = lambda *_: None  # noqa: E731
BATCH = 16  # latents per batch: several batches per source, spread over both workers


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray-explain")
    seed_atlas(f"sqlite:///{folder / 'atlas.db'}", folder)
    return folder


@pytest.fixture(scope="module", params=BACKENDS)
def two_atlases(request, seeded, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """Two identical unexplained atlases: one for a local run, one for a Ray run."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("copies")
        urls = []
        for name in ("local", "ray"):
            shutil.copy(seeded / "atlas.db", folder / f"{name}.db")
            urls.append(f"sqlite:///{folder / name}.db")
        yield urls[0], urls[1]
        return
    server = request.getfixturevalue("pg_server_url")
    contexts = [pg_schema_url(server), pg_schema_url(server)]
    urls = [ctx.__enter__() for ctx in contexts]
    try:
        for url in urls:
            seed_atlas(url, tmp_path_factory.mktemp("pg-seed"))
        yield urls[0], urls[1]
    finally:
        for ctx in contexts:
            ctx.__exit__(None, None, None)


def explain(url: str, ray: RayConfig | None = None, scorers: tuple[str, ...] = ("embedding",), **kwargs) -> dict:
    store = Store.open(url)
    try:
        model = store.list_models()[0].id
        request = ExplainRequest(model=model, scorers=list(scorers), batch_size=BATCH, progress=False, ray=ray, **kwargs)
        return run_explain(store, request, log=QUIET)
    finally:
        store.close()


def stored(url: str, folder: Path) -> dict[str, bytes]:
    """The canonical explanations and scores tables, and every search vector by (source, latent)."""
    store = Store.open(url)
    try:
        write_dump(store, folder, "jsonl", log=QUIET)
        with store._read() as session:
            vectors = session.execute(
                select(Explanation.source_id, Explanation.latent_index, ExplanationEmbedding.vector)
                .join(ExplanationEmbedding, ExplanationEmbedding.explanation_id == Explanation.id)
                .order_by(Explanation.source_id, Explanation.latent_index)
            ).all()  # fmt: skip
    finally:
        store.close()
    out = {table: (folder / f"{table}.jsonl").read_bytes() for table in ("explanations", "scores")}
    out["vectors"] = b"".join(f"{s}:{i}:".encode() + v for s, i, v in vectors)
    return out


def test_a_ray_run_stores_what_a_local_run_stores(ray_session, two_atlases, tmp_path):
    local_url, ray_url = two_atlases
    local = explain(local_url)
    on_ray = explain(ray_url, RayConfig(address="auto", workers=2))
    assert on_ray == local
    assert all(c["explained"] > BATCH * 2 and c["scored"] > BATCH for c in local.values())
    want, got = stored(local_url, tmp_path / "local"), stored(ray_url, tmp_path / "ray")
    assert want["scores"].count(b"\n") > 2 * BATCH and len(want["vectors"]) > 0
    for part in want:
        assert got[part] == want[part], part


def test_a_stopped_ray_run_resumes(ray_session, seeded, tmp_path):
    """Explanations of the first batches only, then the whole run: what one local run stores;
    a third run finds nothing to do."""
    local_url, ray_url = (f"sqlite:///{tmp_path / name}.db" for name in ("local", "ray"))
    for url in (local_url, ray_url):
        shutil.copy(seeded / "atlas.db", url.removeprefix("sqlite:///"))
    explain(local_url)
    config = RayConfig(address="auto", workers=2)
    first = explain(ray_url, config, scorers=(), limit=2 * BATCH)
    assert all(c["explained"] == 2 * BATCH and c["scored"] == 0 for c in first.values())
    rest = explain(ray_url, config)
    assert all(c["explained"] > 0 for c in rest.values())
    again = explain(ray_url, config)
    assert all(c["explained"] == 0 and c["scored"] == 0 and c["skipped"] > 0 for c in again.values())
    want, got = stored(local_url, tmp_path / "local"), stored(ray_url, tmp_path / "ray")
    for part in want:
        assert got[part] == want[part], part


def test_without_ray_the_option_says_how_to_install_it(seeded, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    shutil.copy(seeded / "atlas.db", tmp_path / "atlas.db")
    result = CliRunner().invoke(app, ["explain", "--ray", "auto", "--no-progress", "--db", f"sqlite:///{tmp_path}/atlas.db"])
    assert result.exit_code == 2, result.output
    assert "pip install 'latentpedia[ray]'" in result.output and "Traceback" not in result.output
    bad = CliRunner().invoke(app, ["explain", "--ray", " ", "--db", f"sqlite:///{tmp_path}/atlas.db"])
    assert bad.exit_code == 2 and "--ray needs an address" in bad.output


def test_nothing_imports_ray_unless_asked():
    code = ("import sys, latentpedia.cli, latentpedia.interp.pipeline, latentpedia.interp.ray_explain;"
            "assert 'ray' not in sys.modules, 'ray was imported'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
