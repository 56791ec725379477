"""Unit costs that docs/scaling.md extrapolates from, measured here on SmolLM2-135M (fp32, CPU).

- forward pass per token per layer: the pass stopped after layer A and after layer B over the
  same batches; (t_B - t_A) / (tokens * (B - A)) (the embedding and the captures cancel out);
- encode per latent per token: a TopK SAE (d_model -> width, x @ W_enc + b, top-k) on real
  residual activations, / (tokens * width), for two widths;
- statistics per latent per token: SourceAccumulator.update (every dashboard statistic) on those
  SAE latents (sparse) and on a layer's MLP neurons (dense), / (tokens * latents);
- bytes per latent and per stored example: a real build of those sources into a fresh SQLite
  store, sizes from SQLite's dbstat (pages of each table and its indexes).

    .venv/bin/python bench/scaling_costs.py --tokens 8192
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import torch


def per_layer_forward(model, ids: torch.Tensor, a: int, b: int, batch: int) -> float:
    from latentpedia.models.hooks import run_with_cache

    def run(layer: int) -> float:
        hook = f"blocks.{layer}.hook_resid_post"
        start = time.perf_counter()
        with torch.inference_mode():
            for lo in range(0, len(ids), batch):
                run_with_cache(model, ids[lo : lo + batch], [hook], stop_early=True)
        return time.perf_counter() - start

    run(a)  # warm-up
    t_a, t_b = run(a), run(b)
    return (t_b - t_a) / (ids.numel() * (b - a))


def topk_encode(x: torch.Tensor, width: int, k: int = 32) -> tuple[torch.Tensor, float]:
    g = torch.Generator().manual_seed(0)
    w_enc = torch.randn((x.shape[-1], width), generator=g) / x.shape[-1] ** 0.5
    b_enc = torch.zeros(width)
    flat = x.reshape(-1, x.shape[-1])
    start = time.perf_counter()
    with torch.inference_mode():
        pre = flat @ w_enc + b_enc
        top = torch.topk(pre, k, dim=-1)
        out = torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
    seconds = time.perf_counter() - start
    return out.view(*x.shape[:-1], width), seconds / (flat.shape[0] * width)


def stats_cost(latents: torch.Tensor, batch: int) -> float:
    from latentpedia.dashboards.accumulator import SourceAccumulator

    n, t, d = latents.shape
    acc = SourceAccumulator(d, t)
    start = time.perf_counter()
    for lo in range(0, n, batch):
        acc.update(latents[lo : lo + batch], torch.arange(lo, min(lo + batch, n)))
    return (time.perf_counter() - start) / (n * (t - 1) * d)


def store_bytes(url_file: Path) -> dict[str, int]:
    con = sqlite3.connect(url_file)
    try:
        rows = con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    finally:
        con.close()
    return dict(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from latentpedia.corpus import prepare_corpus
    from latentpedia.dashboards.pipeline import BuildRequest, build
    from latentpedia.models.hooks import run_with_cache
    from latentpedia.models.loader import load_model
    from latentpedia.store.api import Store

    model = load_model("smollm2-135m")
    corpus = prepare_corpus(model, "default", n_tokens=args.tokens, window_len=128)
    ids = torch.from_numpy(corpus.windows).long()
    n_tok = ids.numel()
    print(f"SmolLM2-135M, {len(ids)} windows x 128 = {n_tok:,} tokens, batch {args.batch}, torch threads {torch.get_num_threads()}")
    layer_s = per_layer_forward(model, ids, 3, 15, args.batch)
    print(f"forward pass per token per layer: {layer_s * 1e6:.1f} us  (d_model {model.d_model}, d_mlp {model.d_mlp})")
    with torch.inference_mode():
        acts = {}
        for lo in range(0, len(ids), args.batch):
            got = run_with_cache(model, ids[lo : lo + args.batch], ["blocks.8.hook_resid_post", "blocks.8.mlp.hook_post"])
            for k, v in got.items():
                acts.setdefault(k, []).append(v)
        acts = {k: torch.cat(v) for k, v in acts.items()}
    for width in (4096, 16384):
        latents, enc = topk_encode(acts["blocks.8.hook_resid_post"], width)
        print(f"encode per latent per token (TopK {model.d_model}->{width:,}, k=32): {enc * 1e9:.2f} ns")
        print(f"statistics per latent per token (that SAE, sparse): {stats_cost(latents, args.batch) * 1e9:.2f} ns")
    neurons = acts["blocks.8.mlp.hook_post"].float()
    print(f"statistics per latent per token ({model.d_mlp} MLP neurons, dense): {stats_cost(neurons, args.batch) * 1e9:.2f} ns")

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "atlas.db"
        store = Store.open(f"sqlite:///{db}")
        request = BuildRequest(sources=["8-mlp"], n_tokens=args.tokens, progress=False, maps=False)
        build(store, request, log=lambda *_: None)
        source = store.get_source("smollm2-135m", "8-mlp")
        n_examples = sum(len(store.get_examples(source.id, i)) for i in range(source.d_sae))
        store.close()
        sizes = store_bytes(db)
    per = lambda prefix: sum(v for k, v in sizes.items() if k == prefix or (k.startswith("ix_") and prefix in k) or k.startswith(f"sqlite_autoindex_{prefix}_"))  # noqa: E731
    ex, lat = per("examples"), per("latents")
    print(f"store (SQLite): examples {ex:,} B for {n_examples:,} examples = {ex / n_examples:.0f} B/example; "
          f"latents {lat:,} B for {source.d_sae:,} latents = {lat / source.d_sae:.0f} B/latent (hist, logits, aligned, correlated)")
    windows = per("corpus_windows") or per("windows")
    print(f"corpus windows: {windows:,} B for {n_tok:,} tokens; every table: {sizes}")


if __name__ == "__main__":
    main()
