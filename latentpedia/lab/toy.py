"""The toy model of superposition (Elhage et al. 2022), trained for many sparsities at once.

Features x_i are 0 with probability S, else uniform on [0, 1]; the model embeds them in m < n
hidden dimensions, h = W x, and reads them back through a ReLU, x' = ReLU(WᵀW x + b); the loss
is sum_i I_i (x_i - x'_i)^2 with importance I_i = decay^i. One `train_toy` call trains one
independent model per sparsity ("instances", as the paper does) in a single batched loop, so a
whole sparsity sweep costs about what one model costs.

What the paper reads off a trained model, all computed here:
- `dims_per_feature` D* = m / ||W||_F^2: hidden dimensions spent per represented feature;
- per-feature dimensionality D_i = ||W_i||^2 / sum_j (Ŵ_i · W_j)^2, which sticks to the
  fractions of uniform polytopes: 1 (a dedicated dimension), 3/4 (tetrahedron), 2/3 (triangle),
  1/2 (antipodal pair, "digon"), 2/5 (pentagon), 3/8 (square antiprism);
- WᵀW (the interference matrix) and the feature norms ||W_i||.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch

from latentpedia.errors import InvalidInputError

# the fractions feature dimensionalities stick to, and the geometry each stands for
STICKY_FRACTIONS: dict[Fraction, str] = {
    Fraction(1): "dedicated dimension",
    Fraction(3, 4): "tetrahedron",
    Fraction(2, 3): "triangle",
    Fraction(1, 2): "digon (antipodal pair)",
    Fraction(2, 5): "pentagon",
    Fraction(3, 8): "square antiprism",
}
REPRESENTED_NORM = 0.5  # a feature with ||W_i|| below this is "not represented"
GEOMETRY_TOLERANCE = 0.03  # |D_i - fraction| within which a feature counts as on that fraction

MAX_FEATURES, MAX_HIDDEN, MAX_INSTANCES, MAX_STEPS = 512, 64, 64, 20_000


def default_sparsities(count: int = 20, max_density_inverse: float = 300.0) -> list[float]:
    """Sparsities S with 1 / (1 - S) log-spaced from 1 (dense) to `max_density_inverse`."""
    if count < 1:
        raise InvalidInputError("a sweep needs at least one sparsity")
    if count == 1:
        return [0.0]
    steps = [max_density_inverse ** (i / (count - 1)) for i in range(count)]
    return [1 - 1 / s for s in steps]


@dataclass(frozen=True)
class ToyConfig:
    """One toy-model run: a model per sparsity, all the same shape."""

    n_features: int = 100
    n_hidden: int = 20
    importance_decay: float = 1.0  # I_i = decay^i (1.0: uniform, as the paper's geometry figures)
    sparsities: tuple[float, ...] = field(default_factory=lambda: tuple(default_sparsities()))
    steps: int = 4000
    batch_size: int = 1024
    lr: float = 1e-3
    seed: int = 0

    def validate(self) -> None:
        """InvalidInputError naming the first bad field (bounded so one request cannot hog CPU)."""
        checks = [
            (1 <= self.n_hidden < self.n_features <= MAX_FEATURES, f"need 1 <= n_hidden < n_features <= {MAX_FEATURES}"),
            (self.n_hidden <= MAX_HIDDEN, f"n_hidden must be at most {MAX_HIDDEN}"),
            (0 < self.importance_decay <= 1, "importance_decay must be in (0, 1]"),
            (1 <= len(self.sparsities) <= MAX_INSTANCES, f"give 1 to {MAX_INSTANCES} sparsities"),
            (all(0 <= s < 1 for s in self.sparsities), "every sparsity must be in [0, 1)"),
            (1 <= self.steps <= MAX_STEPS, f"steps must be in 1..{MAX_STEPS}"),
            (1 <= self.batch_size <= 4096, "batch_size must be in 1..4096"),
            (0 < self.lr <= 1, "lr must be in (0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(f"toy model: {message}")

    def importance(self) -> torch.Tensor:
        return self.importance_decay ** torch.arange(self.n_features, dtype=torch.float32)


@dataclass
class ToyModels:
    """Trained weights: W [instances, m, n], b [instances, n]; one instance per sparsity."""

    config: ToyConfig
    W: torch.Tensor
    b: torch.Tensor
    losses: list[float]  # final loss per instance (mean over the last 10% of steps)


def sample_features(batch: int, density: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """[instances, batch, n]: each feature U[0, 1] with probability `density[instance]`, else 0."""
    u = torch.rand((len(density), batch, n), generator=generator)
    p = density[:, None, None]
    return torch.where(u < p, u / p, 0.0)  # given u < p, u / p is uniform on [0, 1]: one draw, not two


def toy_forward(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x' = ReLU(Wᵀ W x + b) for every instance: x [I, B, n] -> [I, B, n]."""
    hidden = torch.bmm(x, W.transpose(1, 2))  # [I, B, m]
    return torch.relu(torch.baddbmm(b[:, None, :], hidden, W))


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the duration: these tensors are tiny, and on a busy
    machine a second spinning thread made steps ~5x slower (measured on 2 shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_toy(config: ToyConfig) -> ToyModels:
    """Train one toy model per sparsity of `config` (AdamW, constant learning rate)."""
    config.validate()
    with one_thread():
        return _train(config)


def _train(config: ToyConfig) -> ToyModels:
    generator = torch.Generator().manual_seed(config.seed)
    n, m, count = config.n_features, config.n_hidden, len(config.sparsities)
    W = torch.nn.Parameter(torch.randn(count, m, n, generator=generator) * math.sqrt(2 / (m + n)))
    b = torch.nn.Parameter(torch.zeros(count, n))
    optimizer = torch.optim.AdamW([W, b], lr=config.lr, weight_decay=0.0)
    density = 1 - torch.tensor(config.sparsities, dtype=torch.float32)
    importance = config.importance()
    tail = max(1, config.steps // 10)
    recent = torch.zeros(count)
    for step in range(config.steps):
        x = sample_features(config.batch_size, density, n, generator)
        error = (importance * (x - toy_forward(W, b, x)).pow(2)).mean(1).sum(-1)  # [I]
        optimizer.zero_grad(set_to_none=True)
        error.sum().backward()
        optimizer.step()
        if step >= config.steps - tail:
            recent += error.detach()
    return ToyModels(config, W.detach(), b.detach(), (recent / tail).tolist())


# ---------------------------------------------------------------------------- what to read off


def feature_norms(W: torch.Tensor) -> torch.Tensor:
    """||W_i|| per feature: [m, n] -> [n]."""
    return W.norm(dim=0)


def feature_dimensionality(W: torch.Tensor) -> torch.Tensor:
    """D_i = ||W_i||^2 / sum_j (Ŵ_i · W_j)^2 for one model W [m, n]; 0 where W_i = 0."""
    norms = feature_norms(W)
    unit = W / norms.clamp_min(1e-8)
    overlap = (unit.T @ W).pow(2).sum(-1)  # sum_j (Ŵ_i · W_j)^2, includes j = i
    return torch.where(norms > 1e-4, norms.pow(2) / overlap.clamp_min(1e-12), torch.zeros_like(norms))


def superposition(W: torch.Tensor) -> torch.Tensor:
    """sum_{j != i} (Ŵ_i · W_j)^2 per feature of W [m, n]: how much of feature i's direction
    other features share (0 = orthogonal to all), the colour of the paper's norm bars."""
    unit = W / feature_norms(W).clamp_min(1e-8)
    overlap = (unit.T @ W).pow(2)
    return overlap.sum(-1) - overlap.diagonal()


def dims_per_feature(W: torch.Tensor) -> float:
    """D* = m / ||W||_F^2 for one model W [m, n]."""
    return float(W.shape[0] / W.pow(2).sum().clamp_min(1e-12))


def nearest_fraction(value: float, tolerance: float = GEOMETRY_TOLERANCE) -> Fraction | None:
    """The sticky fraction within `tolerance` of `value`, if any."""
    best = min(STICKY_FRACTIONS, key=lambda f: abs(float(f) - value))
    return best if abs(float(best) - value) <= tolerance else None


def geometry_counts(W: torch.Tensor, tolerance: float = GEOMETRY_TOLERANCE) -> dict[str, int]:
    """How many represented features of W [m, n] sit on each sticky fraction ("other" if none)."""
    dims, norms = feature_dimensionality(W), feature_norms(W)
    counts = {str(f): 0 for f in STICKY_FRACTIONS} | {"other": 0, "not represented": 0}
    for d, norm in zip(dims.tolist(), norms.tolist(), strict=True):
        if norm < REPRESENTED_NORM:
            counts["not represented"] += 1
            continue
        fraction = nearest_fraction(d, tolerance)
        counts["other" if fraction is None else str(fraction)] += 1
    return counts


@dataclass
class ToyInstance:
    """What one trained model shows (JSON-able)."""

    sparsity: float
    density_inverse: float  # 1 / (1 - S)
    loss: float
    dims_per_feature: float
    feature_norms: list[float]
    dimensionality: list[float]
    geometry: dict[str, int]


def describe(models: ToyModels) -> list[ToyInstance]:
    """Per-instance figures of a trained sweep, in the order of `config.sparsities`."""
    out = []
    for i, sparsity in enumerate(models.config.sparsities):
        W = models.W[i]
        out.append(ToyInstance(
            sparsity=sparsity, density_inverse=1 / (1 - sparsity), loss=models.losses[i],
            dims_per_feature=dims_per_feature(W), feature_norms=[round(v, 4) for v in feature_norms(W).tolist()],
            dimensionality=[round(v, 4) for v in feature_dimensionality(W).tolist()], geometry=geometry_counts(W),
        ))  # fmt: skip
    return out


def interference(W: torch.Tensor) -> torch.Tensor:
    """WᵀW [n, n] of one model: the diagonal holds ||W_i||^2, the rest the interference."""
    return W.T @ W


def config_dict(config: ToyConfig) -> dict:
    return asdict(config) | {"sparsities": list(config.sparsities)}
