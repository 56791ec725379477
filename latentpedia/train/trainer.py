"""Train several SAEs (hooks x widths) from one pass over cached activations.

    results = Trainer(TrainConfig(activations=dir, out_dir=out, hooks=[...], widths=[...])).run()

Every step reads one shuffled batch (all hooks) and trains each SAE on its hook's slice. Inputs
are scaled so E||x|| = sqrt(d_in); tokens whose norm exceeds `outlier_factor` x the median
(attention sinks: SmolLM2 gives some first tokens ~150x the median norm) are left out (one factor per hook, estimated on the first batches); b_dec
starts at the geometric median (or mean); decoder rows keep unit norm; the learning rate warms
up, stays, then decays linearly to zero. Dead latents (no activation for `dead_window` tokens)
feed the AuxK loss (TopK/BatchTopK) or are resampled towards badly reconstructed inputs
(ReLU/JumpReLU). A checkpoint is written atomically every `checkpoint_seconds`; a run started
again with the same config resumes from it and ends with the same weights. The SAEs are written
only at the end, each atomically (see export.py); a NaN loss stops the run with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentpedia.errors import InvalidInputError, LatentpediaError
from latentpedia.train.activations import ActivationSource
from latentpedia.train.checkpoint import load_training_state, save_training_state
from latentpedia.train.config import TrainConfig
from latentpedia.train.export import sae_name, write_saelens
from latentpedia.train.progress import TrainProgress
from latentpedia.train.saes import TrainableSAE, make_sae
from latentpedia.train.target_l0 import L0Controller

INIT_TOKENS = 8192  # tokens used to estimate the input scale and b_dec
CALIBRATION_TOKENS = 16_384  # tokens used to fit inference thresholds (BatchTopK)


class TrainingDivergedError(LatentpediaError):
    """The loss became NaN or infinite."""


@dataclass
class SAERun:
    """One SAE being trained, with its optimizer and bookkeeping."""

    name: str
    hook: str
    sae: TrainableSAE
    optimizer: torch.optim.Optimizer
    base_lr: float
    scale: float = 1.0
    max_norm: float = math.inf  # raw-activation norm above which a token is an outlier (dropped)
    tokens_since_fired: torch.Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    l0_controller: L0Controller | None = None  # relu / jumprelu steered to a target L0

    def state(self) -> dict[str, Any]:
        return {"sae": self.sae.state_dict(), "opt": self.optimizer.state_dict(), "scale": self.scale, "max_norm": self.max_norm,
                "tokens_since_fired": self.tokens_since_fired, "metrics": self.metrics,
                "l0_controller": self.l0_controller.state() if self.l0_controller else None}

    def load(self, state: dict[str, Any]) -> None:
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["opt"])
        self.scale, self.metrics, self.max_norm = state["scale"], state["metrics"], state["max_norm"]
        self.tokens_since_fired = state["tokens_since_fired"]
        if state.get("l0_controller"):
            self.l0_controller = L0Controller.from_state(state["l0_controller"])
            self.sae.settings.l1_coefficient = self.l0_controller.coefficient


def geometric_median(x: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of distances to the rows of x."""
    median = x.mean(0)
    for _ in range(iterations):
        weights = 1 / (x - median).norm(dim=-1).clamp_min(1e-6)
        median = (weights[:, None] * x).sum(0) / weights.sum()
    return median


