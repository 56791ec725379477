"""Per-layer transcoders for every MLP, trained together in one streaming pass over a corpus.

Each step runs the model once over a few corpus windows, reads every layer's normalized MLP
input (`blocks.L.ln2.hook_normalized`) and MLP output (`blocks.L.hook_mlp_out`) and takes one
optimizer step on each layer's transcoder: nothing is cached on disk, so 30 layers cost one
forward pass per step rather than 30 activation caches. A transcoder is TopK (Gao et al. 2024)
from MLP input to MLP output, with AuxK for dead latents, the same sparse backward as the TopK
SAE (`gather_encode`, `sparse_decode`) and optionally a linear skip (input @ W_skip joins the
output). BOS positions and outlier tokens (MLP output norm over `outlier_factor` x the median)
are left out. Inputs and outputs are scaled to E||x|| = sqrt(d) during training; the export
folds the scales back. A checkpoint is written atomically every `checkpoint_seconds` and a run
started again with the same config resumes from it. Output: one SAELens folder per layer
(`architecture` "topk_transcoder" / "topk_skip_transcoder", `metadata.hook_name_out`, `W_skip`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from latentpedia.errors import InvalidInputError
from latentpedia.models.hooks import run_with_cache
from latentpedia.sources.hooknames import transcoder_hooks
from latentpedia.sources.ids import source_id, width_label
from latentpedia.train.checkpoint import load_training_state, save_training_state
from latentpedia.train.saes.base import SAESettings
from latentpedia.train.saes.sparse_encode import gather_encode
from latentpedia.train.saes.topk import auxk_loss, sparse_decode
from latentpedia.train.trainer import TrainingDivergedError

INIT_ENCODER_SCALE = 0.1


@dataclass
class TranscoderConfig:
    """One run: a transcoder of `width` latents for each of `layers` (None: every layer)."""

    out_dir: Path
    model_id: str
    layers: list[int] | None = None
    width: int = 2304
    k: int = 32
    skip: bool = False
    n_tokens: int = 100_000
    windows_per_step: int = 4
    lr: float = 1e-3
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.2
    dead_window: int = 50_000  # tokens without firing before a latent counts as dead (AuxK)
    outlier_factor: float | None = 10.0
    seed: int = 0
    checkpoint_seconds: float = 120.0
    progress: bool = True

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed."""
        values = asdict(self)
        for key in ("out_dir", "checkpoint_seconds", "progress"):
            values.pop(key)
        return values

    def lr_factor(self, step: int, n_steps: int) -> float:
        warmup = max(1, int(self.warmup_fraction * n_steps))
        decay_start = int((1 - self.decay_fraction) * n_steps)
        if step < warmup:
            return (step + 1) / warmup
        if step >= decay_start:
            return max(0.0, (n_steps - step) / max(1, n_steps - decay_start))
        return 1.0


