"""Attribution graphs on the tiny random LLaMA with small random transcoders: the frozen linear
skeleton reproduces the model's logits, every edge equals the brute-force change of its target
when its source is removed, greedy selection, pruning and the Neuronpedia graph JSON."""

from __future__ import annotations

import math

import pytest
import torch

from latentpedia.errors import InvalidInputError
from latentpedia.experiments.common import prompt_ids
from latentpedia.experiments.graph import AttributionConfig, attribute, generate_graph, parse_graph, prune_attribution
from latentpedia.experiments.graph.attribution import Attributor
from latentpedia.experiments.graph.frozen import LinearSkeleton, capture
from latentpedia.experiments.graph.transcoders import replacement_layers
from latentpedia.models import load_model
from latentpedia.sources.hooknames import transcoder_hooks
from latentpedia.sources.sae import SAESource, SAEWeights
from tests.tiny import D_MODEL, N_LAYERS, tiny_llama

PROMPT = "The function returns a list of the values"
D_SAE, K = 48, 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama"))


def random_transcoder(layer: int, seed: int, *, skip: bool = False) -> SAESource:
    """A TopK transcoder of `layer` with random weights (optionally a linear skip)."""
    g = torch.Generator().manual_seed(seed)
    W_enc = torch.randn(D_MODEL, D_SAE, generator=g) / math.sqrt(D_MODEL)
    W_dec = torch.randn(D_SAE, D_MODEL, generator=g) * 0.05
    weights = SAEWeights("topk", W_enc, torch.randn(D_SAE, generator=g) * 0.1, W_dec,
                         torch.randn(D_MODEL, generator=g) * 0.01, k=K)
    hook, out = transcoder_hooks(layer)
    source = SAESource(weights, hook, output_hook=out, source_id=f"{layer}-tc-test")
    if skip:
        source.skip = torch.randn(D_MODEL, D_MODEL, generator=g) * 0.02
    return source


@pytest.fixture(scope="module")
def transcoders():
    """Layers 0, 1 and 3 (1 with a skip); layer 2 has none (its MLP is all error)."""
    return [random_transcoder(0, 0), random_transcoder(1, 1, skip=True), random_transcoder(3, 3)]


@pytest.fixture(scope="module")
def full(tiny, transcoders):
    ids = prompt_ids(tiny, PROMPT)
    layers = replacement_layers(transcoders, tiny.n_layers)
    return attribute(tiny, ids, layers, AttributionConfig(max_feature_nodes=None, batch_size=7)), layers


