"""P5 interpretation validity: do explanations score above a random other latent's explanation?

    .venv/bin/python bench/p5_interp_validity.py --db sqlite:///PATH/atlas.db [--llm-sample 3]

Works on a COPY of a SQLite atlas (the original is not written). For each scorer shipped it
prints the mean score of the real explanations, the mean baseline (the same scorer, same held-out
examples, a random other latent's explanation), the margin and the fraction of latents whose
explanation beats its baseline:
1. offline explainer + embedding scorer over every latent of every source (timed: what
   `make demo` runs);
2. the same offline explanations on a sample of latents per source, scored by the LLM scorers
   (simulation, detection, fuzzing) with the embedded SmolLM2 served by `llm-serve` over HTTP;
3. the LLM explainer (the same local model) on that sample, scored by every scorer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from latentpedia.interp.llm.client import LLMConfig  # noqa: E402
from latentpedia.interp.pipeline import ExplainRequest, run_explain  # noqa: E402
from latentpedia.store.api import Store  # noqa: E402


def serve_local_llm() -> str:
    import uvicorn

    from latentpedia.interp.llm.local import LocalLM
    from latentpedia.models import load_model
    from latentpedia.interp.llm.serve import create_llm_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_llm_app(LocalLM(load_model("smollm2-135m"))), port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}/v1"


def summarize(store: Store, model: str, method: str, indices: dict[str, list[int]] | None) -> dict[str, dict]:
    """Per scorer: n, mean score, mean baseline, margin, fraction above baseline, errors."""
    rows: dict[str, list[tuple[float, float]]] = {}
    errors: dict[str, int] = {}
    for source in store.list_sources(model):
        wanted = indices.get(source.name, []) if indices is not None else range(source.d_sae)
        for i in wanted:
            for e in store.list_explanations(source.id, i):
                if e.method != method:
                    continue
                for s in e.scores:
                    if s.status != "ok" or s.baseline_score is None:
                        errors[s.scorer] = errors.get(s.scorer, 0) + 1
                        continue
                    rows.setdefault(s.scorer, []).append((s.score, s.baseline_score))
    out = {}
    for scorer, pairs in sorted(rows.items()):
        a = np.array(pairs)
        out[scorer] = {"n": len(a), "mean": round(float(a[:, 0].mean()), 4), "baseline": round(float(a[:, 1].mean()), 4),
                       "margin": round(float((a[:, 0] - a[:, 1]).mean()), 4),
                       "above_baseline": round(float((a[:, 0] > a[:, 1]).mean()), 3), "errors": errors.get(scorer, 0)}
    return out


def sample(store: Store, model: str, per_source: int, seed: int = 0) -> dict[str, list[int]]:
    """`per_source` random live latents of each source."""
    rng = np.random.default_rng(seed)
    out = {}
    for source in store.list_sources(model):
        live = [r["idx"] for r in store.list_latents(source.id, limit=None) if (r["max_act"] or 0) > 0]
        out[source.name] = sorted(int(i) for i in rng.choice(live, size=min(per_source, len(live)), replace=False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="sqlite:///… atlas (copied; never written)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--llm-sample", type=int, default=3, help="latents per source for the LLM parts (0: skip)")
    parser.add_argument("--skip-atlas", action="store_true", help="skip part 1 (only the LLM parts on the sample)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="p5-interp-"))
    shutil.copy(args.db.removeprefix("sqlite:///"), work / "atlas.db")
    store = Store.open(f"sqlite:///{work / 'atlas.db'}")
    results: dict = {"atlas": args.db, "sources": {s.name: s.d_sae for s in store.list_sources(args.model)}}

    if not args.skip_atlas:
        started = time.perf_counter()
        run_explain(store, ExplainRequest(model=args.model, scorers=["embedding"], progress=False), log=print)
        results["offline_seconds"] = round(time.perf_counter() - started, 1)
        results["offline"] = summarize(store, args.model, "offline", None)
        print(json.dumps({"offline_seconds": results["offline_seconds"], "offline": results["offline"]}, indent=1))

    if args.llm_sample > 0:
        picked = sample(store, args.model, args.llm_sample)
        results["llm_sample"] = picked
        config = LLMConfig(base_url=serve_local_llm(), model="smollm2-135m", cache_dir=work / "llm-cache", concurrency=1)
        llm_scorers = ["simulation", "detection", "fuzzing"]
        for name, indices in picked.items():
            run_explain(store, ExplainRequest(model=args.model, sources=[name], indices=indices,
                                              scorers=["embedding", *llm_scorers], llm=config, progress=False), log=print)
        results["offline_llm_scorers"] = summarize(store, args.model, "offline", picked)
        print(json.dumps({"offline_llm_scorers": results["offline_llm_scorers"]}, indent=1))
        started = time.perf_counter()
        for name, indices in picked.items():
            run_explain(store, ExplainRequest(model=args.model, sources=[name], indices=indices, explainer="llm",
                                              scorers=["embedding", *llm_scorers], llm=config, progress=False), log=print)
        results["llm_seconds"] = round(time.perf_counter() - started, 1)
        results["llm_examples"] = summarize(store, args.model, "llm-examples", picked)
        print(json.dumps({"llm_examples": results["llm_examples"]}, indent=1))
    store.close()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
