"""`latentpedia build --ray`: the pass sharded over a local Ray (2 workers, started once for the
module) writes the same atlas as a single-process build of the same windows — canonical dumps
equal, byte for byte — on SQLite and PostgreSQL; finished shards are reused after a restart;
without Ray installed `--ray` is a clear exit-2 error and no module imports ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latentpedia.cli import app
from latentpedia.dashboards import ray_build
from latentpedia.dashboards.pipeline import BuildRequest, build
from latentpedia.exchange.canonical import TABLES
from latentpedia.exchange.dumps import write_dump
from latentpedia.store.api import Store
from tests.sae_builders import random_sae, write_saelens
from tests.tiny import D_MODEL, tiny_llama

N_TOKENS, WINDOW, BATCH = 16_000, 32, 4  # 516 windows, 129 batches: 5 blocks of 32 -> 4 shards
QUIET = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from latentpedia.corpus.default import pydoc_documents

    root = tmp_path_factory.mktemp("ray-files")
    corpus = root / "topics.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": d.text}) for d in pydoc_documents()))
    sae = write_saelens(root / "res-topk", random_sae("topk", d_in=D_MODEL, d_sae=96, k=6, seed=3), hook_name="blocks.2.hook_resid_post")
    return {"model": tiny_llama(root / "tiny-llama"), "corpus": corpus, "sae": sae}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def request_for(files: dict[str, Path]) -> BuildRequest:
    return BuildRequest(
        model=str(files["model"]), sources=["1-mlp", "3-mlp", str(files["sae"])], corpus=str(files["corpus"]),
        n_tokens=N_TOKENS, window_len=WINDOW, batch_size=BATCH, progress=False, checkpoint_seconds=0, maps=False,
    )  # fmt: skip


TIMINGS = ("seconds", "computed_at", "matches_at")  # how long finishing steps (maps, neighbours, matches) took, and when


def untimed(value):
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMINGS}
    return [untimed(v) for v in value] if isinstance(value, list) else value


def dump(url: str, folder: Path) -> dict[str, bytes]:
    """The canonical tables, byte for byte, except the timings in source meta."""
    store = Store.open(url)
    try:
        write_dump(store, folder, "jsonl", log=QUIET)
    finally:
        store.close()
    tables = {table: (folder / f"{table}.jsonl").read_bytes() for table in TABLES}
    rows = [untimed(json.loads(line)) for line in tables["sources"].splitlines()]
    tables["sources"] = "\n".join(json.dumps(row, sort_keys=True) for row in rows).encode()
    return tables


@pytest.fixture(scope="module")
def local_dump(files, tmp_path_factory) -> dict[str, bytes]:
    """A single-process build of the same request: what every Ray build must equal."""
    root = tmp_path_factory.mktemp("local")
    mp = pytest.MonkeyPatch()
    mp.setenv("LATENTPEDIA_HOME", str(root / "home"))
    try:
        url = f"sqlite:///{root}/local.db"
        store = Store.open(url)
        assert build(store, request_for(files), log=QUIET)["built"] == ["1-mlp", "3-mlp", "2-res-topk-96"]
        store.close()
        return dump(url, root / "dump")
    finally:
        mp.undo()


def test_ray_build_equals_a_local_build(ray_session, files, local_dump, db_url, tmp_path):
    lines: list[str] = []
    store = Store.open(db_url)
    runner = ray_build.runner(ray_build.RayConfig(address="auto", workers=2), log=lines.append)
    summary = build(store, request_for(files), log=lines.append, runner=runner)
    store.close()
    assert summary["built"] == ["1-mlp", "3-mlp", "2-res-topk-96"]
    assert "ray: 4 shards of the pass on 2 workers (0 already done)" in lines
    got = dump(db_url, tmp_path / "dump")
    assert got["examples"].count(b"\n") > 10_000
    for table in TABLES:
        assert got[table] == local_dump[table], table


def test_a_restarted_ray_build_reuses_finished_shards(ray_session, files, local_dump, tmp_path, home, monkeypatch):
    """A driver that dies after some shards were saved runs only the missing ones next time."""
    saved: list[Path] = []
    real_save = ray_build.atomic_save

    class DriverKilled(BaseException):
        pass

    def save_then_die(obj, path):
        real_save(obj, path)
        saved.append(path)
        if len(saved) == 2:
            raise DriverKilled()

    monkeypatch.setattr(ray_build, "atomic_save", save_then_die)
    url = f"sqlite:///{tmp_path}/resumed.db"
    runner = ray_build.runner(ray_build.RayConfig(address="auto", workers=2), log=QUIET)
    with pytest.raises(DriverKilled):
        build(Store.open(url), request_for(files), log=QUIET, runner=runner)
    assert all(p.exists() for p in saved)
    monkeypatch.setattr(ray_build, "atomic_save", real_save)
    lines: list[str] = []
    build(Store.open(url), request_for(files), log=lines.append, runner=ray_build.runner(ray_build.RayConfig(workers=2), log=lines.append))
    assert "ray: 4 shards of the pass on 2 workers (2 already done)" in lines
    got = dump(url, tmp_path / "dump")
    for table in TABLES:
        assert got[table] == local_dump[table], table
    assert not saved[0].parent.exists()  # the work folder is removed once the store has everything


def test_shards_are_contiguous_and_aligned():
    for n_batches in (1, 31, 32, 33, 129, 1000):
        for n_shards in (1, 2, 3, 4, 64):
            ranges = ray_build.shard_ranges(n_batches, n_shards)
            assert ranges[0][0] == 0 and ranges[-1][1] == n_batches
            assert all(a < b for a, b in ranges) and all(b == c for (_, b), (c, _) in zip(ranges, ranges[1:]))
            assert all(a % ray_build.SHARD_ALIGN == 0 for a, _ in ranges)
            assert len(ranges) <= n_shards


RUN = CliRunner()


def test_without_ray_the_option_says_how_to_install_it(files, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    db = f"sqlite:///{tmp_path}/atlas.db"
    result = RUN.invoke(app, ["build", "--model", str(files["model"]), "--layers", "1", "--corpus", str(files["corpus"]),
                              "--tokens", "2000", "--window", "32", "--ray", "auto", "--no-progress", "--db", db])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "pip install 'latentpedia[ray]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "atlas.db").exists() or Store.open(db).list_sources() == []


def test_ray_refuses_what_it_cannot_do_before_writing(files, tmp_path):
    db = f"sqlite:///{tmp_path}/atlas.db"
    result = RUN.invoke(app, ["build", "--model", str(files["model"]), "--layers", "1", "--ray", "auto",
                              "--cache-acts", "blocks.1.hook_resid_post", "--db", db])  # fmt: skip
    assert result.exit_code == 2 and "--ray cannot cache activations" in result.output
    assert not (tmp_path / "atlas.db").exists()


def test_nothing_imports_ray_unless_asked():
    code = (
        "import sys, latentpedia.cli, latentpedia.dashboards.pipeline, latentpedia.dashboards.ray_build, latentpedia.web.app;"
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
