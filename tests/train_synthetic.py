"""Synthetic activations with planted sparse features, written as a build pass caches them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

HOOK = "blocks.1.hook_resid_post"


def planted_directions(d_in: int = 32, n_features: int = 64, seed: int = 0) -> torch.Tensor:
    """[n_features, d_in] random unit directions."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_features, d_in, generator=g)
    return dirs / dirs.norm(dim=-1, keepdim=True)


def planted_activations(n_tokens: int, directions: torch.Tensor, *, active: int = 3, seed: int = 1,
                        offset: float = 2.0) -> torch.Tensor:
    """x = offset * e_0 + sum of `active` random features with coefficients in [1, 3)."""
    g = torch.Generator().manual_seed(seed)
    n_features, d_in = directions.shape
    idx = torch.stack([torch.randperm(n_features, generator=g)[:active] for _ in range(n_tokens)])
    coef = 1 + 2 * torch.rand(n_tokens, active, generator=g)
    x = (coef[..., None] * directions[idx]).sum(1)
    x[:, 0] += offset
    return x


def write_cache(folder: Path, acts: dict[str, torch.Tensor], *, shard_tokens: int = 4096) -> Path:
    """Shards {hook: [tokens, width]} float16 plus manifest.json, as build/actcache.py writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(acts.values())))
    for i, start in enumerate(range(0, n, shard_tokens)):
        part = {h: t[start:start + shard_tokens].to(torch.float16).contiguous() for h, t in acts.items()}
        save_file(part, str(folder / f"shard-{i:07d}-{i + 1:07d}.safetensors"))
    (folder / "manifest.json").write_text(json.dumps({"hooks": sorted(acts), "tokens": n}))
    return folder
