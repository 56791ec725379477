"""P3: search-all over every source of the default atlas for a 64-token prompt ÷ one bare forward pass.

    python bench/p3_search_all.py [--tokens 64] [--repeats 20] [--workdir DIR]

Sources: the default atlas's MLP neurons (layers 2, 8, 14, 20) plus TopK SAEs of width 4,608
(k=32) on the residual stream after layers 8, 14 and 20 -- random weights in SAELens format, as
trained SAEs may not be in the store; an SAE's encode cost does not depend on its weights.

Timed side by side in one run, interleaved, median of `--repeats` after a warm-up:
  forward      one bare forward pass of SmolLM2-135M with logits (`model.hf(ids)`)
  base         the same without the unembedding (`model.hf.base_model(ids)`), the stricter yardstick
  compute      what the route runs on the live worker: tokenize, one forward pass stopped after
               layer 20, every source encoded, one top-k over all of them (density ceiling on)
  route        `POST /api/search-all` end to end through the app (JSON in/out, store reads,
               the live queue), on a store holding those 7 sources
Prints a Markdown table row; goal: route ≤ 1.5 × forward.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from latentpedia.dashboards import defaults

SAE_WIDTH, SAE_K = 4608, 32


def write_random_sae(folder: Path, hook: str, d_in: int, seed: int) -> Path:
    """A random TopK SAE in SAELens (>= 6) format."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(SAE_WIDTH, d_in, generator=g) / d_in**0.5
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"architecture": "topk", "d_in": d_in, "d_sae": SAE_WIDTH, "k": SAE_K, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": False, "normalize_activations": "none", "metadata": {"hook_name": hook}}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {"W_enc": W_dec.T.contiguous(), "b_enc": torch.zeros(SAE_WIDTH), "W_dec": W_dec, "b_dec": torch.zeros(d_in)}
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder


def _synthetic_results(d: int, rng: np.random.Generator):
    from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults

    empty = np.zeros(0)
    stats = LatentStats(
        max_act=rng.random(d, dtype=np.float32), frac_nonzero=(rng.random(d, dtype=np.float32) / 10),
        mean_act=np.zeros(d, np.float32), hist=[{}] * d, logits=[{}] * d, aligned=[[]] * d, correlated=[[]] * d,
    )  # fmt: skip
    examples = ExampleBatch(
        latent=empty.astype(np.int32), kind=empty.astype(np.int8), group=empty.astype(np.int8), rank=empty.astype(np.int16),
        window=empty.astype(np.int32), max_value=empty.astype(np.float32), max_pos=empty.astype(np.int16),
        offsets=np.zeros(1, np.int64), positions=empty.astype(np.uint16), values=empty.astype(np.float16),
    )  # fmt: skip
    return SourceResults(stats, examples, n_tokens=1)


def bench_store(url: str, model, sources) -> None:
    """A store holding the model and the sources, marked built (synthetic statistics)."""
    from latentpedia.dashboards.pipeline import register_model
    from latentpedia.store.api import Store

    store = Store.open(url)
    try:
        register_model(store, model)
        windows = np.zeros((1, 8), np.int32)
        corpus = store.add_corpus(model.id, "p3", {}, 8, windows, {}, "p3-bench")
        rng = np.random.default_rng(0)
        for s in sources:
            meta = s.meta()
            pk = store.add_source(model.id, s.id, s.kind, s.hook_name, s.layer, s.d_in, s.d_sae, corpus,
                                  meta.get("format", s.kind), meta.get("path"), meta)  # fmt: skip
            store.write_source_results(pk, _synthetic_results(s.d_sae, rng), corpus_id=corpus)
    finally:
        store.close()


