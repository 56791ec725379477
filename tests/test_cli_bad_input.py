"""Bad input to every `latentpedia` command: exit status 2, one clear line (or typer's own usage
error for a value out of an option's range), no traceback, and nothing written: every row of
every table of the atlas, the data dir and the scratch folder are the same afterwards.

Runs in-process (typer's CliRunner) on SQLite and PostgreSQL, plus two real subprocesses. The
table is checked against the commands the app registers: a new command without bad inputs here
fails `test_every_command_has_bad_inputs`; every command with `--db` also gets the bad URLs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from latentpedia.cli import app
from latentpedia.config import data_dir
from tests.sae_builders import random_sae, write_saelens
from tests.tiny import D_MODEL, tiny_llama

RUN = CliRunner()
SECRET = "hunter2secret"


@dataclass(frozen=True)
class Bad:
    """One bad invocation: `args` may name {db}, {model}, {tmp} and the {sae_*} / corpus files
    of the `files` fixture; `needle` must be in the one error line."""

    args: tuple[str, ...]
    needle: str
    input: str | None = None

    @property
    def command(self) -> str:
        return " ".join(self.args[:2]) if self.args[0] in ("user", "campaign") else self.args[0]


def bad(*args: str, needle: str, input: str | None = None) -> Bad:
    return Bad(tuple(args), needle, input)


M = ("--model", "{model}")
DB = ("--db", "{db}")
RANGE = "out of range"  # a value outside an option's declared range: typer's own usage error

TABLE = [
    # build
    bad("build", "--layers", "0", "--tokens", "0", *DB, needle=RANGE),
    bad("build", "--layers", "0", "--window", "0", *DB, needle=RANGE),
    bad("build", "--layers", "0", "--batch-size", "0", *DB, needle=RANGE),
    bad("build", "--layers", "0", "--checkpoint-seconds", "-1", *DB, needle=RANGE),
    bad("build", "--layers", "two", *M, *DB, needle="--layers must be"),
    bad("build", "--layers", "0", "--tokens", "10", "--window", "32", *M, *DB, needle="does not fill one window"),
    bad("build", "--layers", "0", "--corpus", "{empty_corpus}", "--tokens", "600", "--window", "32", *M, *DB,
        needle="fewer tokens than one window"),
    bad("build", "--layers", "0", "--corpus", "{short_corpus}", "--tokens", "600", "--window", "32", *M, *DB,
        needle="short.txt: the corpus holds"),
    bad("build", "--layers", "0", "--corpus", "{tmp}/no-such-corpus.txt", *M, *DB, needle="does not exist"),
    bad("build", "--layers", "9", *M, *DB, needle="layer 9 does not exist"),
    bad("build", "--layers", "0", "--ray", " ", *M, *DB, needle="--ray needs an address"),
    bad("build", "--layers", "0", "--ray", "auto", "--cache-acts", "blocks.0.hook_resid_post", *M, *DB, needle="--ray cannot cache activations"),
    bad("build", "--source", "{sae_d_sae_big}", *M, *DB, needle="'d_sae' must be an integer"),
    bad("build", "--source", "{sae_zero}", *M, *DB, needle="d_sae=0"),
    bad("build", "--layers", "0", "--cache-acts", "blocks.9.hook_resid_post", *M, *DB, needle="blocks.9"),
    bad("build", "--layers", "0", "--model", "{tmp}/no-such-model", *DB, needle="no such file or folder"),
    # import-sae
    bad("import-sae", "{sae_d_sae_big}", *M, *DB, needle="cfg.json: config field 'd_sae' must be an integer, got \"big\""),
    bad("import-sae", "{sae_k_null}", *M, *DB, needle="'k'"),
    bad("import-sae", "{sae_k_text}", *M, *DB, needle="config field 'k' must be an integer"),
    bad("import-sae", "{sae_hook_5}", *M, *DB, needle="config field 'metadata.hook_name' must be a string, got 5"),
    bad("import-sae", "{sae_zero}", *M, *DB, needle="d_sae=0"),
    bad("import-sae", "{tmp}/no-such-sae", *M, *DB, needle="not a source"),
    bad("import-sae", "{sae_good}", "--tokens", "0", *M, *DB, needle=RANGE),
    # info (bad URLs below)
    bad("info", "--db", "sqlite:///{tmp}/no-atlas.db", needle="no atlas here"),
    # demo: refused while parsing, before anything is built
    bad("demo", "--port", "0", "--no-serve", *DB, needle=RANGE),
    bad("demo", "--tokens", "-5", "--no-serve", *DB, needle=RANGE),
    # serve
    bad("serve", "--port", "70000", *DB, needle=RANGE),
    bad("serve", "--workers", "0", *DB, needle=RANGE),
    # train-sae
    bad("train-sae", "--hook", "blocks.1.hook_resid_post", "--width", "0", *M, *DB, needle=RANGE),
    bad("train-sae", "--hook", "blocks.1.hook_resid_post", "--k", "0", *M, *DB, needle=RANGE),
    bad("train-sae", "--hook", "blocks.1.hook_resid_post", "--lr", "0", *M, *DB, needle="--lr must be greater than 0"),
    bad("train-sae", "--hook", "blocks.9.hook_resid_post", *M, *DB, needle="blocks.9"),
    bad("train-sae", "--hook", "blocks.1.hook_resid_post", *M, *DB, needle="no cached activations"),
    # eval-sae
    bad("eval-sae", "{sae_d_sae_big}", *M, *DB, needle="'d_sae' must be an integer"),
    bad("eval-sae", "no-such-source", *M, *DB, needle="neither an SAE folder nor an SAE source"),
    bad("eval-sae", "{sae_narrow}", *M, *DB, needle="has width"),
    bad("eval-sae", "0-mlp", "--tokens", "0", *M, *DB, needle=RANGE),
    # index-explanations
    bad("index-explanations", "--batch", "0", *DB, needle=RANGE),
    bad("index-explanations", "--limit", "0", *DB, needle=RANGE),
    bad("index-explanations", "--db", "sqlite:///{tmp}/no-atlas.db", needle="no atlas here"),
    # explain
    bad("explain", "--limit", "0", *DB, needle=RANGE),
    bad("explain", "--index", "-1", *DB, needle=RANGE),
    bad("explain", "--concurrency", "0", *DB, needle=RANGE),
    bad("explain", "--scorer", "astrology", "--no-progress", *DB, needle="astrology"),
    bad("explain", "--db", "sqlite:///{tmp}/no-atlas.db", needle="no atlas here"),
    # llm-serve
    bad("llm-serve", "--port", "0", needle=RANGE),
    bad("llm-serve", "--model", "{tmp}/no-such-model", needle="no such file or folder"),
    # experiments
    bad("steer", *M, "--", "0-mlp", "-1", needle=RANGE),
    bad("steer", "0-mlp", "99999", *M, *DB, needle="does not exist"),
    bad("steer", "0-mlp", "1", "--tokens", "0", *M, needle=RANGE),
    bad("steer", "0-mlp", "1", "--temperature", "-1", *M, needle=RANGE),
    bad("steer", "{sae_hook_5}", "1", *M, needle="must be a string"),
    bad("ablate", *M, "--", "0-mlp", "-1", needle=RANGE),
    bad("ablate", "0-mlp", "1", "--mode", "resample", *M, "--db", "sqlite:///{tmp}/no-dir/x.db", needle="does not exist"),
    bad("ablate", "9-mlp", "1", *M, *DB, needle="layer 9 does not exist"),
    bad("patch", "--clean", "a b", "--corrupted", "a b", "--answer", "1", "--foil", "2", "--batch-size", "0", *M, needle=RANGE),
    bad("patch", "--clean", "a b c", "--corrupted", "a", "--answer", "1", "--foil", "2", *M, needle="same number of tokens"),
    bad("logit-lens", "--k", "0", *M, needle=RANGE),
    bad("logit-lens", "--model", "{tmp}/no-such-model", needle="no such file or folder"),
    bad("dla", "--top", "0", *M, needle=RANGE),
    bad("dla", "--target", "two words here", *M, *DB, needle="not one"),
    # lab
    bad("toy", "--features", "0", needle=RANGE),
    bad("toy", "--sparsity", "1.5", needle="every sparsity must be in [0, 1)"),
    bad("bench-saes", "--tokens", "0", needle=RANGE),
    bad("bench-saes", "--architecture", "magic", needle="magic"),
    bad("saebench", "--explain", "-1", *DB, needle=RANGE),
    bad("saebench", "--metric", "vibes", *M, *DB, needle="vibes"),
    # exchange (more below)
    bad("export", "{corpus}", *DB, needle="exists and is not a folder"),
    bad("export", "{tmp}/out", "--db", "sqlite:///{tmp}/no-atlas.db", needle="no atlas here"),
    # circuits
    bad("train-transcoders", "--width", "0", *M, *DB, needle=RANGE),
    bad("train-transcoders", "--layers", "x", *M, *DB, needle="--layers must be comma-separated layer numbers"),
    bad("train-transcoders", "--lr", "0", *M, *DB, needle="--lr must be greater than 0"),
    bad("graph", "--prompt", "hi", "--max-logits", "0", *M, *DB, needle=RANGE),
    bad("graph", "--prompt", "hi", "--node-threshold", "0", *M, *DB, needle="--node-threshold must be greater than 0"),
    bad("graph", "--prompt", "hi", "--source", "nope", *M, *DB, needle="nope"),
    # families
    bad("neighbours", "--k", "0", *M, *DB, needle=RANGE),
    bad("neighbours", "--source", "nope", *M, *DB, needle="nope"),
    bad("neighbours", "--model", "nobody", *DB, needle="nobody"),
    bad("match", "0-mlp", *M, *DB, needle="give two sources"),
    bad("match", "0-mlp", "nope", *M, *DB, needle="nope"),
    bad("match", "0-mlp", "0-mlp", *M, *DB, needle="itself"),
    bad("match", "--windows", "0", *M, *DB, needle=RANGE),
    bad("match", *M, *DB, needle="no pair of built SAEs"),
    # maps
    bad("build-maps", "--neighbors", "1", *M, *DB, needle=RANGE),
    bad("build-maps", "--init", "random", *M, *DB, needle="random"),
    bad("build-maps", "--source", "nope", *M, *DB, needle="nope"),
    bad("build-maps", "--model", "nobody", *DB, needle="nobody"),
    # worker
    bad("worker", "--poll-seconds", "0", *DB, needle="--poll-seconds must be greater than 0"),
    bad("worker", "--report-seconds", "-1", *DB, needle="--report-seconds must be greater than 0"),
    bad("worker", "--max-jobs", "-1", *DB, needle=RANGE),
    # exchange
    bad("import-neuronpedia", "{tmp}/nothing", *DB, needle="nothing"),
    bad("import-neuronpedia", "{empty_dir}", *DB, needle="empty-dir"),
    bad("export", "{tmp}/out", "--format", "xml", *DB, needle="xml"),
    bad("export", "{tmp}/out", "--source", "nope", *DB, needle="nope"),
    # campaign (the game)
    bad("campaign", "add", "Bad Name", "--source", "0-mlp", *DB, needle="invalid campaign name"),
    bad("campaign", "add", "quest", "--source", "0-mlp", "--order", "random", *DB, needle="random"),
    bad("campaign", "add", "quest", "--source", "0-mlp", "--days", "0", *DB, needle=RANGE),
    bad("campaign", "add", "quest", "--source", "0-mlp", "--ends", "soon", *DB, needle="--ends"),
    bad("campaign", "add", "quest", "--source", "0-mlp", "--indices", "1,a", *DB, needle="--indices"),
    bad("campaign", "add", "quest", "--source", "nope", *DB, needle="unknown model"),
    bad("campaign", "list", "--db", "sqlite:///{tmp}/no-atlas.db", needle="no atlas here"),
    bad("campaign", "export", "nope", *DB, needle="no campaign 'nope'"),
    bad("campaign", "export", "nope", "--out", "{tmp}/no-dir/x.jsonl", *DB, needle="does not exist"),
    bad("campaign", "invite", "--db", "sqlite:///{tmp}/no-atlas.db", needle="no atlas here"),
    # user
    bad("user", "add", "ann", "--password-stdin", *DB, input="short\n", needle="8 to 1024 characters"),
    bad("user", "add", "root", "--password-stdin", *DB, input="password1\n", needle="root"),
    bad("user", "list", "--db", "sqlite:///{tmp}/no-atlas.db", needle="no atlas here"),
    bad("user", "key", "nobody", *DB, needle="no user 'nobody'"),
    bad("user", "revoke", "root", "lp_nope", *DB, needle="lp_nope"),
    bad("user", "set", "root", "--role", "emperor", *DB, needle="emperor"),
    bad("user", "set", "nobody", "--role", "admin", *DB, needle="nobody"),
]

# Every command with --db gets these (URL, needle, a path that must not appear afterwards).
BAD_URLS = [
    (f"postgresql://nobody:{SECRET}@127.0.0.1:1/x", "cannot connect"),
    ("notaurl", "not a database URL"),
    ("mysql://someone@127.0.0.1/x", "unsupported database 'mysql'"),
    ("sqlite:///{tmp}/missing-dir/x.db", "does not exist (it is not created for you)"),
    ("sqlite:///{tmp}", "is a folder"),
    ("sqlite:///{not_a_db}", "is not a SQLite database"),
]


def _commands(group=None, prefix: str = "") -> dict[str, object]:
    """Every command the app registers, by its full name ("build", "user add")."""
    group = group or typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found |= _commands(command, f"{prefix}{name} ")
        else:
            found[prefix + name] = command
    return found


def _db_commands() -> list[str]:
    return sorted(name for name, command in _commands().items() if any(p.name == "db" for p in command.params))


def _bad_url_cases() -> list[Bad]:
    """Two of BAD_URLS for each command with --db (in turn, so each URL meets several commands:
    they all go through the same option check)."""
    extra = {"user add": ("ann", "--password-stdin"), "user key": ("root",), "user revoke": ("root", "lp_x"),
             "user set": ("root", "--role", "admin"), "import-sae": ("{sae_good}",), "eval-sae": ("0-mlp",),
             "steer": ("0-mlp", "1"), "ablate": ("0-mlp", "1"), "train-sae": ("--hook", "blocks.1.hook_resid_post"),
             "import-neuronpedia": ("{tmp}",), "export": ("{tmp}/out",),
             "campaign add": ("quest", "--source", "0-mlp"), "campaign export": ("quest",)}
    picks = [(name, BAD_URLS[(i + shift) % len(BAD_URLS)]) for i, name in enumerate(_db_commands()) for shift in (0, 3)]
    return [Bad((*name.split(), *extra.get(name, ()), "--db", url), needle, "password1\n" if name == "user add" else None)
            for name, (url, needle) in picks]


WITH_ATLAS = [case for case in TABLE if "{db}" in case.args]
WITHOUT_ATLAS = [case for case in TABLE if "{db}" not in case.args] + _bad_url_cases()


def test_every_command_has_bad_inputs():
    """A command added later without entries in TABLE fails here."""
    commands, covered = set(_commands()), {case.command for case in TABLE}
    assert commands - covered == set(), "add bad inputs for these commands to TABLE"
    assert covered - commands == set(), "TABLE names commands the app does not have"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """The tiny model, bad corpora and bad SAE folders."""
    root = tmp_path_factory.mktemp("inputs")
    paths = {"model": str(tiny_llama(root / "tiny-llama"))}
    (root / "empty.txt").write_text("")
    (root / "short.txt").write_text("just a few words")
    (root / "not-a-db.db").write_text("plain text, not SQLite")
    (root / "empty-dir").mkdir()
    paths["empty_dir"] = str(root / "empty-dir")
    from latentpedia.corpus.default import pydoc_documents

    (root / "topics.jsonl").write_text("\n".join(json.dumps({"text": d.text}) for d in pydoc_documents()[:40]))
    paths["corpus"] = str(root / "topics.jsonl")
    paths |= {"empty_corpus": str(root / "empty.txt"), "short_corpus": str(root / "short.txt"), "not_a_db": str(root / "not-a-db.db")}
    hook = "blocks.1.hook_resid_post"
    paths["sae_good"] = str(write_saelens(root / "good", random_sae("topk", d_in=D_MODEL, d_sae=16, k=4), hook_name=hook))
    paths["sae_zero"] = str(write_saelens(root / "zero", random_sae("relu", d_in=D_MODEL, d_sae=0), hook_name=hook))
    paths["sae_narrow"] = str(write_saelens(root / "narrow", random_sae("topk", d_in=D_MODEL - 1, d_sae=16, k=4), hook_name=hook))
    for name, edit in {"d_sae_big": {"d_sae": "big"}, "k_null": {"k": None}, "k_text": {"k": "four"},
                       "hook_5": {"metadata": {"hook_name": 5}}}.items():
        folder = write_saelens(root / name, random_sae("topk", d_in=D_MODEL, d_sae=16, k=4), hook_name=hook)
        cfg = json.loads((folder / "cfg.json").read_text())
        (folder / "cfg.json").write_text(json.dumps({**cfg, **edit}))
        paths[f"sae_{name}"] = str(folder)
    return paths


@pytest.fixture(scope="module")
def atlas(module_db_url, files) -> str:
    """A small built atlas (the tiny model's layer-0 neurons) with an admin and an API key."""
    from latentpedia.dashboards.pipeline import BuildRequest, build
    from latentpedia.store.api import Store

    store = Store.open(module_db_url)
    request = BuildRequest(model=files["model"], sources=["0-mlp"], corpus=files["corpus"], n_tokens=620, window_len=32,
                           progress=False, checkpoint_seconds=0)
    build(store, request, log=lambda *_: None)
    user = store.add_user("root", "password1", "admin")
    store.create_api_key(user.id, "laptop")
    store.close()
    return module_db_url


_TABLES: dict[str, sa.MetaData] = {}


def store_digest(url: str) -> dict[str, tuple[int, str]]:
    """Every table: (row count, hash of its sorted rows)."""
    from latentpedia.store.base import normalize_url

    engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)
    if url not in _TABLES:
        _TABLES[url] = sa.MetaData()
        _TABLES[url].reflect(engine)
    meta = _TABLES[url]
    digest = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            rows = sorted(repr(tuple(row)) for row in conn.execute(sa.select(table)))
            digest[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    engine.dispose()
    return digest


def files_under(*folders: Path) -> set[str]:
    """Every path under `folders` (SQLite's -wal/-shm companions aside)."""
    return {str(p) for folder in folders for p in folder.rglob("*") if not p.name.endswith(("-wal", "-shm"))}


def _fill(case: Bad, values: dict[str, str]) -> list[str]:
    return [arg.format(**values) for arg in case.args]


def assert_clear_refusal(output: str, exit_code: int, needle: str) -> None:
    assert exit_code == 2, output
    assert "Traceback" not in output and SECRET not in output, output
    if needle == RANGE:
        assert "Invalid value for '" in output and re.search(r"greater than|less than|not in the range", output), output
        return
    if "Invalid value" in output:  # typer's own usage error (e.g. a choice): its box, exit 2
        assert needle in output, output
        return
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], output


