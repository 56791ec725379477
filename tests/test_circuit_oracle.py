"""circuit-tracer as an oracle for our attribution graphs.

circuit-tracer (pinned, with TransformerLens and transformers 4.x) lives in its own venv,
`.venv-circuit` (Makefile target `circuit-oracle`; `$LATENTPEDIA_CIRCUIT_PYTHON` overrides the
interpreter), because its dependencies conflict with ours. This file is both the pytest module
(our venv) and the script that venv runs: `python tests/test_circuit_oracle.py EXPORT OUT`.

Our side exports a model (HF LLaMA weights, dims, tokenizer) and per-layer transcoders saved in
circuit-tracer's own format (`layer_{i}.safetensors` + `config.yaml`, which we load through
`load_sae` as well); the oracle builds a TransformerLens LLaMA with the same weights (checked:
same logits), loads the transcoders with circuit-tracer's `load_transcoder_set` and runs its
`attribute`. The test compares the candidate nodes, activations, chosen logits and every entry
of the unpruned adjacency matrix, then the pruned node and edge sets.

Tolerance: both sides compute in float32 and differ only in operation order (TransformerLens
einsums vs HF linear layers, one batched backward per row block), so entries agree to float
rounding of sums over d_model terms through a few layers: we allow 1e-4 of the largest |edge|
plus 1e-3 relative, far below the spread of real edge weights (which span orders of magnitude).
Known, deliberate difference: circuit-tracer zeroes the error vectors at position 0 (the BOS
token, whose MLP output then belongs to no node); we keep them as error nodes so that every
MLP output is accounted for. Edges *into* those nodes' targets are identical; the columns of the
position-0 error nodes are zero in theirs and compared only there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CIRCUIT_PYTHON = Path(os.environ.get("LATENTPEDIA_CIRCUIT_PYTHON", ROOT / ".venv-circuit" / "bin" / "python"))
CT_CONFIG = ("model_kind: transcoder_set\nfeature_input_hook: mlp.hook_in\nfeature_output_hook: mlp.hook_out\n"
             "scan: latentpedia-oracle\n")


# ----------------------------------------------------------------------------- our side (export)

def save_transcoders(folder: Path, n_layers: int, d_model: int, width: int, *, seed: int = 0,
                     skip: bool = True, active: float = 0.1, inputs: dict | None = None) -> Path:
    """Random JumpReLU skip transcoders, one per layer, in circuit-tracer's format.

    Thresholds sit at the (1 - `active`) quantile of each latent's pre-activation on `inputs`
    ({layer: [n, d_model] MLP inputs}; default unit Gaussian ones), so about `active` of the
    latents fire per token."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for layer in range(n_layers):
        W_enc = torch.randn(width, d_model, generator=g) / d_model**0.5
        b_enc = torch.randn(width, generator=g) * 0.1
        x = inputs[layer] if inputs is not None else torch.randn(512, d_model, generator=g)
        probe = x.float() @ W_enc.T + b_enc
        threshold = probe.quantile(1 - active, dim=0).clamp_min(0.05)
        tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": torch.randn(width, d_model, generator=g) * 0.3 / width**0.5,
                   "b_dec": torch.randn(d_model, generator=g) * 0.01, "activation_function.threshold": threshold}
        if skip:
            tensors["W_skip"] = torch.randn(d_model, d_model, generator=g) * 0.05 / d_model**0.5
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / f"layer_{layer}.safetensors"))
    (folder / "config.yaml").write_text(CT_CONFIG)
    return folder


def _rope_theta(config) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10_000.0)
    return float(theta)