def prompt_ids(model, n_tokens: int) -> tuple[str, list[int]]:
    """A text of exactly `n_tokens` tokens (BOS included) from Python's own documentation."""
    from pydoc_data.topics import topics

    from latentpedia.models import encode_text

    text = " ".join(topics[name] for name in sorted(topics))[:20000]
    ids = encode_text(model, text)[:n_tokens]
    text = model.tokenizer.decode(ids[1:])
    for _ in range(5):  # decoding and re-encoding may merge tokens differently: trim to fit
        ids = encode_text(model, text)
        if len(ids) <= n_tokens:
            break
        text = model.tokenizer.decode(ids[1:n_tokens])
    return text, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "latentpedia-p3")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from latentpedia.dashboards.pipeline import resolve_source
    from latentpedia.models import load_model
    from latentpedia.web import create_app
    from latentpedia.engine.encode import encode_sources, top_latents
    from latentpedia.web.ratelimit import RateLimiter

    model = load_model(defaults.MODEL)
    specs = [f"{layer}-mlp" for layer in defaults.NEURON_LAYERS]
    for i, hook in enumerate(defaults.SAE_HOOKS):
        folder = args.workdir / "saes" / hook
        if not (folder / "cfg.json").exists():
            write_random_sae(folder, hook, model.d_model, seed=i)
        specs.append(str(folder))
    sources = [resolve_source(model, spec) for spec in specs]
    db = args.workdir / "p3.db"
    if db.exists():
        db.unlink()
    url = f"sqlite:///{db}"
    bench_store(url, model, sources)
    text, ids = prompt_ids(model, args.tokens)
    n_latents = sum(s.d_sae for s in sources)
    print(f"{len(sources)} sources, {n_latents:,} latents, prompt of {len(ids)} tokens", file=sys.stderr)

    ids_tensor = torch.tensor([ids])
    too_dense = {s.id: torch.rand(s.d_sae) > 0.9 for s in sources}

    def forward() -> None:
        with torch.inference_mode():
            model.hf(input_ids=ids_tensor, use_cache=False)

    def base() -> None:
        with torch.inference_mode():
            model.hf.base_model(input_ids=ids_tensor, use_cache=False)

    def compute() -> None:
        from latentpedia.models import encode_text

        token_ids = encode_text(model, text)
        acts = encode_sources(model, token_ids, sources)
        top_latents(acts, list(range(1, len(token_ids))), 20, too_dense=too_dense)

    app = create_app(url)
    body = {"modelId": model.id, "text": text, "numResults": 20, "densityThreshold": 0.09}
    timings: dict[str, list[float]] = {"forward": [], "base": [], "compute": [], "route": []}
    with TestClient(app) as client:
        app.state.rate_limiter = RateLimiter(per_minute=0)

        def route() -> None:
            response = client.post("/api/search-all", json=body)
            assert response.status_code == 200, response.text
            assert len(response.json()["token_ids"]) == len(ids)

        runs = {"forward": forward, "base": base, "compute": compute, "route": route}
        for fn in runs.values():  # warm-up: loads the model and SAEs in the app, caches densities
            fn()
            fn()
        for _ in range(args.repeats):
            for name, fn in runs.items():
                started = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - started)
    ms = {name: 1000 * statistics.median(values) for name, values in timings.items()}
    print(json.dumps({"tokens": len(ids), "sources": len(sources), "latents": n_latents, "threads": torch.get_num_threads(),
                      **{f"{k}_ms": round(v, 1) for k, v in ms.items()},
                      "compute_ratio": round(ms["compute"] / ms["forward"], 2), "route_ratio": round(ms["route"] / ms["forward"], 2),
                      "route_ratio_vs_base": round(ms["route"] / ms["base"], 2)}))  # fmt: skip
    print(f"| {len(ids)} tokens, {len(sources)} sources ({n_latents:,} latents) | forward {ms['forward']:.0f} ms | base {ms['base']:.0f} ms | "
          f"compute {ms['compute']:.0f} ms ({ms['compute'] / ms['forward']:.2f}×) | route {ms['route']:.0f} ms "
          f"({ms['route'] / ms['forward']:.2f}× forward, {ms['route'] / ms['base']:.2f}× base) |")  # fmt: skip


if __name__ == "__main__":
    main()
