"""The same attribution graph in latentpedia and in circuit-tracer, side by side, on CPU.

    flock /tmp/latentpedia-heavy.lock .venv/bin/python bench/graph_oracle.py --lengths 16,64

One run: the embedded SmolLM2 (30 layers), one JumpReLU skip transcoder per layer with random
weights saved in circuit-tracer's format (both tools load the same files; thresholds, set on the
model's real MLP inputs, put ~k of `width` latents on per token, like trained ones, so the work
is the same: timing only), a 16-
and a 64-token prompt (BOS included) cut from the default corpus. Each tool computes the
unpruned graph (`attribute`: the real forward pass, the logit rows, then `max_feature_nodes`
latent rows, chosen greedily by influence, in batches of `batch_size`); circuit-tracer runs in its
own venv (`make circuit-oracle`) in a subprocess, timed inside it, model loading excluded. Best
of `--repeats`. One JSON line per prompt length with both times and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_circuit_oracle import CIRCUIT_PYTHON, export_model, run_oracle, save_transcoders  # noqa: E402


def _prompt_ids(m, length: int) -> list[int]:
    from latentpedia.corpus.default import pydoc_documents

    text = " ".join(d.text for d in pydoc_documents()[:3])
    ids = m.tokenizer(text, add_special_tokens=False)["input_ids"]
    return [m.bos_id, *ids[: length - 1]]


def _mlp_inputs(m) -> dict[int, torch.Tensor]:
    """{layer: [127, d]} real MLP inputs (a 128-token window, BOS left out) to set thresholds on."""
    from latentpedia.models import run_with_cache

    names = [f"blocks.{layer}.ln2.hook_normalized" for layer in range(m.n_layers)]
    acts = run_with_cache(m, torch.tensor([_prompt_ids(m, 128)]), names)
    return {layer: acts[name][0, 1:].float() for layer, name in enumerate(names)}


def _ours(m, ids, sources, args) -> tuple[float, object]:
    from latentpedia.experiments.graph import AttributionConfig, attribute
    from latentpedia.experiments.graph.transcoders import replacement_layers

    config = AttributionConfig(max_n_logits=args.max_logits, max_feature_nodes=args.max_feature_nodes,
                               batch_size=args.batch_size)
    layers = replacement_layers(sources, m.n_layers)
    best, att = float("inf"), None
    for _ in range(args.repeats):
        started = time.perf_counter()
        att = attribute(m, ids, layers, config)
        best = min(best, time.perf_counter() - started)
    return best, att


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", default="16,64")
    parser.add_argument("--width", type=int, default=2304)
    parser.add_argument("--k", type=int, default=32, help="about this many latents on per token")
    parser.add_argument("--max-feature-nodes", type=int, default=256)
    parser.add_argument("--max-logits", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not CIRCUIT_PYTHON.exists():
        raise SystemExit(f"no circuit-tracer venv at {CIRCUIT_PYTHON}: run `make circuit-oracle`")
    torch.set_num_threads(2)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from latentpedia.models import load_model
    from latentpedia.sources import load_sae

    m = load_model("smollm2-135m")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        transcoders = save_transcoders(tmp / "transcoders", m.n_layers, m.d_model, args.width, active=args.k / args.width,
                                       inputs=_mlp_inputs(m))
        sources = [load_sae(transcoders / f"layer_{i}.safetensors") for i in range(m.n_layers)]
        export = export_model(m, tmp / "export")
        for length in [int(x) for x in args.lengths.split(",")]:
            ids = _prompt_ids(m, length)
            ours, att = _ours(m, ids, sources, args)
            theirs = run_oracle(export, transcoders, ids, tmp / "theirs.pt", max_n_logits=args.max_logits,
                                batch_size=args.batch_size, max_feature_nodes=args.max_feature_nodes, repeats=args.repeats)
            their_seconds = float(theirs["seconds"].min())
            print(json.dumps({
                "bench": "graph_oracle", "tokens": len(ids), "active_latents": att.nodes.n_features,
                "expanded": int((att.kept < att.nodes.n_features).sum()), "their_active": int(theirs["active_features"].shape[0]),
                "logits": int(att.nodes.logit_tokens.numel()), "ours_s": round(ours, 2), "circuit_tracer_s": round(their_seconds, 2),
                "ratio_theirs_over_ours": round(their_seconds / ours, 2), "batch_size": args.batch_size,
                "max_feature_nodes": args.max_feature_nodes, "width": args.width, "threads": torch.get_num_threads(),
                "load1": os.getloadavg()[0],
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
