"""Saved attribution graphs in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from latentpedia.errors import NotFoundError

GRAPH = {"metadata": {"slug": "capital", "scan": "tiny", "prompt": "The capital is", "prompt_tokens": ["The", " capital"]},
         "qParams": {"pinnedIds": [], "supernodes": []},
         "nodes": [{"node_id": "E_1_0", "feature_type": "embedding"}], "links": []}


def test_graphs_round_trip_with_public_ids(store):
    saved = store.add_graph(GRAPH, origin="generated")
    assert len(saved.public_id) >= 16 and saved.title == "capital" and saved.model_id == "tiny"
    assert store.get_graph(saved.public_id).data == GRAPH
    pinned = {**GRAPH, "qParams": {"pinnedIds": ["E_1_0"], "supernodes": [["tokens", "E_1_0"]]}}
    child = store.add_graph(pinned, origin="subgraph", parent_id=saved.id, title="my subgraph")
    assert child.public_id != saved.public_id and child.parent_id == saved.id
    assert store.get_graph(child.public_id).data["qParams"]["supernodes"] == [["tokens", "E_1_0"]]
    assert [g.public_id for g in store.list_graphs(model_id="tiny")] == [child.public_id, saved.public_id]
    assert store.list_graphs(model_id="other") == []
    with pytest.raises(NotFoundError):
        store.get_graph("nope")
