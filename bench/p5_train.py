"""P5: SAE training throughput (tokens/s) on cached activations, ours and SAELens' side by side.

Both train a TopK SAE of the same width and k on the same batches (float32, CPU, Adam), timing
only optimizer steps after a short warm-up:
  * ours:     latentpedia.train's TopK step (sparse decode, AuxK, unit-norm decoder, clipping)
  * sae-lens: `TopKTrainingSAE.training_forward_pass` + backward + Adam, in the oracle venv
              (sae-lens pins its own dependencies, so it runs as a subprocess there)

    .venv/bin/python bench/p5_train.py --activations DIR --hook blocks.14.hook_resid_post \\
        [--width 4608] [--k 32] [--batch-size 1024] [--steps 20] [--oracle .venv-oracle]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

WARMUP = 3


def batches(folder: str, hook: str, batch_size: int, steps: int) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    rows, need = [], batch_size * (steps + WARMUP)
    for shard in sorted(Path(folder).glob("shard-*.safetensors")):
        rows.append(load_file(str(shard))[hook].float())
        if sum(len(r) for r in rows) >= need:
            break
    x = torch.cat(rows)[:need]
    x = x[x.norm(dim=-1) <= 10 * x.norm(dim=-1).median()]
    x = x * (x.shape[-1] ** 0.5 / x.norm(dim=-1).mean())
    return list(x.split(batch_size))


def timed(step, data: list[torch.Tensor]) -> float:
    for x in data[:WARMUP]:
        step(x)
    start = time.perf_counter()
    tokens = 0
    for x in data[WARMUP:]:
        step(x)
        tokens += len(x)
    return tokens / (time.perf_counter() - start)


def ours(args) -> float:
    from latentpedia.train.saes import SAESettings, make_sae

    sae = make_sae(SAESettings("topk", args.d_in, args.width, k=args.k), torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    dead = torch.zeros(args.width, dtype=torch.bool)

    def step(x):
        out = sae(x, dead)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.remove_parallel_gradient()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        sae.normalize_decoder()

    return timed(step, batches(args.activations, args.hook, args.batch_size, args.steps))


def saelens(args) -> float:
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=args.d_in, d_sae=args.width, k=args.k, device="cpu"))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    dead = torch.zeros(args.width, dtype=torch.bool)

    def step(x):
        out = sae.training_forward_pass(TrainStepInput(x, {}, dead, 1000, False))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()

    return timed(step, batches(args.activations, args.hook, args.batch_size, args.steps))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--activations", required=True)
    parser.add_argument("--hook", required=True)
    parser.add_argument("--width", type=int, default=4608)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--oracle", default=".venv-oracle")
    parser.add_argument("--only", choices=["ours", "saelens"])
    args = parser.parse_args()
    args.d_in = int(batches(args.activations, args.hook, 1, 0)[0].shape[-1])
    if args.only:
        print(json.dumps({args.only: (ours if args.only == "ours" else saelens)(args)}))
        return
    result = {"ours": ours(args)}
    python = Path(args.oracle) / "bin" / "python"
    if python.exists():
        cmd = [str(python), __file__, *sys.argv[1:], "--only", "saelens"]
        out = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(Path(__file__).parents[1])})
        result.update(json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"saelens_error": out.stderr[-500:]})
    print(json.dumps({k: round(v) if isinstance(v, float) else v for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
