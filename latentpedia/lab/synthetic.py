"""Synthetic activations with known features: the ground truth an SAE should recover.

x = bias + sum_i a_i f_i (+ noise), where the f_i are random unit directions in d_model dims
(more features than dimensions: superposition), feature i fires with its own probability p_i
(log-uniform around `density`) and magnitude a_i ~ U[0.5, 1.5]. Options:

- correlation: features come in groups of `group_size` whose firings are correlated (a Gaussian
  copula: each feature thresholds z_i = sqrt(rho) g_group + sqrt(1 - rho) e_i at its p_i);
- hierarchy: `n_parents` parent features each with `children_per_parent` children; a child fires
  only together with its parent (at most one child per firing, like "starts with S" under
  "is a word"), which is the setting where SAEs "absorb" a parent into its children.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from latentpedia.errors import InvalidInputError

HOOK = "blocks.0.hook_resid_post"  # synthetic caches pose as a residual stream (SAE names need a layer)


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape of a synthetic dataset (JSON-able, recorded with every benchmark result)."""

    d_model: int = 32
    n_features: int = 96  # independent features (parents and children come on top)
    density: float = 0.02  # typical firing probability (spread log-uniformly x/÷ 3)
    correlation: float = 0.0  # within-group correlation of the Gaussian copula, in [0, 1)
    group_size: int = 4
    n_parents: int = 0
    children_per_parent: int = 3
    child_probability: float = 0.7  # P(one of its children fires | parent fires)
    noise: float = 0.0  # std of isotropic Gaussian noise added to x
    seed: int = 0

    def validate(self) -> None:
        if self.d_model < 2 or self.n_features < 1:
            raise InvalidInputError("synthetic data needs d_model >= 2 and n_features >= 1")
        if not 0 < self.density < 1 or not 0 <= self.correlation < 1 or not 0 <= self.child_probability <= 1:
            raise InvalidInputError("density must be in (0, 1), correlation in [0, 1), child_probability in [0, 1]")
        if self.group_size < 1 or self.n_parents < 0 or self.children_per_parent < 1 or self.noise < 0:
            raise InvalidInputError("group_size and children_per_parent must be >= 1, n_parents and noise >= 0")

    @property
    def total_features(self) -> int:
        return self.n_features + self.n_parents * (1 + self.children_per_parent)


@dataclass
class GroundTruth:
    """The true features: directions [F, d], firing probabilities [F], hierarchy pairs."""

    config: SyntheticConfig
    directions: torch.Tensor
    probabilities: torch.Tensor
    bias: torch.Tensor
    parent_of: dict[int, int]  # child feature index -> parent feature index

    @property
    def parents(self) -> list[int]:
        return sorted(set(self.parent_of.values()))


def make_ground_truth(config: SyntheticConfig) -> GroundTruth:
    """Random directions, probabilities and hierarchy of `config` (seeded)."""
    config.validate()
    g = torch.Generator().manual_seed(config.seed)
    total = config.total_features
    directions = torch.randn(total, config.d_model, generator=g)
    directions /= directions.norm(dim=-1, keepdim=True)
    spread = torch.empty(total).uniform_(-math.log(3), math.log(3), generator=g)
    probabilities = (config.density * spread.exp()).clamp(max=0.5)
    parent_of = {}
    for p in range(config.n_parents):
        parent = config.n_features + p * (1 + config.children_per_parent)
        for c in range(config.children_per_parent):
            parent_of[parent + 1 + c] = parent
    bias = torch.randn(config.d_model, generator=g) * 0.5
    return GroundTruth(config, directions, probabilities, bias, parent_of)


def sample_coefficients(truth: GroundTruth, n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, F] feature coefficients (0 where a feature is off)."""
    config, total = truth.config, truth.config.total_features
    groups = math.ceil(total / config.group_size)
    shared = torch.randn(n, groups, generator=generator).repeat_interleave(config.group_size, dim=1)[:, :total]
    z = math.sqrt(config.correlation) * shared + math.sqrt(1 - config.correlation) * torch.randn(n, total, generator=generator)
    thresholds = torch.distributions.Normal(0.0, 1.0).icdf(1 - truth.probabilities)
    active = z > thresholds
    for parent in truth.parents:
        children = [c for c, p in truth.parent_of.items() if p == parent]
        pick = torch.randint(len(children), (n,), generator=generator)
        fires = active[:, parent] & (torch.rand(n, generator=generator) < config.child_probability)
        for i, child in enumerate(children):
            active[:, child] = fires & (pick == i)
    magnitudes = 0.5 + torch.rand(n, total, generator=generator)
    return magnitudes * active


def sample_activations(truth: GroundTruth, n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [n, d], coefficients [n, F]) drawn with `seed`."""
    g = torch.Generator().manual_seed(seed)
    coefficients = sample_coefficients(truth, n, g)
    x = truth.bias + coefficients @ truth.directions
    if truth.config.noise:
        x = x + truth.config.noise * torch.randn(x.shape, generator=g)
    return x, coefficients


def write_activation_cache(folder: Path, x: torch.Tensor, *, shard_tokens: int = 16_384, meta: dict | None = None) -> Path:
    """`x` as the float16 shards + manifest.json the SAE trainer reads (train/activations.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, len(x), shard_tokens)):
        save_file({HOOK: x[start:start + shard_tokens].to(torch.float16).contiguous()}, str(folder / f"shard-{i:07d}-{i + 1:07d}.safetensors"))
    (folder / "manifest.json").write_text(json.dumps({"hooks": [HOOK], "tokens": len(x), "synthetic": meta or {}}))
    return folder


def config_dict(config: SyntheticConfig) -> dict:
    return asdict(config)
