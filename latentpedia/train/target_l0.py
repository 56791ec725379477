"""Sparsity coefficients found during training: land ReLU and JumpReLU SAEs at a target L0.

A fixed L1 (ReLU) or L0 (JumpReLU) weight gives very different L0s on different hooks, widths
and input scales (the defaults once left a JumpReLU SAE at L0 ≈ 900 and a ReLU one 80% dead).
Instead of a grid of runs, one run adjusts its own coefficient: after every step the
coefficient is multiplied by exp(gain * log(L0 / target)) with L0 a running mean of the
batch L0. Too many active latents raise the penalty, too few lower it; the update is
proportional to the log-ratio, so it is scale-free and needs no tuning per architecture. The
coefficient is kept within [MIN, MAX] and adapts only while the learning rate is not decaying,
so the final part of training settles on a fixed objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIN_COEFFICIENT, MAX_COEFFICIENT = 1e-6, 1e4
GAIN = 0.02  # log-coefficient change per step per unit of log(L0 / target) (0.005 too slow for ~200-step runs, 0.1 oscillates)
EMA = 0.9  # running mean of the batch L0


@dataclass
class L0Controller:
    """Steers `settings.l1_coefficient` of one SAE towards `target` active latents per token."""

    target: float
    coefficient: float
    running_l0: float | None = None
    gain: float = GAIN

    def update(self, batch_l0: float, *, adapting: bool = True) -> float:
        """Record a batch's L0; return the coefficient for the next step."""
        if not math.isfinite(batch_l0):
            return self.coefficient
        self.running_l0 = batch_l0 if self.running_l0 is None else EMA * self.running_l0 + (1 - EMA) * batch_l0
        if adapting:
            ratio = max(self.running_l0, 0.1) / self.target
            step = max(-0.5, min(0.5, self.gain * math.log(ratio)))  # at most x/÷ e^0.5 per step
            self.coefficient = min(MAX_COEFFICIENT, max(MIN_COEFFICIENT, self.coefficient * math.exp(step)))
        return self.coefficient

    def state(self) -> dict[str, Any]:
        return {"target": self.target, "coefficient": self.coefficient, "running_l0": self.running_l0}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> L0Controller:
        return cls(state["target"], state["coefficient"], state["running_l0"])


# Architectures whose sparsity is a loss coefficient, not a hard k; they get a target L0.
COEFFICIENT_ARCHITECTURES = ("relu", "jumprelu")


def default_target_l0(architecture: str, k: int, l1_coefficient: float | None, target_l0: float | None) -> float | None:
    """The L0 a run steers to: `target_l0` when given, else k for coefficient architectures
    whose coefficient was not set by hand; None means a fixed coefficient."""
    if architecture not in COEFFICIENT_ARCHITECTURES:
        return None
    if target_l0 is not None:
        return float(target_l0)
    return float(k) if l1_coefficient is None else None