def test_skeleton_reproduces_the_models_logits(tiny, transcoders):
    ids = prompt_ids(tiny, PROMPT)
    run = capture(tiny, ids)
    real = tiny.hf(input_ids=torch.tensor([ids])).logits[0]
    layers = replacement_layers(transcoders, tiny.n_layers)
    skeleton = LinearSkeleton(tiny, run, [layer.skip for layer in layers])
    mlp_ins, final = skeleton.forward(run.embeds[None], skeleton.real_consts())
    torch.testing.assert_close(skeleton.logits(final)[0], real, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(run.logits, real, atol=1e-5, rtol=1e-5)
    for layer in range(N_LAYERS):
        torch.testing.assert_close(mlp_ins[layer][0], run.mlp_in[layer], atol=1e-5, rtol=1e-5)


def _replacement_consts(att: Attributor) -> list[torch.Tensor]:
    """Per layer [1, T, d]: latents' decoder rows + decoder bias + error (the skip is added by the skeleton)."""
    consts = []
    nodes = att.nodes
    for layer in range(N_LAYERS):
        total = att.errors[layer] + att.layers[layer].bias(D_MODEL)
        for f in (nodes.features[:, 0] == layer).nonzero(as_tuple=True)[0].tolist():
            _, pos, index = nodes.features[f].tolist()
            total[pos] += nodes.activations[f] * att.decoders[layer][index]
        consts.append(total[None].clone())
    return consts


def test_replacement_model_with_errors_reproduces_the_logits(tiny, transcoders):
    ids = prompt_ids(tiny, PROMPT)
    att = Attributor(tiny, capture(tiny, ids), replacement_layers(transcoders, N_LAYERS), AttributionConfig())
    assert att.nodes.n_features > 0
    assert not bool((att.nodes.features[:, 1] == 0).any()), "BOS latents are folded into the error"
    _, final = att.skeleton.forward(att.run.embeds[None], _replacement_consts(att))
    torch.testing.assert_close(att.skeleton.logits(final)[0], att.run.logits, atol=1e-4, rtol=1e-4)


def _target_value(att: Attributor, candidate: int, embeds, consts) -> float:
    nodes = att.nodes
    mlp_ins, final = att.skeleton.forward(embeds, consts)
    if candidate >= nodes.logit_start:
        token = int(nodes.logit_tokens[candidate - nodes.logit_start])
        return float(final[0, -1] @ att.logit_direction(token))
    layer, pos, _ = nodes.features[candidate].tolist()
    return float(mlp_ins[layer][0, pos] @ att.feature_direction(candidate))


def _without(att: Attributor, candidate: int, embeds, consts):
    """Inputs of the linear skeleton with source node `candidate` removed."""
    nodes = att.nodes
    embeds, consts = embeds.clone(), [c.clone() for c in consts]
    if candidate < nodes.n_features:
        layer, pos, index = nodes.features[candidate].tolist()
        consts[layer][0, pos] -= nodes.activations[candidate] * att.decoders[layer][index]
    elif candidate < nodes.token_start:
        layer, pos = divmod(candidate - nodes.error_start, nodes.n_pos)
        consts[layer][0, pos] -= att.errors[layer][pos]
    else:
        embeds[0, candidate - nodes.token_start] = 0
    return embeds, consts


def test_every_edge_is_the_brute_force_effect_of_removing_its_source(tiny, transcoders, full):
    att_graph, layers = full
    att = Attributor(tiny, att_graph.run, layers, AttributionConfig())
    nodes = att.nodes
    assert torch.equal(att_graph.kept, torch.arange(nodes.size))
    embeds, consts = att.run.embeds[None], _replacement_consts(att)
    g = torch.Generator().manual_seed(0)
    features = torch.randperm(nodes.n_features, generator=g)[:6].tolist()
    targets = features + list(range(nodes.logit_start, nodes.size))[:2]
    sources = torch.randperm(nodes.logit_start, generator=g)[:25].tolist()
    sources += [nodes.error_start + 2 * nodes.n_pos + 3, nodes.token_start + 1]  # layer 2's error, a token
    scale = float(att_graph.adjacency.abs().max())
    checked_nonzero = 0
    for t in targets:
        base = _target_value(att, t, embeds, consts)
        for s in sources:
            removed = _target_value(att, t, *_without(att, s, embeds, consts))
            edge = float(att_graph.adjacency[t, s])
            assert edge == pytest.approx(base - removed, abs=2e-4 * scale + 1e-5), (t, s)
            checked_nonzero += abs(edge) > 1e-3 * scale
    assert checked_nonzero > 10


def test_edges_respect_causality(full):
    att, _ = full
    nodes = att.nodes
    A = att.adjacency
    for f in range(nodes.n_features):
        layer, pos, _ = nodes.features[f].tolist()
        later = (nodes.features[:, 0] >= layer) | (nodes.features[:, 1] > pos)
        assert not bool(A[f, : nodes.n_features][later].abs().gt(0).any())
        assert float(A[f, nodes.token_start + pos + 1 : nodes.logit_start].abs().sum()) == 0.0


def test_greedy_selection_keeps_the_exact_rows(tiny, transcoders, full):
    complete, layers = full
    ids = prompt_ids(tiny, PROMPT)
    limited = attribute(tiny, ids, layers, AttributionConfig(max_feature_nodes=10, batch_size=4))
    nodes = limited.nodes
    chosen = limited.kept[limited.kept < nodes.n_features]
    assert chosen.numel() == 10
    expected = complete.adjacency[chosen][:, limited.kept]
    torch.testing.assert_close(limited.adjacency[:10], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(limited.adjacency[-nodes.logit_tokens.numel():],
                               complete.adjacency[nodes.logit_start:][:, limited.kept], atol=1e-6, rtol=1e-5)


def test_pruning_keeps_logits_and_tokens_and_drops_the_weak(full):
    att, _ = full
    loose = prune_attribution(att, node_threshold=1.0, edge_threshold=1.0)
    tight = prune_attribution(att, node_threshold=0.5, edge_threshold=0.8)
    always = att.kept >= att.nodes.token_start
    assert bool(tight.node_mask[always].all())
    assert int(tight.node_mask.sum()) < int(loose.node_mask.sum())
    assert int(tight.edge_mask.sum()) < int(loose.edge_mask.sum())
    assert not bool((tight.edge_mask & ~tight.node_mask[:, None]).any())
    n_logits = att.nodes.logit_tokens.numel()
    torch.testing.assert_close(tight.node_influence[-n_logits:], att.nodes.logit_probs)
    with pytest.raises(InvalidInputError):
        prune_attribution(att, node_threshold=0.0)


def test_graph_json_follows_the_neuronpedia_schema(tiny, transcoders):
    graph = generate_graph(tiny, PROMPT, transcoders, config=AttributionConfig(max_feature_nodes=None),
                           label=lambda source, index: f"{source}#{index}")
    assert set(graph) == {"metadata", "qParams", "nodes", "links"}
    meta = graph["metadata"]
    assert meta["scan"] == tiny.id and meta["prompt"] == PROMPT and meta["schema_version"] == 1
    assert meta["transcoder_list"] == ["0-tc-test", "1-tc-test", "3-tc-test"]
    kinds = {node["feature_type"] for node in graph["nodes"]}
    assert {"embedding", "logit", "cross layer transcoder"} <= kinds
    ids = {node["node_id"] for node in graph["nodes"]}
    assert all(link["source"] in ids and link["target"] in ids for link in graph["links"])
    feature = next(n for n in graph["nodes"] if n["feature_type"] == "cross layer transcoder")
    assert feature["node_id"] == f"{feature['layer']}_{feature['feature']}_{feature['ctx_idx']}"
    assert feature["clerp"] == f"{feature['source']}#{feature['feature']}"
    logits = [n for n in graph["nodes"] if n["feature_type"] == "logit"]
    assert logits[0]["is_target_logit"] and logits[0]["layer"] == str(N_LAYERS + 1)
    assert parse_graph(graph)["nodes"] == graph["nodes"]


def test_parse_graph_rejects_broken_documents():
    good = {"metadata": {"prompt_tokens": ["a"]}, "nodes": [{"node_id": "E_1_0", "feature_type": "embedding"}],
            "links": []}
    assert parse_graph(good)["qParams"]["pinnedIds"] == []
    with pytest.raises(InvalidInputError, match="names no node"):
        parse_graph({**good, "links": [{"source": "E_1_0", "target": "x", "weight": 1.0}]})
    with pytest.raises(InvalidInputError, match="no 'nodes'"):
        parse_graph({"metadata": {"prompt_tokens": []}, "links": []})


def test_bad_transcoder_sets_are_refused(tiny, transcoders):
    with pytest.raises(InvalidInputError, match="two transcoders"):
        replacement_layers([transcoders[0], random_transcoder(0, 9)], N_LAYERS)
    with pytest.raises(InvalidInputError, match="at least one"):
        replacement_layers([], N_LAYERS)
    sae = SAESource(transcoders[0].weights, "blocks.0.hook_resid_post", source_id="0-res")
    with pytest.raises(InvalidInputError, match="not a transcoder"):
        replacement_layers([sae], N_LAYERS)
