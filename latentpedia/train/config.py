"""What `latentpedia train-sae` is asked for, and the derived per-SAE settings."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from latentpedia.train.saes import SAESettings
from latentpedia.train.target_l0 import default_target_l0


@dataclass
class TrainConfig:
    """One training run: every (hook, width) pair gets its own SAE, all fed by one stream.

    The pairs are hooks x widths, or exactly `pairs` when given (e.g. two widths at one layer
    and one at the others, as the default atlas trains them)."""

    activations: Path  # folder of cached shards
    out_dir: Path
    hooks: list[str]
    widths: list[int]
    architecture: str = "topk"
    model_id: str = "unknown"
    k: int = 32
    l1_coefficient: float | None = None  # default per architecture (see `settings`)
    target_l0: float | None = None  # relu / jumprelu: steer the coefficient to this L0 (default k; train/target_l0.py)
    n_tokens: int = 200_000  # training tokens (the cache is replayed if it holds fewer)
    batch_size: int = 1024
    lr: float | None = None  # None: 2e-4 / sqrt(d_sae / 16384), Gao et al.'s scaling law
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.2  # linear decay to zero over the last part of training
    buffer_tokens: int = 131_072
    seed: int = 0
    dead_after_tokens: int | None = None  # None: min(n_tokens / 5, 1M)
    resample_every: int = 250  # steps (ReLU / JumpReLU)
    b_dec_init: str = "geometric_median"  # or "mean"
    outlier_factor: float | None = 10.0  # drop tokens with norm > factor x median (attention sinks)
    checkpoint_seconds: float = 60.0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    pairs: list[tuple[str, int]] | None = None

    @property
    def sae_pairs(self) -> list[tuple[str, int]]:
        """(hook, width) of every SAE to train, in training order."""
        if self.pairs is not None:
            return [(str(h), int(w)) for h, w in self.pairs]
        return [(h, w) for h in self.hooks for w in self.widths]

    @property
    def stream_hooks(self) -> list[str]:
        return list(dict.fromkeys(h for h, _ in self.sae_pairs))

    @property
    def n_steps(self) -> int:
        return max(1, self.n_tokens // self.batch_size)

    @property
    def dead_window(self) -> int:
        return self.dead_after_tokens or int(min(self.n_tokens / 5, 1_000_000))

    def settings(self, d_in: int, d_sae: int) -> SAESettings:
        l1 = self.l1_coefficient
        if l1 is None:
            l1 = {"relu": 5.0, "jumprelu": 0.5}.get(self.architecture, 0.0)  # the start when steering to a target L0
        return SAESettings(self.architecture, d_in, d_sae, k=self.k, l1_coefficient=l1)

    @property
    def steered_l0(self) -> float | None:
        """The L0 the sparsity coefficient is steered to during training (None: kept fixed)."""
        return default_target_l0(self.architecture, self.k, self.l1_coefficient, self.target_l0)

    def lr_for(self, d_sae: int) -> float:
        return self.lr or 2e-4 / math.sqrt(d_sae / 16384)

    def lr_factor(self, step: int) -> float:
        """Warm-up, constant, then linear decay to 0 (multiplies the base learning rate)."""
        warmup = max(1, int(self.warmup_fraction * self.n_steps))
        decay_start = int((1 - self.decay_fraction) * self.n_steps)
        factor = min(1.0, (step + 1) / warmup)
        if step >= decay_start and self.decay_fraction > 0:
            factor *= max(0.0, (self.n_steps - step) / max(1, self.n_steps - decay_start))
        return factor

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed."""
        keep = ("hooks", "widths", "architecture", "k", "l1_coefficient", "target_l0", "n_tokens", "batch_size", "lr",
                "warmup_fraction", "decay_fraction", "buffer_tokens", "seed", "b_dec_init", "outlier_factor")
        data = asdict(self)
        return {key: data[key] for key in keep} | {"activations": str(Path(self.activations).resolve()), "pairs": self.sae_pairs}
