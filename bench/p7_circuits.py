"""P7: transcoders for every layer of the embedded model and attribution graphs on 2 cores.

    .venv/bin/python bench/p7_circuits.py train --tokens 50000 --width 2304
    .venv/bin/python bench/p7_circuits.py graph --transcoders <folder> --lengths 16,64

`train`: one streaming pass for all 30 layers (time, tokens/s), then per-layer EV / L0 on
held-out windows and the CE-loss recovered with every MLP replaced at once. `graph`: the graph
of a 16- and a 64-token prompt (BOS included) cut from the default corpus's prose, with the
transcoders trained by `train`: seconds for the frozen run + attribution + pruning, nodes and
links kept. One JSON line per measurement on stdout; the load average is recorded with each.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def _load() -> dict:
    return dict(zip(("load1", "load5", "load15"), os.getloadavg()))


def train(args) -> None:
    from latentpedia.train.transcoder_run import TranscoderRequest, train_transcoders

    knobs = dict(width=args.width, k=args.k, n_tokens=args.tokens, windows_per_step=args.windows_per_step, progress=False)
    request = TranscoderRequest(model="smollm2-135m", out_dir=Path(args.out), eval_tokens=args.eval_tokens,
                                import_to_atlas=False, train=knobs)
    started = time.perf_counter()
    done = train_transcoders(None, request, log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - started
    layers = done["quality"]["layers"]
    evs = [layers[layer]["explained_variance"] for layer in sorted(layers)]
    print(json.dumps({"bench": "train", "seconds_total": round(seconds, 1), "train_seconds": done["results"][0]["seconds"],
                      "tokens": done["results"][0]["tokens"], "tokens_per_second": done["results"][0]["tokens_per_second"],
                      "width": args.width, "k": args.k, "ev_mean": sum(evs) / len(evs), "ev_min": min(evs),
                      "ev_per_layer": [round(v, 3) for v in evs], "l0_mean": sum(layers[x]["l0"] for x in layers) / len(layers),
                      "replacement": done["quality"]["replacement"], **_load()}), flush=True)


def _prompt_ids(m, length: int) -> list[int]:
    from latentpedia.corpus.default import pydoc_documents

    text = " ".join(d.text for d in pydoc_documents()[:3])
    ids = m.tokenizer(text, add_special_tokens=False)["input_ids"]
    return [m.bos_id, *ids[: length - 1]]


def _trained(folder: str) -> list:
    from latentpedia.sources import load_sae

    folders = sorted((p for p in Path(folder).iterdir() if (p / "cfg.json").exists()), key=lambda p: int(p.name.split("-")[0]))
    return [load_sae(path, source_id=path.name) for path in folders]


def _random_transcoders(m, width: int, k: int) -> list:
    """TopK transcoders with random weights: k active latents per token, like trained ones, so
    the attribution's cost (nodes, backward passes) is the same; for timing only."""
    from latentpedia.sources.hooknames import transcoder_hooks
    from latentpedia.sources.sae import SAESource, SAEWeights

    g = torch.Generator().manual_seed(0)
    out = []
    for layer in range(m.n_layers):
        W_enc = torch.randn(m.d_model, width, generator=g) / m.d_model ** 0.5
        W_dec = torch.randn(width, m.d_model, generator=g) / m.d_model ** 0.5
        weights = SAEWeights("topk", W_enc, torch.zeros(width), W_dec, torch.zeros(m.d_model), k=k)
        hook, hook_out = transcoder_hooks(layer)
        out.append(SAESource(weights, hook, output_hook=hook_out, source_id=f"{layer}-tc-random"))
    return out


def graph(args) -> None:
    from latentpedia.experiments.graph import AttributionConfig, generate_graph
    from latentpedia.models import load_model

    m = load_model("smollm2-135m")
    sources = _random_transcoders(m, args.width, args.k) if args.random else _trained(args.transcoders)
    for length in [int(x) for x in args.lengths.split(",")]:
        ids = _prompt_ids(m, length)
        config = AttributionConfig(max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size)
        started = time.perf_counter()
        result = generate_graph(m, ids, sources, config=config)
        seconds = time.perf_counter() - started
        info = result["metadata"]["info"]
        print(json.dumps({"bench": "graph", "tokens": len(ids), "seconds": round(seconds, 1),
                          "max_feature_nodes": args.max_feature_nodes, "expanded": info["n_expanded_features"],
                          "active_latents": info["n_candidate_features"], "nodes": len(result["nodes"]),
                          "links": len(result["links"]), "transcoders": "random" if args.random else args.transcoders, "threads": torch.get_num_threads(), **_load()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--tokens", type=int, default=50_000)
    t.add_argument("--width", type=int, default=2304)
    t.add_argument("--k", type=int, default=32)
    t.add_argument("--windows-per-step", type=int, default=4)
    t.add_argument("--eval-tokens", type=int, default=4096)
    t.add_argument("--out", default="/tmp/p7-transcoders")
    g = sub.add_parser("graph")
    g.add_argument("--transcoders", default="/tmp/p7-transcoders")
    g.add_argument("--lengths", default="16,64")
    g.add_argument("--max-feature-nodes", type=int, default=256)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--random", action="store_true", help="random-weight TopK transcoders (timing only)")
    g.add_argument("--width", type=int, default=2304)
    g.add_argument("--k", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(2)
    (train if args.what == "train" else graph)(args)


if __name__ == "__main__":
    main()