def check_memory(config: TrainConfig, widths: dict[str, int]) -> None:
    """InvalidInputError when the SAEs (weights, gradients, Adam state, batch) cannot fit."""
    need = sum(widths[h] * w * 4 * 6 + config.batch_size * w * 4 * 8 for h, w in config.sae_pairs)
    available = _available_memory()
    if available and need > 0.8 * available:
        raise InvalidInputError(
            f"training {len(config.sae_pairs)} SAE(s) of widths {sorted({w for _, w in config.sae_pairs})} needs about "
            f"{need / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB is available; use smaller --width or --batch-size"
        )


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Trainer:
    """Trains every (hook, width) SAE of `config`; `run()` returns one summary per SAE."""

    def __init__(self, config: TrainConfig, *, log=print):
        self.config, self.log = config, log
        self.source = ActivationSource(config.activations, config.stream_hooks, buffer_tokens=config.buffer_tokens, seed=config.seed)
        check_memory(config, self.source.widths)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.runs = [self._new_run(hook, width) for hook, width in config.sae_pairs]
        self.step = 0
        key = hashlib.sha256(json.dumps(config.identity(), sort_keys=True).encode()).hexdigest()[:16]
        self.checkpoint_path = Path(config.out_dir) / ".checkpoints" / f"train-{key}.pt"

    def _new_run(self, hook: str, width: int) -> SAERun:
        d_in = self.source.widths[hook]
        sae = make_sae(self.config.settings(d_in, width), self.generator)
        lr = self.config.lr_for(width)
        optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999))
        name = sae_name(hook, sae.name, width) + (f"-s{self.config.seed}" if self.config.seed else "")  # seeds side by side
        target = self.config.steered_l0
        controller = L0Controller(target, sae.settings.l1_coefficient) if target else None
        return SAERun(name, hook, sae, optimizer, lr, tokens_since_fired=torch.zeros(width, dtype=torch.long), l0_controller=controller)

    # ------------------------------------------------------------------ setup and checkpoints

    @torch.no_grad()
    def _initialise(self) -> None:
        """Input scale per hook and b_dec from the first INIT_TOKENS tokens of the stream."""
        stream = self.source.batches(self.config.batch_size)
        batches = [next(stream) for _ in range(max(1, INIT_TOKENS // self.config.batch_size))]
        for run in self.runs:
            x = torch.cat([b[run.hook] for b in batches])
            if self.config.outlier_factor:
                run.max_norm = float(self.config.outlier_factor * x.norm(dim=-1).median())
                x = x[x.norm(dim=-1) <= run.max_norm]
            run.scale = float(math.sqrt(x.shape[-1]) / x.norm(dim=-1).mean().clamp_min(1e-8))
            x = x * run.scale
            center = geometric_median(x) if self.config.b_dec_init == "geometric_median" else x.mean(0)
            run.sae.b_dec.copy_(center)
            if run.l0_controller is not None and hasattr(run.sae, "start_at_l0"):  # JumpReLU: thresholds near the target L0
                run.sae.start_at_l0(x, run.l0_controller.target)

    def _save_checkpoint(self) -> None:
        runs = {run.name: run.state() for run in self.runs}
        save_training_state(self.checkpoint_path, self.config.identity(), self.step, self.generator, runs)

    def _resume(self) -> bool:
        state = load_training_state(self.checkpoint_path, self.config.identity())
        if state is None:
            return False
        self.step = state["step"]
        self.generator.set_state(state["rng"])
        for run in self.runs:
            run.load(state["runs"][run.name])
        self.log(f"resuming from step {self.step:,} of {self.config.n_steps:,} ({self.checkpoint_path})")
        return True

    # ------------------------------------------------------------------ training

    def run(self, *, stop_after: int | None = None) -> list[dict[str, Any]]:
        """Train (resuming if a checkpoint matches); export the SAEs; summaries per SAE.

        `stop_after` steps: checkpoint and return [] early (for tests of resumption)."""
        if not self._resume():
            self._initialise()
        started, last_save = time.perf_counter(), time.perf_counter()
        first_step = self.step
        stream = self.source.batches(self.config.batch_size, skip=self.step)
        names = [run.name for run in self.runs]
        with TrainProgress(names, self.config.n_steps, batch_size=self.config.batch_size, enabled=self.config.progress) as bar:
            bar.done = 0
            while self.step < self.config.n_steps:
                if stop_after is not None and self.step >= stop_after:
                    self._save_checkpoint()
                    return []
                batch = next(stream)
                for run in self.runs:
                    x = batch[run.hook]
                    self._train_step(run, x[x.norm(dim=-1) <= run.max_norm] * run.scale)
                self.step += 1
                bar.step_done()
                for run in self.runs:
                    bar.update(run.name, self.step, run.metrics)
                if time.perf_counter() - last_save > self.config.checkpoint_seconds:
                    self._save_checkpoint()
                    last_save = time.perf_counter()
        seconds = time.perf_counter() - started
        rate = (self.step - first_step) * self.config.batch_size / max(seconds, 1e-9)
        return self._export(seconds, rate)

    def _train_step(self, run: SAERun, x: torch.Tensor) -> None:
        sae, config = run.sae, self.config
        for group in run.optimizer.param_groups:
            group["lr"] = run.base_lr * config.lr_factor(self.step)
        dead = run.tokens_since_fired >= config.dead_window
        out = sae(x, dead)
        if not torch.isfinite(out.loss):
            raise TrainingDivergedError(
                f"{run.name}: the loss became {float(out.loss.detach())} at step {self.step:,}; no SAE was written. "
                "Try a lower --lr, a smaller --l1, or check the cached activations for inf/NaN values"
            )
        run.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.remove_parallel_gradient()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        run.optimizer.step()
        sae.normalize_decoder()
        acts = out.acts.detach()
        sae.after_step(acts)
        self._track(run, x, out, acts)
        if run.l0_controller is not None:  # steer the sparsity coefficient towards the target L0
            batch_l0 = float((acts > 0).sum(-1).float().mean())
            sae.settings.l1_coefficient = run.l0_controller.update(batch_l0, adapting=self.step < (1 - config.decay_fraction) * config.n_steps)
        if sae.revives_by_resampling and (self.step + 1) % config.resample_every == 0 and config.lr_factor(self.step) >= 1:
            self._resample(run, x, out.recon.detach())

    @torch.no_grad()
    def _track(self, run: SAERun, x: torch.Tensor, out, acts: torch.Tensor) -> None:
        fired = (acts > 0).any(0)
        run.tokens_since_fired += x.shape[0]
        run.tokens_since_fired[fired] = 0
        err = (out.recon.detach() - x).pow(2).sum()
        total = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        values = {"loss": float(out.loss.detach()), "l0": float((acts > 0).sum(-1).float().mean()), "ev": float(1 - err / total),
                  "dead": float((run.tokens_since_fired >= self.config.dead_window).float().mean()), **out.parts}
        rate = 0.0 if not run.metrics else 0.9
        run.metrics = {k: rate * run.metrics.get(k, v) + (1 - rate) * v for k, v in values.items()}

    @torch.no_grad()
    def _resample(self, run: SAERun, x: torch.Tensor, recon: torch.Tensor) -> None:
        """Re-aim dead latents at inputs the SAE reconstructs worst (Anthropic, 2023)."""
        dead = (run.tokens_since_fired >= self.config.dead_window).nonzero().flatten()
        if len(dead) == 0:
            return
        sae = run.sae
        loss = (x - recon).pow(2).sum(-1)
        picks = torch.multinomial(loss + 1e-12, len(dead), replacement=True, generator=self.generator)
        directions = x[picks] - sae.b_dec
        directions /= directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        alive = run.tokens_since_fired < self.config.dead_window
        enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
        sae.W_dec[dead] = directions
        sae.W_enc[:, dead] = directions.T * enc_norm * 0.2
        sae.b_enc[dead] = 0.0
        if hasattr(sae, "log_threshold"):
            sae.log_threshold[dead] = math.log(sae.settings.init_threshold)
        _reset_adam(run.optimizer, sae, dead)
        run.tokens_since_fired[dead] = 0

    @torch.no_grad()
    def _calibrate(self) -> None:
        """Architectures with an inference threshold (BatchTopK) fit it on CALIBRATION_TOKENS
        tokens of the stream once training is over."""
        runs = [run for run in self.runs if hasattr(run.sae, "calibrate")]
        if not runs:
            return
        stream = self.source.batches(self.config.batch_size)
        batches = [next(stream) for _ in range(max(1, CALIBRATION_TOKENS // self.config.batch_size))]
        for run in runs:
            x = torch.cat([b[run.hook] for b in batches])
            threshold = run.sae.calibrate(x[x.norm(dim=-1) <= run.max_norm] * run.scale)
            self.log(f"  {run.name}: inference threshold calibrated to {threshold:.4g} (L0 = k = {run.sae.settings.k} on {len(x):,} tokens)")

    def _export(self, seconds: float, rate: float) -> list[dict[str, Any]]:
        self._calibrate()
        results = []
        for run in self.runs:
            info = {"hook": run.hook, "tokens": self.step * self.config.batch_size, "steps": self.step, "max_input_norm": None if math.isinf(run.max_norm) else run.max_norm,
                    "seconds": round(seconds, 1), "tokens_per_second": round(rate), "lr": run.base_lr,
                    "k": self.config.k, "l1_coefficient": run.sae.settings.l1_coefficient, "target_l0": self.config.steered_l0,
                    "training_metrics": {k: round(v, 5) for k, v in run.metrics.items()}}
            path = write_saelens(Path(self.config.out_dir) / run.name, run.sae, hook=run.hook,
                                 model_id=self.config.model_id, scale=run.scale, info=info)
            results.append({"name": run.name, "path": path, **info})
        self.checkpoint_path.unlink(missing_ok=True)
        return results


def _reset_adam(optimizer: torch.optim.Optimizer, sae: TrainableSAE, dead: torch.Tensor) -> None:
    """Zero the Adam moments of the resampled latents' parameters."""
    slices = {id(sae.W_enc): (slice(None), dead), id(sae.W_dec): (dead,), id(sae.b_enc): (dead,)}
    if hasattr(sae, "log_threshold"):
        slices[id(sae.log_threshold)] = (dead,)
    for param_id, index in slices.items():
        param = next(p for p in sae.parameters() if id(p) == param_id)
        for key in ("exp_avg", "exp_avg_sq"):
            if key in optimizer.state.get(param, {}):
                optimizer.state[param][key][index] = 0.0