def _refused(case: Bad, values: dict[str, str], folders: list[Path]) -> None:
    """Run `case` in-process: refused clearly, and no file appeared or vanished in `folders`."""
    before = files_under(*folders)
    result = RUN.invoke(app, _fill(case, values), input=case.input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert_clear_refusal(result.output, result.exit_code, case.needle)
    assert files_under(*folders) == before


@pytest.fixture(scope="module")
def atlas_digest(atlas) -> dict:
    return store_digest(atlas)


@pytest.mark.parametrize("case", WITH_ATLAS, ids=lambda c: " ".join(c.args))
def test_bad_input_leaves_the_atlas_unchanged(case, atlas, atlas_digest, files, tmp_path):
    _refused(case, {**files, "db": atlas, "tmp": str(tmp_path)}, [tmp_path, data_dir(), Path(files["model"]).parent])
    assert store_digest(atlas) == atlas_digest


@pytest.mark.parametrize("case", WITHOUT_ATLAS, ids=lambda c: " ".join(c.args))
def test_bad_input_without_an_atlas_creates_nothing(case, files, tmp_path):
    _refused(case, {**files, "tmp": str(tmp_path)}, [tmp_path, data_dir(), Path(files["model"]).parent])


@pytest.mark.parametrize("case", [
    bad("info", "--db", f"postgresql://nobody:{SECRET}@127.0.0.1:1/x", needle="cannot connect"),
    bad("user", "key", "nobody", *DB, needle="no user 'nobody'"),
], ids=["unreachable-db", "unknown-user"])
def test_a_real_process_prints_one_line(case, atlas, files, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = _fill(case, {**files, "db": atlas, "tmp": str(tmp_path)})
    before = store_digest(atlas)
    proc = subprocess.run([sys.executable, "-m", "latentpedia.cli", *args], env=env, capture_output=True, text=True, timeout=120)
    assert_clear_refusal(proc.stderr, proc.returncode, case.needle)
    assert store_digest(atlas) == before
