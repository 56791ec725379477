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
     rotary_base set to SmolLM2's rope_theta, 100,000: TransformerLens's default of 10,000 silently
     gives other activations), the same SAE through sae-lens, the same windows as tokens, every
     latent, position 0 (the BOS) ignored like ours; with its defaults (the model rerun for each
     batch of 256 features) and with its activation cache (`cache_dir`);
  4. prints the walls and the ratios.

    make saedashboard-oracle
    .venv/bin/python bench/saedashboard.py [--tokens 32000] [--latents 4096] [--skip-defaults]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORACLE_PYTHON = Path(__file__).resolve().parent.parent / ".venv-saedashboard" / "bin" / "python"
HOOK = "blocks.14.hook_resid_post"


# ---------------------------------------------------------------- SAEDashboard side (its own venv)


def run_saedashboard(model_dir: Path, sae_dir: Path, windows: Path, cache_dir: Path | None) -> dict:
    """Load SmolLM2 and the SAE the way SAEDashboard needs and run it on every latent."""
    started = time.perf_counter()
    import numpy as np
    import torch
    import transformer_lens.loading_from_pretrained as loading
    from sae_dashboard.sae_vis_data import SaeVisConfig
    from sae_dashboard.sae_vis_runner import SaeVisRunner
    from sae_lens import SAE, HookedSAETransformer
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    rope_theta = AutoConfig.from_pretrained(model_dir).rope_theta
    original = loading.get_pretrained_model_config

    def with_rope_theta(*args, **kwargs):
        cfg = original(*args, **kwargs)
        cfg.rotary_base = rope_theta  # TransformerLens's Llama config leaves it at 10,000
        return cfg

    loading.get_pretrained_model_config = with_rope_theta
    official = loading.get_official_model_name  # SmolLM2 is not in its list: a local folder is its own name
    loading.get_official_model_name = lambda name: name if Path(name).exists() else official(name)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # the copy was saved by our transformers 5, whose tokenizer class 4.x does not know: read its tokenizer.json
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), eos_token="<|endoftext|>")
    model = HookedSAETransformer.from_pretrained_no_processing(str(model_dir), hf_model=hf, tokenizer=tokenizer, device="cpu", dtype=torch.float32)
    sae = SAE.load_from_disk(str(sae_dir), device="cpu")
    tokens = torch.from_numpy(np.load(windows)).long()
    loaded = time.perf_counter()
    config = SaeVisConfig(hook_point=HOOK, features=list(range(sae.cfg.d_sae)), device="cpu", dtype="float32",
                          ignore_positions=[0], cache_dir=cache_dir, verbose=False)  # fmt: skip
    data = SaeVisRunner(config).run(encoder=sae, model=model, tokens=tokens)
    done = time.perf_counter()
    return {"load_s": loaded - started, "run_s": done - loaded, "features": len(data.feature_data_dict), "torch": torch.__version__}


# ---------------------------------------------------------------- driver (our venv)


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"{cmd[:3]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, out.stdout


def ours(sae: Path, n_tokens: int, home: Path, root: Path, *, warm: bool) -> float:
    """Wall seconds of `latentpedia build` in a fresh process on a fresh store."""
    if not warm:
        shutil.rmtree(home / "corpora", ignore_errors=True)
    db = root / f"ours-{'warm' if warm else 'cold'}.db"
    db.unlink(missing_ok=True)
    shutil.rmtree(home / "work", ignore_errors=True)
    env = {**os.environ, "LATENTPEDIA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "latentpedia"), "build", "--source", str(sae), "--tokens", str(n_tokens),
           "--db", f"sqlite:///{db}", "--no-progress"]  # fmt: skip
    return timed(cmd, env)[0]


def theirs(model_dir: Path, sae: Path, windows: Path, root: Path, *, cache: bool) -> tuple[float, dict]:
    cache_dir = root / "sd-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cmd = [str(ORACLE_PYTHON), __file__, "--side", "saedashboard", "--model-dir", str(model_dir), "--sae", str(sae), "--windows", str(windows)]
    cmd += ["--cache-dir", str(cache_dir)] if cache else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    wall, stdout = timed(cmd, env)
    return wall, json.loads(stdout.strip().splitlines()[-1])


def prepare(root: Path, home: Path, n_tokens: int, d_sae: int) -> tuple[Path, Path, Path]:
    """The SAE folder, the windows file and the converted model folder."""
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
    return sae, windows, Path(model.spec["cache"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32_000)
    parser.add_argument("--latents", type=int, default=4096)
    parser.add_argument("--home", type=Path, help="data dir (default: a temporary one; the model is converted there once)")
    parser.add_argument("--skip-defaults", action="store_true", help="only SAEDashboard with its activation cache")
    parser.add_argument("--side", choices=["driver", "saedashboard"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sae", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "saedashboard":
        print(json.dumps(run_saedashboard(args.model_dir, args.sae, args.windows, args.cache_dir)))
        return
    if not ORACLE_PYTHON.exists():
        raise SystemExit("no .venv-saedashboard: run `make saedashboard-oracle` first")
    root = Path(tempfile.mkdtemp(prefix="lp-saedashboard-"))
    home = args.home or root / "home"
    sae, windows, model_dir = prepare(root, home, args.tokens, args.latents)
    rows = {"ours, corpus caches empty": ours(sae, args.tokens, home, root, warm=False),
            "ours, corpus cached": ours(sae, args.tokens, home, root, warm=True)}  # fmt: skip
    wall, info = theirs(model_dir, sae, windows, root, cache=True)
    rows["SAEDashboard, activation cache"] = wall
    if not args.skip_defaults:
        rows["SAEDashboard, defaults"] = theirs(model_dir, sae, windows, root, cache=False)[0]
    print(f"{args.tokens:,} tokens, {args.latents:,} latents, SAEDashboard on torch {info['torch']}; load {os.getloadavg()[0]:.1f}")
    base = rows["ours, corpus caches empty"]
    print("| run | wall s | ÷ ours (caches empty) |\n|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.1f} | {seconds / base:.2f} |")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