class TopKTranscoder(nn.Module):
    """relu(top_k(x @ W_enc + b_enc)) @ W_dec + b_dec (+ x @ W_skip) on scaled inputs."""

    def __init__(self, settings: SAESettings, d_out: int, skip: bool, generator: torch.Generator):
        super().__init__()
        self.settings = settings
        W_dec = torch.randn(settings.d_sae, d_out, generator=generator)
        self.W_dec = nn.Parameter(W_dec / W_dec.norm(dim=-1, keepdim=True))
        # small encoder: the first outputs are ~b_dec (the mean), not noise from 32 random rows
        W_enc = torch.randn(settings.d_in, settings.d_sae, generator=generator) * (INIT_ENCODER_SCALE / math.sqrt(settings.d_in))
        self.W_enc = nn.Parameter(W_enc)
        self.b_enc = nn.Parameter(torch.zeros(settings.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(settings.d_in, d_out)) if skip else None

    def loss(self, x: torch.Tensor, y: torch.Tensor, dead: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, x, self.W_enc)
            indices = torch.topk(pre, k=self.settings.k, dim=-1, sorted=False).indices
        values = torch.relu(gather_encode(x, self.W_enc, self.b_enc, indices, pre))
        recon = sparse_decode(values, indices, self.W_dec) + self.b_dec
        if self.W_skip is not None:
            recon = recon + x @ self.W_skip
        mse = (recon - y).pow(2).sum(-1).mean()
        aux, aux_value = auxk_loss(self, y, pre, recon, dead, x_c=x)
        with torch.no_grad():
            total = (y - y.mean(0)).pow(2).sum().clamp_min(1e-12)
            ev = 1 - (recon - y).pow(2).sum() / total
            fired = torch.zeros(self.settings.d_sae, dtype=torch.bool).index_fill_(0, indices[values > 0], True)
        return mse + aux, {"mse": float(mse.detach()), "auxk": aux_value, "ev": float(ev), "fired": fired,
                           "l0": float((values > 0).sum(-1).float().mean())}

    @torch.no_grad()
    def export_tensors(self, in_scale: float, out_scale: float) -> dict[str, torch.Tensor]:
        """Tensors for raw activations: the training scales folded into the weights."""
        tensors = {"W_enc": self.W_enc * in_scale, "b_enc": self.b_enc.clone(),
                   "W_dec": self.W_dec / out_scale, "b_dec": self.b_dec / out_scale}
        if self.W_skip is not None:
            tensors["W_skip"] = self.W_skip * (in_scale / out_scale)
        return {name: t.detach().float().contiguous() for name, t in tensors.items()}


@dataclass
class LayerRun:
    layer: int
    transcoder: TopKTranscoder
    optimizer: torch.optim.Optimizer
    in_scale: float = 1.0
    out_scale: float = 1.0
    max_out_norm: float = math.inf
    since_fired: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Folder and source name, e.g. "8-tc-topk-2.3k" ("8-tc-skip-topk-2.3k" with a skip)."""
        skip = "skip-" if self.transcoder.W_skip is not None else ""
        return source_id(self.layer, "tc", f"{skip}topk-{width_label(self.transcoder.settings.d_sae)}")

    def state(self) -> dict[str, Any]:
        return {"model": self.transcoder.state_dict(), "opt": self.optimizer.state_dict(), "in_scale": self.in_scale,
                "out_scale": self.out_scale, "max_out_norm": self.max_out_norm, "since_fired": self.since_fired,
                "metrics": self.metrics}

    def load(self, state: dict[str, Any]) -> None:
        self.transcoder.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["opt"])
        self.in_scale, self.out_scale, self.max_out_norm = state["in_scale"], state["out_scale"], state["max_out_norm"]
        self.since_fired, self.metrics = state["since_fired"], state["metrics"]


def layer_batches(model, windows: torch.Tensor, layers: list[int], windows_per_step: int,
                  skip_steps: int = 0) -> Iterator[dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """{layer: (MLP inputs [N, d], MLP outputs [N, d])} per step, BOS positions dropped, cycling."""
    names = [name for layer in layers for name in transcoder_hooks(layer)]
    n = len(windows)
    step = skip_steps
    while True:
        start = (step * windows_per_step) % n
        ids = windows[start:start + windows_per_step]
        acts = run_with_cache(model, ids, names)
        yield {layer: tuple(acts[name][:, 1:].reshape(-1, acts[name].shape[-1]).float()
                            for name in transcoder_hooks(layer)) for layer in layers}
        step += 1


class TranscoderTrainer:
    """Trains one transcoder per layer on `windows` ([n, T] token ids, BOS first)."""

    def __init__(self, model, windows: torch.Tensor, config: TranscoderConfig, *, log=print):
        layers = list(range(model.n_layers)) if config.layers is None else sorted(set(config.layers))
        bad = [layer for layer in layers if not 0 <= layer < model.n_layers]
        if bad:
            raise InvalidInputError(f"layer {bad[0]} does not exist: {model.id} has layers 0..{model.n_layers - 1}")
        if not 0 < config.k <= config.width:
            raise InvalidInputError(f"k must be between 1 and the width ({config.width}), got {config.k}")
        self.model, self.config, self.log = model, config, log
        self.windows = torch.as_tensor(windows, dtype=torch.long)
        tokens_per_step = config.windows_per_step * (self.windows.shape[1] - 1)
        self.n_steps = max(1, math.ceil(config.n_tokens / tokens_per_step))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.runs = [self._new_run(layer) for layer in layers]
        self.step = 0
        key = hashlib.sha256(json.dumps(config.identity(), sort_keys=True).encode()).hexdigest()[:16]
        self.checkpoint_path = Path(config.out_dir) / ".checkpoints" / f"transcoders-{key}.pt"

    def _new_run(self, layer: int) -> LayerRun:
        d = self.model.d_model
        settings = SAESettings("topk", d, self.config.width, k=self.config.k)
        transcoder = TopKTranscoder(settings, d, self.config.skip, self.generator)
        optimizer = torch.optim.Adam(transcoder.parameters(), lr=self.config.lr)
        return LayerRun(layer, transcoder, optimizer, since_fired=torch.zeros(self.config.width, dtype=torch.long))

    @torch.no_grad()
    def _initialise(self, batch: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Input / output scales, outlier bound and b_dec (mean output) from the first batch."""
        for run in self.runs:
            x, y = batch[run.layer]
            norms = y.norm(dim=-1)
            if self.config.outlier_factor:
                run.max_out_norm = float(self.config.outlier_factor * norms.median())
            keep = norms <= run.max_out_norm
            x, y = x[keep], y[keep]
            run.in_scale = float(math.sqrt(x.shape[-1]) / x.norm(dim=-1).mean().clamp_min(1e-8))
            run.out_scale = float(math.sqrt(y.shape[-1]) / y.norm(dim=-1).mean().clamp_min(1e-8))
            run.transcoder.b_dec.copy_(y.mean(0) * run.out_scale)

    def _save_checkpoint(self) -> None:
        runs = {run.layer: run.state() for run in self.runs}
        save_training_state(self.checkpoint_path, self.config.identity(), self.step, self.generator, runs)

    def _resume(self) -> bool:
        state = load_training_state(self.checkpoint_path, self.config.identity())
        if state is None:
            return False
        self.step = state["step"]
        self.generator.set_state(state["rng"])
        for run in self.runs:
            run.load(state["runs"][run.layer])
        self.log(f"resuming transcoder training at step {self.step:,} of {self.n_steps:,} ({self.checkpoint_path})")
        return True

    def run(self, *, stop_after: int | None = None) -> list[dict[str, Any]]:
        """Train (resuming if a checkpoint matches) and export; one summary per layer.

        `stop_after` steps: checkpoint and return [] (tests of resumption)."""
        resumed = self._resume()
        layers = [run.layer for run in self.runs]
        stream = layer_batches(self.model, self.windows, layers, self.config.windows_per_step, skip_steps=self.step)
        if not resumed:
            first = next(layer_batches(self.model, self.windows, layers, self.config.windows_per_step))
            self._initialise(first)
        started, last_save, first_step = time.perf_counter(), time.perf_counter(), self.step
        with _progress(len(self.runs), self.n_steps, self.config.progress) as bar:
            while self.step < self.n_steps:
                if stop_after is not None and self.step >= stop_after:
                    self._save_checkpoint()
                    return []
                batch = next(stream)
                for run in self.runs:
                    self._train_step(run, *batch[run.layer])
                self.step += 1
                bar.update(self.step, self.runs)
                if time.perf_counter() - last_save > self.config.checkpoint_seconds:
                    self._save_checkpoint()
                    last_save = time.perf_counter()
        seconds = time.perf_counter() - started
        return self._export(seconds, (self.step - first_step) / max(seconds, 1e-9))

    def _train_step(self, run: LayerRun, x: torch.Tensor, y: torch.Tensor) -> None:
        keep = y.norm(dim=-1) <= run.max_out_norm
        x, y = x[keep] * run.in_scale, y[keep] * run.out_scale
        for group in run.optimizer.param_groups:
            group["lr"] = self.config.lr * self.config.lr_factor(self.step, self.n_steps)
        loss, parts = run.transcoder.loss(x, y, run.since_fired >= self.config.dead_window)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"layer {run.layer}: the loss became {float(loss)} at step {self.step:,}; "
                                        "no transcoder was written. Try a lower --lr")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            W_dec = run.transcoder.W_dec
            W_dec.grad -= (W_dec.grad * W_dec).sum(-1, keepdim=True) * W_dec
        torch.nn.utils.clip_grad_norm_(run.transcoder.parameters(), 1.0)
        run.optimizer.step()
        with torch.no_grad():
            run.transcoder.W_dec /= run.transcoder.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        fired = parts.pop("fired")
        run.since_fired += x.shape[0]
        run.since_fired[fired] = 0
        values = {"loss": float(loss.detach()), **parts, "dead": float((run.since_fired >= self.config.dead_window).float().mean())}
        rate = 0.9 if run.metrics else 0.0
        run.metrics = {key: rate * run.metrics.get(key, v) + (1 - rate) * v for key, v in values.items()}

    def _export(self, seconds: float, steps_per_second: float) -> list[dict[str, Any]]:
        tokens_per_step = self.config.windows_per_step * (self.windows.shape[1] - 1)
        results = []
        for run in self.runs:
            info = {"tokens": self.step * tokens_per_step, "steps": self.step, "seconds": round(seconds, 1),
                    "tokens_per_second": round(steps_per_second * tokens_per_step),
                    "max_output_norm": None if math.isinf(run.max_out_norm) else run.max_out_norm,
                    "training_metrics": {k: round(v, 5) for k, v in run.metrics.items()}}
            path = write_transcoder(Path(self.config.out_dir) / run.name, run, model_id=self.config.model_id, info=info)
            results.append({"name": run.name, "layer": run.layer, "path": path, **info})
        self.checkpoint_path.unlink(missing_ok=True)
        return results


