"""Our whole build against SAEDashboard's, side by side: same SmolLM2, same SAE, same tokens.

`make saedashboard-oracle` makes the bench-only venv `.venv-saedashboard` (sae-dashboard and its
deps; pip brings torch with CUDA wheels, ~6.5 GB: never part of `make test`). This script, run
from our venv, then:

  1. writes a random 4,096-latent TopK SAE (k=32) in SAELens format at blocks.14.hook_resid_post
     (bench/build_stages.py) and the build's token windows (the default corpus, BOS first);
  2. times `latentpedia build --source SAE --tokens N` in a subprocess (its wall time: imports,
     model load, corpus, pass, finalisation, store writes, maps, neighbours), on a data dir whose
     converted model is cached, once with the corpus caches empty and once warm;
  3. times SAEDashboard in a subprocess of the other venv (`--side saedashboard`): SmolLM2 from the
     same converted float32 checkpoint through TransformerLens (past its model-name check, with
     rotary_base set to SmolLM2's rope_theta, 100,000, read from the copy's config.json: TransformerLens's
     default and transformers 4's reading of a transformers-5 config both give 10,000, which silently
     gives other activations), the same SAE through sae-lens, the same windows as tokens, every
     latent, position 0 (the BOS) ignored like ours; with its defaults (the model rerun for each
     batch of 256 features) and with its activation cache (`cache_dir`);
  4. checks that both sides saw the same numbers (the hook activations of the first windows, every
     latent's largest activation) and prints wall and CPU seconds, the ratios, and the stage table of
     our build beside the bare pass (bench/build_stages.py, same data dir).

    make saedashboard-oracle
    .venv/bin/python bench/saedashboard.py [--tokens 32000] [--latents 4096] [--skip-defaults]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORACLE_PYTHON = Path(__file__).resolve().parent.parent / ".venv-saedashboard" / "bin" / "python"
HOOK = "blocks.14.hook_resid_post"
PROBE_WINDOWS = 4  # windows whose hook activations both sides compare


# ---------------------------------------------------------------- SAEDashboard side (its own venv)


def run_saedashboard(model_dir: Path, sae_dir: Path, windows: Path, cache_dir: Path | None, probe: Path | None = None) -> dict:
    """Load SmolLM2 and the SAE the way SAEDashboard needs and run it on every latent."""
    started = time.perf_counter()
    import numpy as np
    import torch
    import transformer_lens.loading_from_pretrained as loading
    from sae_dashboard.sae_vis_data import SaeVisConfig
    from sae_dashboard.sae_vis_runner import SaeVisRunner
    from sae_lens import SAE, HookedSAETransformer
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    # The copy was saved by our transformers 5, which writes rope_parameters.rope_theta; transformers 4
    # reads only a top-level rope_theta and silently falls back to 10,000: read the file itself.
    saved = json.loads((model_dir / "config.json").read_text())
    rope_theta = saved.get("rope_theta") or saved["rope_parameters"]["rope_theta"]
    hf_config = AutoConfig.from_pretrained(model_dir, rope_theta=rope_theta)
    original = loading.get_pretrained_model_config

    def with_rope_theta(*args, **kwargs):
        cfg = original(*args, **kwargs)
        cfg.rotary_base = rope_theta  # TransformerLens's Llama config leaves it at 10,000
        return cfg

    loading.get_pretrained_model_config = with_rope_theta
    official = loading.get_official_model_name  # SmolLM2 is not in its list: a local folder is its own name
    loading.get_official_model_name = lambda name: name if Path(name).exists() else official(name)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, config=hf_config, dtype=torch.float32)
    # the copy was saved by our transformers 5, whose tokenizer class 4.x does not know: read its tokenizer.json
    # (name_or_path and add_bos_token: TransformerLens's get_tokenizer_with_bos reads both from the
    # tokenizer's init kwargs, and would otherwise reload it through AutoTokenizer, which fails)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>", name_or_path=str(model_dir), add_bos_token=True)  # fmt: skip
    model = HookedSAETransformer.from_pretrained_no_processing(str(model_dir), hf_model=hf, tokenizer=tokenizer, device="cpu", dtype=torch.float32)
    sae = SAE.load_from_disk(str(sae_dir), device="cpu")
    tokens = torch.from_numpy(np.load(windows)).long()
    loaded = time.perf_counter()
    config = SaeVisConfig(hook_point=HOOK, features=list(range(sae.cfg.d_sae)), device="cpu", dtype="float32",
                          ignore_positions=[0], cache_dir=cache_dir, verbose=False)  # fmt: skip
    data = SaeVisRunner(config).run(encoder=sae, model=model, tokens=tokens)
    done = time.perf_counter()
    if probe is not None:  # the hook activations it sees on the first windows, for the driver to compare
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens[:PROBE_WINDOWS], names_filter=HOOK)
        np.save(probe, cache[HOOK].float().numpy())
    maxima = [_max_act(data.feature_data_dict[i]) for i in range(sae.cfg.d_sae)]
    return {"load_s": loaded - started, "run_s": done - loaded, "features": len(data.feature_data_dict),
            "torch": torch.__version__, "max_act": maxima}  # fmt: skip


def _max_act(feature) -> float:
    """The largest activation SAEDashboard shows for a feature (its top sequence; 0 if none)."""
    acts = [a for group in feature.sequence_data.seq_group_data for seq in group.seq_data for a in seq.feat_acts]
    return max(acts, default=0.0)


# ---------------------------------------------------------------- driver (our venv)


CPU: dict[str, float] = {}  # CPU seconds (user + system, every thread) of each timed command, by label


def timed(cmd: list[str], env: dict, label: str | None = None) -> tuple[float, str]:
    """Wall seconds and stdout of `cmd`; its CPU seconds go to CPU[label] (steadier than wall
    time on a shared machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{cmd[:3]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    if label:
        CPU[label] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, out.stdout


def ours(sae: Path, n_tokens: int, home: Path, root: Path, *, warm: bool) -> tuple[float, Path]:
    """Wall seconds of `latentpedia build` in a fresh process on a fresh store, and the store."""
    if not warm:
        shutil.rmtree(home / "corpora", ignore_errors=True)
    db = root / f"ours-{'warm' if warm else 'cold'}.db"
    db.unlink(missing_ok=True)
    shutil.rmtree(home / "work", ignore_errors=True)
    env = {**os.environ, "LATENTPEDIA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "latentpedia"), "build", "--source", str(sae), "--tokens", str(n_tokens),
           "--db", f"sqlite:///{db}", "--no-progress"]  # fmt: skip
    return timed(cmd, env, f"ours, {'corpus cached' if warm else 'corpus caches empty'}")[0], db


def theirs(model_dir: Path, sae: Path, windows: Path, root: Path, *, cache: bool) -> tuple[float, dict]:
    cache_dir = root / "sd-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cmd = [str(ORACLE_PYTHON), __file__, "--side", "saedashboard", "--model-dir", str(model_dir), "--sae", str(sae),
           "--windows", str(windows), "--probe", str(root / "probe.npy")]  # fmt: skip
    cmd += ["--cache-dir", str(cache_dir)] if cache else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    wall, stdout = timed(cmd, env, f"SAEDashboard, {'activation cache' if cache else 'defaults'}")
    return wall, json.loads(stdout.strip().splitlines()[-1])


def stage_table(n_tokens: int, n_latents: int, home: Path) -> dict:
    """bench/build_stages.py on the warm data dir: our build stage by stage and the bare pass."""
    cmd = [sys.executable, str(Path(__file__).with_name("build_stages.py")), "--tokens", str(n_tokens), "--latents", str(n_latents),
           "--home", str(home), "--warm-runs", "0", "--json"]  # fmt: skip
    return json.loads(timed(cmd, dict(os.environ))[1].strip().splitlines()[-1])


def prepare(root: Path, home: Path, n_tokens: int, d_sae: int):
    """The SAE folder, the windows file, the converted model folder and our loaded model."""
    os.environ["LATENTPEDIA_HOME"] = str(home)
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_stages import write_topk_sae

    from latentpedia.corpus import prepare_corpus
    from latentpedia.models.loader import load_model

    model = load_model()  # converts the GGUF once into the data dir: both sides read that copy
    sae = write_topk_sae(root / "sae", d_sae=d_sae, hook=HOOK)
    windows = root / "windows.npy"
    np.save(windows, prepare_corpus(model, n_tokens=n_tokens).windows)
    return sae, windows, Path(model.spec["cache"]), model


def same_activations(model, windows: Path, probe: Path, db: Path, their_max: list[float]) -> list[str]:
    """Lines saying whether both sides saw the same numbers: the hook activations of the first
    windows (the rotary_base trap changes them silently) and every latent's largest activation."""
    import sqlite3

    import numpy as np
    import torch

    from latentpedia.models.hooks import run_with_cache

    tokens = torch.from_numpy(np.load(windows)[:PROBE_WINDOWS]).long()
    with torch.inference_mode():
        mine = run_with_cache(model, tokens, [HOOK])[HOOK].float().numpy()
    theirs_acts = np.load(probe)
    body = (slice(None), slice(1, None))  # position 0 (the BOS sink) is left out by both
    rel = np.abs(mine[body] - theirs_acts[body]).max() / np.abs(mine[body]).max()
    with sqlite3.connect(db) as conn:
        ours_max = dict(conn.execute("SELECT idx, max_act FROM latents"))
    ours_arr = np.array([ours_max[i] or 0.0 for i in range(len(their_max))])
    theirs_arr = np.array(their_max)
    close = np.isclose(ours_arr, theirs_arr, rtol=2e-3, atol=2e-3)  # theirs are rounded to 4 decimals
    lower = ~close & (ours_arr < theirs_arr)  # ours leaves out the second-sink tokens (outlier_factor)
    higher = ~close & ~lower  # SAEDashboard picks top tokens only 5 tokens away from a window's ends (its buffer)
    shown = ", ".join(f"#{i} {ours_arr[i]:.4f}/{theirs_arr[i]:.4f}" for i in range(min(4, len(ours_arr))))
    return [f"hook {HOOK} on {PROBE_WINDOWS} windows: max |ours - theirs| / max |ours| = {rel:.2e}",
            f"largest activation per latent (ours/theirs: {shown}): {close.sum()} of {len(close)} equal, {lower.sum()} lower in ours "
            f"(tokens over 10x the median norm left out), {higher.sum()} higher in ours "
            "(SAEDashboard's top tokens are at least 5 tokens from a window's ends: its sequence buffer)"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32_000)
    parser.add_argument("--latents", type=int, default=4096)
    parser.add_argument("--home", type=Path, help="data dir (default: a temporary one; the model is converted there once)")
    parser.add_argument("--skip-defaults", action="store_true", help="only SAEDashboard with its activation cache")
    parser.add_argument("--skip-stages", action="store_true", help="no stage table (bench/build_stages.py) of our build")
    parser.add_argument("--side", choices=["driver", "saedashboard"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sae", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "saedashboard":
        print(json.dumps(run_saedashboard(args.model_dir, args.sae, args.windows, args.cache_dir, args.probe)))
        return
    if not ORACLE_PYTHON.exists():
        raise SystemExit("no .venv-saedashboard: run `make saedashboard-oracle` first")
    root = Path(tempfile.mkdtemp(prefix="lp-saedashboard-"))
    home = args.home or root / "home"
    sae, windows, model_dir, model = prepare(root, home, args.tokens, args.latents)
    loads = [os.getloadavg()[0]]
    cold, _ = ours(sae, args.tokens, home, root, warm=False)
    warm, db = ours(sae, args.tokens, home, root, warm=True)
    rows = {"ours, corpus caches empty": cold, "ours, corpus cached": warm}
    stages = None if args.skip_stages else stage_table(args.tokens, args.latents, home)
    loads.append(os.getloadavg()[0])
    wall, info = theirs(model_dir, sae, windows, root, cache=True)
    rows["SAEDashboard, activation cache"] = wall
    if not args.skip_defaults:
        rows["SAEDashboard, defaults"] = theirs(model_dir, sae, windows, root, cache=False)[0]
    loads.append(os.getloadavg()[0])
    print(f"{args.tokens:,} tokens, {args.latents:,} latents, SAEDashboard on torch {info['torch']}; "
          f"1-min load average {', '.join(f'{x:.1f}' for x in loads)} (start, after ours, end)")  # fmt: skip
    for line in same_activations(model, windows, root / "probe.npy", db, info["max_act"]):
        print(line)
    print("| run | wall s | ÷ ours (corpus cached) | ours ÷ run | CPU s | ÷ ours CPU |\n|---|---|---|---|---|---|")
    base_cpu = CPU["ours, corpus cached"]
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.1f} | {seconds / warm:.2f} | {warm / seconds:.3f} | {CPU[name]:.1f} | {CPU[name] / base_cpu:.2f} |")
    if stages:
        print_stages(stages)
    shutil.rmtree(root, ignore_errors=True)


def print_stages(stages: dict) -> None:
    bare, bare_cpu = stages["bare"], stages.get("bare_cpu")
    print("\nour build stage by stage (bench/build_stages.py, same data dir, warm), beside the bare pass to layer 14:")
    print("| stage | wall s | ÷ bare pass | CPU s | ÷ bare pass CPU |\n|---|---|---|---|---|")
    for name, seconds in [*stages["stages"].items(), ("bare pass (same windows, to layer 14)", bare)]:
        cpu = stages.get("cpu", {}).get(name, bare_cpu if name.startswith("bare") else None)
        cpu_cols = f"{cpu:.2f} | {cpu / bare_cpu:.2f}" if cpu is not None and bare_cpu else "- | -"
        print(f"| {name} | {seconds:.2f} | {seconds / bare:.2f} | {cpu_cols} |")


if __name__ == "__main__":
    main()
