"""`latentpedia train-transcoders` and `latentpedia graph` on the tiny atlas: they run end to end,
write what they say, and refuse bad input with one line and exit status 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from latentpedia.cli import app
from latentpedia.sources import load_sae
from latentpedia.store.api import Store
from tests.graph_atlas import graph_atlas

runner = CliRunner()


@pytest.fixture(scope="module")
def atlas(request, tmp_path_factory):
    with graph_atlas(request, tmp_path_factory) as value:
        community, names = value
        store = Store.open(community.url)
        try:
            spec = store.get_model(community.model).spec["path"]
        finally:
            store.close()
        yield community, names, spec


def test_graph_command_prints_saves_and_writes_the_graph(atlas, tmp_path):
    community, names, spec = atlas
    out = tmp_path / "graph.json"
    result = runner.invoke(app, ["graph", "--prompt", "The function returns", "--model", spec, "--db", community.url,
                                 "--max-feature-nodes", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "saved: /graph/" in result.output and "nodes" in result.output
    graph = json.loads(out.read_text())
    assert graph["metadata"]["transcoder_list"] == names
    public_id = result.output.split("saved: /graph/")[1].split()[0]
    store = Store.open(community.url)
    try:
        assert store.get_graph(public_id).data == graph
    finally:
        store.close()


def test_graph_command_refuses_bad_input(atlas):
    community, names, spec = atlas
    base = ["graph", "--prompt", "The function", "--model", spec, "--db", community.url, "--no-save"]
    result = runner.invoke(app, [*base, "--node-threshold", "2"])
    assert result.exit_code == 2 and "node_threshold must be in (0, 1]" in result.output
    result = runner.invoke(app, [*base, "--source", community.atlas.sources[0]])
    assert result.exit_code == 2 and "not a transcoder" in result.output


def test_train_transcoders_command(atlas, tmp_path):
    _, _, spec = atlas
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def values(self):\n    return list(self.items())\n" * 60)
    out = tmp_path / "tc"
    result = runner.invoke(app, ["train-transcoders", "--model", spec, "--layers", "0,2", "--width", "32", "--k", "4",
                                 "--tokens", "256", "--window", "33", "--corpus", str(corpus), "--no-import",
                                 "--eval-tokens", "64", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "every MLP replaced" in result.output and "CE-loss recovered" in result.output
    folders = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert folders == ["0-tc-topk-32", "2-tc-topk-32"]
    assert load_sae(out / folders[1]).kind == "transcoder"
    bad = runner.invoke(app, ["train-transcoders", "--model", spec, "--layers", "7", "--no-import", "--out", str(out)])
    assert bad.exit_code == 2


def test_trained_transcoders_join_the_atlas_with_dashboards(atlas, tmp_path):
    community, _, spec = atlas
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("for key, value in mapping.items():\n    print(key, value)\n" * 60)
    result = runner.invoke(app, ["train-transcoders", "--model", spec, "--layers", "1", "--width", "24", "--k", "3",
                                 "--tokens", "256", "--window", "33", "--corpus", str(corpus), "--eval-tokens", "64",
                                 "--out", str(tmp_path / "tc"), "--db", community.url, "--no-progress"])
    assert result.exit_code == 0, result.output
    store = Store.open(community.url)
    try:
        source = store.get_source(community.model, "1-tc-topk-24")
        assert source.kind == "transcoder" and source.status == "ready"
        assert source.hook_name == "blocks.1.ln2.hook_normalized"
        assert "explained_variance" in source.meta["quality"] and "replacement" in source.meta["quality"]
        assert store.count_latents(source.id) == 24
        fired = [i for i in range(24) if (store.get_latent(source.id, i) or {}).get("max_act", 0) > 0]
        assert fired and store.get_examples(source.id, fired[0])
    finally:
        store.close()