def write_transcoder(folder: Path, run: LayerRun, *, model_id: str, info: dict[str, Any]) -> Path:
    """One layer's transcoder as a SAELens folder, written atomically."""
    from safetensors.torch import save_file

    from latentpedia.train.export import CFG_FILE, SAELENS_FORMAT_VERSION, WEIGHTS_FILE, _replace_dir

    t = run.transcoder
    hook, hook_out = transcoder_hooks(run.layer)
    cfg = {"architecture": "topk_skip_transcoder" if t.W_skip is not None else "topk_transcoder",
           "d_in": t.settings.d_in, "d_sae": t.settings.d_sae, "d_out": int(t.W_dec.shape[1]), "k": t.settings.k,
           "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False, "normalize_activations": "none",
           "metadata": {"hook_name": hook, "hook_name_out": hook_out, "model_name": model_id, "prepend_bos": True,
                        "sae_lens_version": SAELENS_FORMAT_VERSION,
                        "latentpedia": {"trained_architecture": "topk_transcoder", "input_scale_folded": run.in_scale,
                                        "output_scale_folded": run.out_scale, **info}}}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir(exist_ok=True)
    save_file(t.export_tensors(run.in_scale, run.out_scale), str(tmp / WEIGHTS_FILE))
    (tmp / CFG_FILE).write_text(json.dumps(cfg, indent=2))
    _replace_dir(tmp, folder)
    return folder


class _progress:
    """One rich bar for all layers: mean loss, L0, EV and dead fraction over the layers."""

    def __init__(self, n_layers: int, n_steps: int, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("L0 {task.fields[l0]}  EV {task.fields[ev]} (worst {task.fields[worst]})  dead {task.fields[dead]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled)
        self.task = self.progress.add_task(f"transcoders ({n_layers} layers)", total=n_steps, l0="-", ev="-", worst="-", dead="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, runs: list[LayerRun]) -> None:
        mean = {key: sum(r.metrics[key] for r in runs) / len(runs) for key in ("l0", "ev", "dead")}
        self.progress.update(self.task, completed=step, l0=f"{mean['l0']:.1f}", ev=f"{mean['ev']:.3f}",
                             worst=f"{min(r.metrics['ev'] for r in runs):.3f}", dead=f"{mean['dead']:.1%}")