def export_model(m, folder: Path) -> Path:
    """What the oracle needs to rebuild `m` in TransformerLens: weights, dims, tokenizer."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = m.hf.config
    state = {k: v.detach().float().clone().contiguous() for k, v in m.hf.state_dict().items()}
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    save_file(state, str(folder / "model.safetensors"))
    n_heads = cfg.num_attention_heads
    dims = {"n_layers": m.n_layers, "d_model": m.d_model, "d_mlp": m.d_mlp, "vocab": m.vocab_size,
            "n_heads": n_heads, "n_kv_heads": getattr(cfg, "num_key_value_heads", None) or n_heads,
            "d_head": getattr(cfg, "head_dim", None) or m.d_model // n_heads, "eps": float(cfg.rms_norm_eps),
            "rope_theta": _rope_theta(cfg), "n_ctx": int(getattr(cfg, "max_position_embeddings", 2048)),
            "bos_id": m.bos_id, "bos_text": m.tokenizer.convert_ids_to_tokens(m.bos_id)}
    (folder / "model.json").write_text(json.dumps(dims))
    m.tokenizer.save_pretrained(str(folder / "tokenizer"))
    config_path = folder / "tokenizer" / "tokenizer_config.json"  # transformers 5 names a class 4.x lacks
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "tokenizer_class": "PreTrainedTokenizerFast"}))
    return folder


def run_oracle(export: Path, transcoders: Path, ids: list[int], out: Path, *, max_n_logits: int = 5,
               desired_logit_prob: float = 0.95, batch_size: int = 32, max_feature_nodes: int | None = None,
               repeats: int = 1, timeout: float = 1800) -> dict:
    """circuit-tracer's graph of `ids` (run in the oracle venv); its tensors and timings."""
    request = {"transcoders": str(transcoders), "ids": ids, "max_n_logits": max_n_logits, "batch_size": batch_size,
               "desired_logit_prob": desired_logit_prob, "max_feature_nodes": max_feature_nodes, "repeats": repeats}
    (export / "request.json").write_text(json.dumps(request))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([str(CIRCUIT_PYTHON), str(Path(__file__).resolve()), str(export), str(out)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"circuit-tracer failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return torch.load(out, weights_only=True)


# ----------------------------------------------------------------------------- their side (oracle venv)

def _tl_state(weights: dict, dims: dict) -> dict:
    """HF LLaMA weights under TransformerLens names (no folding, no centering)."""
    n, nkv, h, d = dims["n_heads"], dims["n_kv_heads"], dims["d_head"], dims["d_model"]
    sd = {"embed.W_E": weights["model.embed_tokens.weight"], "ln_final.w": weights["model.norm.weight"],
          "unembed.W_U": weights["lm_head.weight"].T, "unembed.b_U": torch.zeros(dims["vocab"])}
    for layer in range(dims["n_layers"]):
        p, b = f"model.layers.{layer}.", f"blocks.{layer}."
        heads = lambda key, count: weights[p + key].reshape(count, h, d).permute(0, 2, 1)  # noqa: E731
        sd.update({
            b + "ln1.w": weights[p + "input_layernorm.weight"], b + "ln2.w": weights[p + "post_attention_layernorm.weight"],
            b + "attn.W_Q": heads("self_attn.q_proj.weight", n), b + "attn._W_K": heads("self_attn.k_proj.weight", nkv),
            b + "attn._W_V": heads("self_attn.v_proj.weight", nkv),
            b + "attn.W_O": weights[p + "self_attn.o_proj.weight"].reshape(d, n, h).permute(1, 2, 0),
            b + "attn.b_Q": torch.zeros(n, h), b + "attn._b_K": torch.zeros(nkv, h), b + "attn._b_V": torch.zeros(nkv, h),
            b + "attn.b_O": torch.zeros(d),
            b + "mlp.W_in": weights[p + "mlp.up_proj.weight"].T, b + "mlp.W_gate": weights[p + "mlp.gate_proj.weight"].T,
            b + "mlp.W_out": weights[p + "mlp.down_proj.weight"].T, b + "mlp.b_in": torch.zeros(dims["d_mlp"]),
            b + "mlp.b_out": torch.zeros(d),
        })  # fmt: skip
    return {k: v.contiguous() for k, v in sd.items()}


def _oracle_model(export: Path, transcoders: Path):
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    dims = json.loads((export / "model.json").read_text())
    cfg = HookedTransformerConfig(
        d_model=dims["d_model"], d_head=dims["d_head"], n_heads=dims["n_heads"], n_key_value_heads=dims["n_kv_heads"],
        d_mlp=dims["d_mlp"], n_layers=dims["n_layers"], n_ctx=dims["n_ctx"], d_vocab=dims["vocab"], act_fn="silu",
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=dims["d_head"],
        rotary_base=dims["rope_theta"], gated_mlp=True, final_rms=True, eps=dims["eps"], model_name="latentpedia-oracle",
        original_architecture="LlamaForCausalLM", default_prepend_bos=False, device="cpu", dtype=torch.float32,
    )  # fmt: skip
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(export / "tokenizer"), bos_token=dims["bos_text"],
                                                        eos_token=dims["bos_text"])
    paths = {i: str(transcoders / f"layer_{i}.safetensors") for i in range(dims["n_layers"])}
    tset = load_transcoder_set(paths, scan="latentpedia-oracle", feature_input_hook="mlp.hook_in",
                               feature_output_hook="mlp.hook_out", device=torch.device("cpu"), dtype=torch.float32,
                               lazy_encoder=False, lazy_decoder=False)
    model = TransformerLensReplacementModel(cfg, tokenizer=tokenizer)
    missing, unexpected = model.load_state_dict(_tl_state(load_file(str(export / "model.safetensors")), dims), strict=False)
    params = {name for name, _ in model.named_parameters()}
    assert not unexpected and not (set(missing) & params), (missing, unexpected)
    model._configure_replacement_model(tset)
    model.eval()
    return model


def oracle_main(export: Path, out: Path) -> None:
    from circuit_tracer.attribution.attribute import attribute
    from circuit_tracer.graph import prune_graph

    request = json.loads((export / "request.json").read_text())
    torch.set_num_threads(2)  # the machines this runs on; our side of the bench uses the same
    model = _oracle_model(export, Path(request["transcoders"]))
    ids = torch.tensor(request["ids"])
    with torch.no_grad():
        logits = model(ids[None])[0, -1].float()
    seconds = []
    for _ in range(request["repeats"]):
        started = time.perf_counter()
        graph = attribute(ids, model, max_n_logits=request["max_n_logits"], desired_logit_prob=request["desired_logit_prob"],
                          batch_size=request["batch_size"], max_feature_nodes=request["max_feature_nodes"])
        seconds.append(time.perf_counter() - started)
    pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
    torch.save({"node_mask": pruned.node_mask.bool(), "edge_mask": pruned.edge_mask.bool(),
                "active_features": graph.active_features.long(), "activation_values": graph.activation_values.float(),
                "selected_features": graph.selected_features.long(), "adjacency": graph.adjacency_matrix.float(),
                "logit_tokens": torch.tensor([t.vocab_idx for t in graph.logit_targets]),
                "logit_probs": graph.logit_probabilities.float(), "logits": logits, "seconds": torch.tensor(seconds)}, out)


# ----------------------------------------------------------------------------- the test

def _available() -> bool:
    return CIRCUIT_PYTHON.exists()


def test_graph_agrees_with_circuit_tracer(tmp_path):
    import pytest

    if not _available():
        pytest.skip(f"circuit-tracer's venv is missing ({CIRCUIT_PYTHON}): `make circuit-oracle`")
    from latentpedia.experiments.common import prompt_ids
    from latentpedia.experiments.graph import AttributionConfig, attribute
    from latentpedia.experiments.graph.prune import prune
    from latentpedia.experiments.graph.transcoders import replacement_layers
    from latentpedia.models import load_model
    from latentpedia.sources import load_sae
    from tests.tiny import tiny_llama

    m = load_model(tiny_llama(tmp_path / "model"))
    transcoders = save_transcoders(tmp_path / "transcoders", m.n_layers, m.d_model, width=48)
    sources = [load_sae(transcoders / f"layer_{i}.safetensors") for i in range(m.n_layers)]
    assert all(s.kind == "transcoder" and s.skip is not None for s in sources)
    ids = prompt_ids(m, "The function returns a list of values")
    config = AttributionConfig(max_n_logits=5, desired_logit_prob=0.95, max_feature_nodes=None, batch_size=16)
    ours = attribute(m, ids, replacement_layers(sources, m.n_layers), config)
    theirs = run_oracle(export_model(m, tmp_path / "export"), transcoders, ids, tmp_path / "theirs.pt",
                        max_n_logits=5, batch_size=16)

    torch.testing.assert_close(theirs["logits"], ours.run.logits[-1].float(), atol=1e-4, rtol=1e-4)  # same model
    nodes = ours.nodes
    assert nodes.n_features > 20
    assert torch.equal(theirs["active_features"], nodes.features)  # (layer, position, latent), same order
    torch.testing.assert_close(theirs["activation_values"], nodes.activations, atol=1e-5, rtol=1e-4)
    assert theirs["logit_tokens"].tolist() == nodes.logit_tokens.tolist()
    torch.testing.assert_close(theirs["logit_probs"], nodes.logit_probs, atol=1e-5, rtol=1e-4)

    A, B = ours.adjacency, theirs["adjacency"]
    assert A.shape == B.shape == (nodes.size, nodes.size)
    bos_errors = torch.arange(nodes.error_start, nodes.token_start)[:: nodes.n_pos]  # error nodes at position 0
    assert (B[:, bos_errors] == 0).all() and (A[:, bos_errors] != 0).any()
    keep = torch.ones(nodes.size, dtype=torch.bool)
    keep[bos_errors] = False
    scale = A[:, keep].abs().max()
    torch.testing.assert_close(A[:, keep], B[:, keep], atol=1e-4 * float(scale), rtol=1e-3)
    assert (A[:, : nodes.n_features] != 0).sum() > 100  # latents feed latents and logits

    # pruning: our rule on their adjacency keeps exactly their nodes and edges, and on ours (with
    # the position-0 error columns zeroed as theirs are) the same nodes
    always, has_inputs = ours.kept >= nodes.token_start, ours.kept < nodes.n_features
    weights = torch.zeros(nodes.size)
    weights[nodes.logit_start:] = nodes.logit_probs
    on_theirs = prune(B, weights, always, 0.8, 0.98, has_inputs=has_inputs)
    assert torch.equal(on_theirs.node_mask, theirs["node_mask"]) and torch.equal(on_theirs.edge_mask, theirs["edge_mask"])
    assert 0 < int((theirs["node_mask"] & has_inputs).sum()) < nodes.n_features  # pruning kept some latents, not all
    on_ours = prune(A.index_fill(1, bos_errors, 0.0), weights, always, 0.8, 0.98, has_inputs=has_inputs)
    assert torch.equal(on_ours.node_mask, theirs["node_mask"])


if __name__ == "__main__":
    oracle_main(Path(sys.argv[1]), Path(sys.argv[2]))
