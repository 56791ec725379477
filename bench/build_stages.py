"""Where a small build's time goes: every stage of `latentpedia build` timed, beside a bare pass.

The case is issue 14's: SmolLM2-135M, one 4,096-latent TopK SAE (k=32, SAELens format on disk,
random unit-norm decoder rows, encoder = decoder transposed) on `blocks.14.hook_resid_post`,
32k tokens of the default corpus, every latent. One process:

  1. the build as `latentpedia build --source SAE --tokens N` runs it (dashboards.pipeline.build
     on a fresh data dir and store), each stage timed by wrapping the function that does it:
     model load, SAE load, corpus read + tokenise, store setup (model, vocabulary, corpus
     windows), the pass, finalisation, the store write, maps, neighbours;
  2. then the bare forward pass over the same windows to the same layer (activations captured,
     nothing else), the figure a build is compared with.

`--cold` empties the data dir first (the one-time GGUF conversion and the corpus cache are then
part of the build); by default a first build warms them and the second is timed (`--warm-runs`).

    .venv/bin/python bench/build_stages.py [--tokens 32000] [--db sqlite|postgresql://...] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HOOK = "blocks.14.hook_resid_post"


def write_topk_sae(folder: Path, *, d_in: int = 576, d_sae: int = 4096, k: int = 32, hook: str = HOOK, seed: int = 0) -> Path:
    """A random TopK SAE in SAELens format (unit-norm decoder rows, so SAEDashboard's decoder-norm
    folding leaves it unchanged)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_sae, d_in, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"W_enc": W_dec.T.contiguous(), "b_enc": torch.zeros(d_sae), "W_dec": W_dec.contiguous(), "b_dec": torch.zeros(d_in)}
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    metadata = {"hook_name": hook, "model_name": "smollm2-135m", "prepend_bos": True, "sae_lens_version": "6.0.0"}
    cfg = {"architecture": "topk", "d_in": d_in, "d_sae": d_sae, "k": k, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "rescale_acts_by_decoder_norm": True, "metadata": metadata}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
    return folder


class StageClock:
    """Wall and CPU seconds per stage (CPU: this process, every thread; steadier than wall time
    on a loaded machine), accumulated by wrapping functions (`clock.wrap(module, name, stage)`)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._depth = 0
        self._undo: list = []

    @contextmanager
    def stage(self, name: str):
        outer = self._depth == 0  # a stage inside another counts once, in the outer one
        self._depth += 1
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._depth -= 1
            if outer:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - start_cpu

    def wrap(self, owner, attr: str, stage: str) -> None:
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            with self.stage(stage):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def timed_build(sae: Path, n_tokens: int, db_url: str) -> tuple[dict[str, float], dict[str, float], dict]:
    """One `latentpedia build --source SAE --tokens N` with wall and CPU seconds per stage."""
    from latentpedia.dashboards import maps, neighbours, pipeline, runner
    from latentpedia.store.api import Store

    clock = StageClock()
    for owner, attr, stage in (
        (pipeline, "load_model", "model load"),
        (pipeline, "resolve_source", "SAE load"),
        (pipeline, "_corpus", "corpus read + tokenise"),
        (pipeline, "register_model", "store: model + vocabulary"),
        (pipeline, "_store_corpus", "store: corpus windows"),
        (runner.BuildRun, "_forward_pass", "pass"),
        (runner.BuildRun, "_results", "finalise"),
        (Store, "write_source_results", "store: results"),
        (maps, "ensure_maps", "maps"),
        (neighbours, "update_neighbours", "neighbours"),
    ):
        clock.wrap(owner, attr, stage)
    request = pipeline.BuildRequest(sources=[str(sae)], n_tokens=n_tokens, progress=False)
    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        store = Store.open(db_url)
        summary = pipeline.build(store, request, log=lambda *_: None)
        store.close()
    finally:
        clock.restore()
    clock.seconds["whole build"] = time.perf_counter() - start
    clock.cpu["whole build"] = time.process_time() - start_cpu
    return clock.seconds, clock.cpu, summary


def bare_pass(n_tokens: int, batch_size: int = 8) -> tuple[float, float]:
    """The model to layer 14 over the build's windows, activations captured, nothing else."""
    import torch

    from latentpedia.corpus import prepare_corpus
    from latentpedia.models.hooks import run_with_cache
    from latentpedia.models.loader import load_model

    model = load_model()
    windows = prepare_corpus(model, n_tokens=n_tokens).windows
    start, start_cpu = time.perf_counter(), time.process_time()
    for lo in range(0, len(windows), batch_size):
        run_with_cache(model, torch.from_numpy(windows[lo : lo + batch_size]).long(), [HOOK], stop_early=True)
    return time.perf_counter() - start, time.process_time() - start_cpu


def fresh_db(db: str, root: Path) -> str:
    """An empty store: a new SQLite file, or the PostgreSQL database of `db` dropped and created
    again (its own database, never one other work uses: "test" and "postgres" are refused)."""
    if db == "sqlite":
        path = root / "atlas.db"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    from sqlalchemy import create_engine, make_url, text

    url = make_url(db)
    if url.database in (None, "test", "postgres"):
        raise SystemExit(f"--db must name a database of its own (it is dropped), not {url.database!r}")
    admin = create_engine(url.set(drivername="postgresql+psycopg", database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}"'))
        conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32_000)
    parser.add_argument("--latents", type=int, default=4096)
    parser.add_argument("--db", default="sqlite", help="sqlite, or a PostgreSQL URL of a database of its own (dropped and created for each build)")
    parser.add_argument("--home", type=Path, help="data dir (default: a temporary one)")
    parser.add_argument("--cold", action="store_true", help="time the first build of an empty data dir")
    parser.add_argument("--warm-runs", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lp-stages-"))
    home = args.home or root / "home"
    if args.cold:
        shutil.rmtree(home, ignore_errors=True)
    os.environ["LATENTPEDIA_HOME"] = str(home)
    sae = write_topk_sae(root / "sae", d_sae=args.latents)
    runs = [] if args.cold else [None] * args.warm_runs
    stages, cpu, summary = timed_build(sae, args.tokens, fresh_db(args.db, root))
    for _ in runs:  # the first build warmed the caches: time a build of a fresh store
        stages, cpu, summary = timed_build(sae, args.tokens, fresh_db(args.db, root))
    bare, bare_cpu = bare_pass(args.tokens)
    print(f"{args.tokens:,} tokens, {args.latents:,} latents, {args.db}, {'cold' if args.cold else 'warm'} data dir; load {os.getloadavg()[0]:.1f}")
    print("| stage | wall s | ÷ bare pass | CPU s | ÷ bare pass CPU |\n|---|---|---|---|---|")
    for name, seconds, cpu_s in [*((n, s, cpu[n]) for n, s in stages.items()), ("bare pass (same windows, to layer 14)", bare, bare_cpu)]:
        print(f"| {name} | {seconds:.2f} | {seconds / bare:.2f} | {cpu_s:.2f} | {cpu_s / bare_cpu:.2f} |")
    if args.json:
        print(json.dumps({"tokens": args.tokens, "latents": args.latents, "db": args.db, "stages": stages, "cpu": cpu, "bare": bare, "bare_cpu": bare_cpu}))
    shutil.rmtree(root, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
