"""P1: build time / bare forward time over the same tokens and last layer (goal <= 1.3x).

Measured side by side in one run, alternating bare and build passes to share machine noise:
  * bare:   the model's forward pass to the last needed layer, activations captured, nothing else
  * encoded: the bare pass plus the sources' encoders (an SAE's x @ W_enc), so that
            `ratio_stats` = build / encoded isolates what the statistics cost
  * build:  the same pass feeding every source's streaming statistics (BuildRun), then the
            finalisation (logits, correlations, examples) and the store write
Sources: the default atlas's MLP neurons (4 layers x 1536), and synthetic TopK SAEs of
4k / 16k / 64k latents on one residual hook to show how time and peak memory grow with width
(each width in its own subprocess so peak RSS is its own).

    .venv/bin/python bench/p1_build_overhead.py [--tokens 32000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def topk_sae(d_in: int, d_sae: int, hook: str, k: int = 32):
    from latentpedia.sources.sae import SAESource, SAEWeights

    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(d_sae, d_in, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    weights = SAEWeights(W_enc=W_dec.T.clone(), b_enc=torch.zeros(d_sae), W_dec=W_dec, b_dec=torch.zeros(d_in), architecture="topk", k=k)
    return SAESource(weights, hook_name=hook, source_id=f"bench-topk-{d_sae}")


def sources_for(case: str, model):
    from latentpedia.dashboards import defaults
    from latentpedia.sources import NeuronSource

    if case == "neurons":
        return [NeuronSource(model, layer) for layer in defaults.NEURON_LAYERS]
    return [topk_sae(model.d_model, int(case), "blocks.14.hook_resid_post")]


def measure(case: str, n_tokens: int, repeats: int) -> dict:
    from latentpedia.dashboards.pipeline import register_model
    from latentpedia.dashboards.runner import BuildPlan, BuildRun
    from latentpedia.corpus import prepare_corpus
    from latentpedia.models.hooks import run_with_cache
    from latentpedia.models.loader import load_model
    from latentpedia.store.api import Store

    torch.manual_seed(0)
    model = load_model()
    corpus = prepare_corpus(model, n_tokens=n_tokens)
    sources = sources_for(case, model)
    plan = BuildPlan(model=model, sources=sources, windows=corpus.windows, corpus_hash=corpus.content_hash)
    hooks = plan.hooks()
    bare, encoded, build, finalize, write = [], [], [], [], []
    base_rss = peak_rss_mb()
    for _ in range(repeats):
        for times, encode in ((bare, False), (encoded, True)):
            start = time.perf_counter()
            for lo in range(0, len(corpus.windows), plan.batch_size):
                acts = run_with_cache(model, torch.from_numpy(corpus.windows[lo : lo + plan.batch_size]).long(), hooks)
                if encode:  # the sources' own encoders (SAE matmuls): part of any build, not of its statistics
                    with torch.inference_mode():
                        for s in sources:
                            s.encode(acts[s.hook_name])
            times.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            run = BuildRun(plan, Path(tmp), checkpoint_seconds=1e9, progress=False)
            start = time.perf_counter()
            run._forward_pass()
            build.append(time.perf_counter() - start)
            start = time.perf_counter()
            results = {s.id: run._results(s) for s in sources}
            finalize.append(time.perf_counter() - start)
            store = Store.open(f"sqlite:///{tmp}/bench.db")
            register_model(store, model)
            cid = store.add_corpus(model.id, "bench", {}, corpus.windows.shape[1], corpus.windows, corpus.composition, corpus.content_hash)
            start = time.perf_counter()
            for s in sources:
                sid = store.add_source(model.id, s.id, s.kind, s.hook_name, s.layer, s.d_in, s.d_sae, cid)
                store.write_source_results(sid, results[s.id])
            write.append(time.perf_counter() - start)
    best = lambda xs: min(xs)  # noqa: E731
    return {
        "case": case,
        "latents": sum(s.d_sae for s in sources),
        "tokens": corpus.n_tokens,
        "last_layer": max(int(h.split(".")[1]) for h in hooks),
        "bare_s": round(best(bare), 2),
        "encode_s": round(best(encoded) - best(bare), 2),
        "pass_s": round(best(build), 2),
        "finalize_s": round(best(finalize), 2),
        "store_s": round(best(write), 2),
        "ratio_pass": round(best(build) / best(bare), 3),
        "ratio_stats": round(best(build) / best(encoded), 3),
        "ratio_total": round((best(build) + best(finalize) + best(write)) / best(bare), 3),
        "peak_rss_mb": round(peak_rss_mb()),
        "rss_over_model_mb": round(peak_rss_mb() - base_rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=32_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cases", default="neurons,4096,16384,65536")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.tokens, args.repeats)))
        return
    rows = []
    for case in args.cases.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", case, "--tokens", str(args.tokens), "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    cols = ["case", "latents", "tokens", "last_layer", "bare_s", "encode_s", "pass_s", "finalize_s", "store_s", "ratio_pass", "ratio_stats", "ratio_total", "peak_rss_mb"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
