"""Datasets in and out (latentpedia.exchange), on SQLite and PostgreSQL: the Neuronpedia round
trip gives an identical canonical dump; a plain Neuronpedia export becomes a static source;
malformed rows name file, line and field and write nothing; an interrupted import leaves
nothing and a rerun completes it; the CLI commands."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from latentpedia.cli import app as cli_app
from latentpedia.errors import InvalidInputError
from latentpedia.exchange import writer
from latentpedia.exchange.canonical import TABLES
from latentpedia.exchange.dumps import write_dump
from latentpedia.exchange.jsonl import RowError
from latentpedia.exchange.np_export import NeuronpediaExporter
from latentpedia.exchange.np_import import import_neuronpedia
from latentpedia.store.api import Store
from latentpedia.web.app import create_app
from tests.community_fixtures import CommunityAtlas, community_atlas
from tests.conftest import BACKENDS, pg_schema_url
from tests.neuronpedia_fixtures import D_SAE, MODEL, SHORT, SOURCE, TOKENS, rows, write_export

QUIET = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module", params=BACKENDS)
def atlas(request, tmp_path_factory) -> Iterator[CommunityAtlas]:
    """The seeded atlas with accounts, explanations (one by alice), a score with a baseline and votes."""
    with community_atlas(request.param, request, tmp_path_factory) as community:
        store = Store.open(community.url)
        source = store.get_source(community.model, "1-mlp")
        alice, bob = store.get_user("alice"), store.get_user("bob")
        first = store.add_explanation(source.id, 0, "first words", "offline", author_id=alice.id, details={"card": [1, 2]})
        other = store.add_explanation(source.id, 1, "second", "llm-examples", explainer_model="m", prompt_version="v1")
        store.add_explanation(source.id, 0, "another view", "offline")
        store.add_score(first, "embedding", status="ok", score=0.5, baseline_score=0.125, baseline_explanation_id=other,
                        details={"baseline": {"index": 1}})  # fmt: skip
        store.add_score(other, "simulation", status="error", error="timeout")
        store.vote(alice.id, first, 1)
        store.vote(bob.id, first, -1)
        store.close()
        yield community


@contextmanager
def empty_url(backend_url: str, request, folder: Path) -> Iterator[str]:
    """A fresh empty store on the same backend as `backend_url`."""
    if backend_url.startswith("sqlite"):
        yield f"sqlite:///{folder / 'empty.db'}"
        return
    with pg_schema_url(request.getfixturevalue("pg_server_url")) as url:
        yield url


def _dump(url: str, folder: Path) -> dict[str, bytes]:
    store = Store.open(url)
    try:
        write_dump(store, folder, "jsonl", log=QUIET)
    finally:
        store.close()
    return {table: (folder / f"{table}.jsonl").read_bytes() for table in TABLES}


def test_round_trip_gives_an_identical_canonical_dump(atlas, request, tmp_path):
    before = _dump(atlas.url, tmp_path / "dump-a")
    source = Store.open(atlas.url)
    counts = NeuronpediaExporter(source, tmp_path / "np", log=QUIET).run()
    source.close()
    assert counts["sources"] == 2 and counts["explanations"] == 3
    with empty_url(atlas.url, request, tmp_path) as url:
        target = Store.open(url)
        assert set(import_neuronpedia(target, tmp_path / "np", log=QUIET).values()) == {"imported"}
        target.close()
        after = _dump(url, tmp_path / "dump-b")
        with TestClient(create_app(url)) as client:  # the tiny model's folder is here: the import is live
            html = client.get(f"/{atlas.model}/1-mlp/0", headers={"accept": "text/html"}).text
    for table in TABLES:
        assert after[table] == before[table], table
    assert 'id="test-text"' in html and 'id="live-off"' not in html
    assert before["examples"].count(b"\n") == counts["activations"] > 1000
    assert before["votes"].count(b"\n") == 2 and before["scores"].count(b"\n") == 2
    score = json.loads(before["scores"].splitlines()[0])
    assert score["baseline"] == [1, 0] and score["baseline_score"] == 0.125


def test_a_rerun_skips_what_is_imported_and_a_built_source_is_not_replaced(atlas, request, tmp_path):
    source = Store.open(atlas.url)
    NeuronpediaExporter(source, tmp_path / "np", log=QUIET).run(sources=["3-mlp"])
    with pytest.raises(InvalidInputError, match="already has a source '3-mlp'"):
        import_neuronpedia(source, tmp_path / "np", log=QUIET)
    source.close()
    with empty_url(atlas.url, request, tmp_path) as url:
        target = Store.open(url)
        assert import_neuronpedia(target, tmp_path / "np", log=QUIET) == {f"{atlas.model}/3-mlp": "imported"}
        assert import_neuronpedia(target, tmp_path / "np", log=QUIET) == {f"{atlas.model}/3-mlp": "skipped"}
        assert len(target.list_sources()) == 1
        target.close()


def test_parquet_dump_reads_back_in_pandas(atlas, tmp_path):
    store = Store.open(atlas.url)
    counts = write_dump(store, tmp_path, "parquet", sources=["1-mlp"], log=QUIET)
    write_dump(store, tmp_path, "jsonl", sources=["1-mlp"], log=QUIET)
    store.close()
    examples = pd.read_parquet(tmp_path / "examples.parquet")
    assert len(examples) == counts["examples"] and set(examples["source"]) == {"1-mlp"}
    with open(tmp_path / "examples.jsonl") as lines:
        first = json.loads(next(lines))
    row = examples.iloc[0]
    assert list(row["tokens"]) == first["tokens"] and list(row["token_ids"]) == first["token_ids"]
    assert list(row["values"]) == pytest.approx(first["values"])
    latents = pd.read_parquet(tmp_path / "latents.parquet")
    assert json.loads(latents.iloc[0]["hist"]) == json.loads(next(open(tmp_path / "latents.jsonl")))["hist"]
    assert set(pd.read_parquet(tmp_path / "votes.parquet")["user"]) == {"alice", "bob"}


def test_a_plain_neuronpedia_export_becomes_a_static_source(db_url, tmp_path):
    write_export(tmp_path / "export")
    store = Store.open(db_url)
    assert import_neuronpedia(store, tmp_path / "export", log=QUIET) == {f"{MODEL}/{SOURCE}": "imported"}
    source = store.get_source(MODEL, SOURCE)
    assert (source.kind, source.hook_name, source.layer, source.d_in, source.d_sae) == ("res", "blocks.6.hook_resid_pre", 6, 768, D_SAE)
    assert source.meta["static"] is True and store.get_model(MODEL).spec["static"] is True
    latent = store.get_latent(source.id, 0)
    assert latent["max_act"] == 2.0 and latent["frac_nonzero"] == 0.001
    assert latent["hist"] == {"edges": [0.0, 1.0, 2.0, 3.0], "counts": [5, 3, 1]}
    assert latent["aligned"] == [[3, 0.9], [1, -0.4]]
    examples = store.get_examples(source.id, 0, with_tokens=True)
    # quantile samples go to the interval of (0, maxActApprox = 2] (tenths) their binMin falls in: 0.0 -> 0, 1.2 -> 6
    assert [(e["kind"], e["group"], e["rank"], e["max_value"]) for e in examples] == [(0, -1, 0, 3.0), (0, -1, 1, 2.0), (1, 0, 0, 0.5), (1, 6, 0, 1.5)]
    store.close()
    with TestClient(create_app(db_url)) as client:
        page = client.get(f"/api/feature/{MODEL}/{SOURCE}/0").json()
        html = client.get(f"/{MODEL}/{SOURCE}/0", headers={"accept": "text/html"}).text
    assert page["source"]["live"] is False
    assert 'id="live-off"' in html and 'id="test-text"' not in html
    assert page["pos_str"] == [" cat", " mat"] and page["neg_str"] == [" dog"]
    assert page["activations"][0]["tokens"] == TOKENS and page["activations"][0]["values"][2] == 3.0
    assert page["activations"][1]["tokens"][: len(SHORT)] == SHORT  # padded to the longest window
    assert [x["text"] for x in page["explanations"]] == ["cats and mats"]
    bins = sorted((a["binMin"], a["binMax"]) for a in page["activations"] if a["kind"] == "quantile")
    assert bins == [pytest.approx((0.0, 0.2)), pytest.approx((1.2, 1.4))]  # the imported binMin's interval, as Neuronpedia rows


def _corrupt(table: str, row: int, **fields) -> dict:
    tables = rows()
    tables[table][row] = {**tables[table][row], **fields}
    return tables


@pytest.mark.parametrize(("tables", "file", "line", "field"), [
    (_corrupt("features", 1, index="one"), "features/batch-0.jsonl.gz", 2, "index"),
    (_corrupt("features", 2, pos_values=[1.0]), "features/batch-0.jsonl.gz", 3, "pos_str"),
    (_corrupt("features", 0, frac_nonzero=3.5), "features/batch-0.jsonl.gz", 1, "frac_nonzero"),
    (_corrupt("activations", 3, values=[0.0, 1.0]), "activations/batch-0.jsonl.gz", 4, "values"),
    (_corrupt("activations", 0, tokens=["a", 5]), "activations/batch-0.jsonl.gz", 1, "tokens"),
    (_corrupt("explanations", 1, description=""), "explanations/batch-0.jsonl.gz", 2, "description"),
], ids=["index", "logit-lengths", "density", "value-count", "token-type", "empty-explanation"])
def test_malformed_rows_name_file_line_and_field_and_write_nothing(db_url, tmp_path, tables, file, line, field):
    folder = write_export(tmp_path / "export", tables)
    store = Store.open(db_url)
    with pytest.raises(RowError) as caught:
        import_neuronpedia(store, tmp_path / "export", log=QUIET)
    assert (caught.value.path, caught.value.line, caught.value.field) == (folder / file, line, field)
    assert f"line {line}: field {field!r}" in str(caught.value) and file in str(caught.value)
    assert store.list_models() == [] and store.list_sources() == [] and store.list_corpora() == []
    store.close()


def test_bad_json_and_a_broken_gzip_are_named(tmp_path, db_url):
    folder = write_export(tmp_path / "export")
    path = folder / "activations" / "batch-0.jsonl.gz"
    text = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress("\n".join([text[0], "{not json", *text[1:]]).encode()))
    store = Store.open(db_url)
    with pytest.raises(RowError, match="line 2: not JSON"):
        import_neuronpedia(store, tmp_path / "export", log=QUIET)
    path.write_bytes(b"\x1f\x8b broken")
    with pytest.raises(RowError, match="cannot read"):
        import_neuronpedia(store, tmp_path / "export", log=QUIET)
    assert store.list_sources() == []
    store.close()


def test_an_interrupted_import_leaves_nothing_and_a_rerun_completes(db_url, tmp_path, monkeypatch):
    write_export(tmp_path / "export")
    store = Store.open(db_url)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process stopped in the middle of the transaction

    original = writer._explanations
    monkeypatch.setattr(writer, "_explanations", killed)
    with pytest.raises(KeyboardInterrupt):
        import_neuronpedia(store, tmp_path / "export", log=QUIET)
    assert store.list_models() == [] and store.list_sources() == [] and store.list_corpora() == []
    monkeypatch.setattr(writer, "_explanations", original)
    assert import_neuronpedia(store, tmp_path / "export", log=QUIET) == {f"{MODEL}/{SOURCE}": "imported"}
    source = store.get_source(MODEL, SOURCE)
    assert store.count_examples(source.id) == 5 and len(store.list_explanations(source.id, 2)) == 1
    store.close()


def test_cli_imports_and_exports(tmp_path):
    write_export(tmp_path / "export")
    url = f"sqlite:///{tmp_path / 'atlas.db'}"
    runner = CliRunner()
    result = runner.invoke(cli_app, ["import-neuronpedia", str(tmp_path / "export"), "--db", url])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli_app, ["export", str(tmp_path / "pq"), "--format", "parquet", "--db", url])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "pq" / "examples.parquet")) == 5
    result = runner.invoke(cli_app, ["export", str(tmp_path / "np"), "--db", url])
    assert result.exit_code == 0, result.output
    features = tmp_path / "np" / MODEL / SOURCE / "features" / "batch-0.jsonl.gz"
    exported = [json.loads(line) for line in gzip.decompress(features.read_bytes()).splitlines()]
    assert [row["index"] for row in exported[:4]] == ["0", "1", "2", "3"] and exported[0]["pos_str"] == [" cat", " mat"]
