"""Latent activations of a caller's text: one forward pass, every chosen source encoded after it.

Pure torch on a loaded model (no web framework): the live routes call these on the
`LiveModels` worker thread.

- `encode_sources(model, ids, sources)`: ONE forward pass that stops after the deepest hook any
  source reads, then each source encodes its cached hook activation -> {source id: [T, d_sae]}.
- `top_latents(acts, ...)`: the latents with the highest score over chosen token positions
  across all sources at once (scores of every source concatenated, one `topk`).
- `top_latents_per_token(acts, ...)`: for each token, its k strongest latents across sources.

Latents whose stored density is above a ceiling are skipped by giving them a score of -inf.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from latentpedia.models import LoadedModel, run_with_cache
from latentpedia.sources import Source


@dataclass(frozen=True)
class Hit:
    """One latent in a ranking: its source, index, score, position of its max, per-token values."""

    source: str
    index: int
    value: float  # the score the ranking used
    max_value: float
    max_position: int
    values: list[float]


def encode_sources(model: LoadedModel, ids: Sequence[int], sources: Sequence[Source]) -> dict[str, torch.Tensor]:
    """{source id: [T, d_sae] float32 activations} of token ids `ids` (BOS included)."""
    hooks = list(dict.fromkeys(s.hook_name for s in sources))
    cache = run_with_cache(model, [list(ids)], hooks, stop_early=True)
    with torch.inference_mode():
        return {s.id: s.encode(cache[s.hook_name][0]).to(torch.float32) for s in sources}


def encode_batch(model: LoadedModel, batch: Sequence[Sequence[int]], sources: Sequence[Source]) -> list[dict[str, torch.Tensor]]:
    """`encode_sources` for several token lists in one padded forward pass. Padding goes on the
    right: with causal attention a token never sees later positions, so padding changes nothing."""
    if len(batch) == 1:
        return [encode_sources(model, batch[0], sources)]
    hooks = list(dict.fromkeys(s.hook_name for s in sources))
    width = max(len(ids) for ids in batch)
    padded = torch.full((len(batch), width), int(model.bos_id), dtype=torch.long)
    for row, ids in enumerate(batch):
        padded[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    cache = run_with_cache(model, padded, hooks, stop_early=True)
    with torch.inference_mode():
        encoded = {s.id: s.encode(cache[s.hook_name]).to(torch.float32) for s in sources}
    return [{name: acts[row, : len(ids)] for name, acts in encoded.items()} for row, ids in enumerate(batch)]


def _scores(acts: torch.Tensor, positions: list[int], ceiling_mask: torch.Tensor | None) -> torch.Tensor:
    """[d_sae] max activation over `positions`; -inf for latents above the density ceiling."""
    score = acts[positions].amax(dim=0) if positions else torch.full((acts.shape[1],), float("-inf"))
    if ceiling_mask is not None:
        score = score.masked_fill(ceiling_mask, float("-inf"))
    return score


def top_latents(
    acts: dict[str, torch.Tensor],
    positions: list[int],
    n: int,
    *,
    too_dense: dict[str, torch.Tensor] | None = None,
    ignore_first: bool = True,
) -> list[Hit]:
    """The `n` latents (over every source) with the highest max activation over `positions`,
    only positive scores. Per-token values are returned for all tokens; `ignore_first` reports
    the max over positions >= 1."""
    names = list(acts)
    if not names:
        return []
    scores = torch.cat([_scores(acts[name], positions, (too_dense or {}).get(name)) for name in names])
    offsets = [0]
    for name in names:
        offsets.append(offsets[-1] + acts[name].shape[1])
    values, flat = torch.topk(scores, min(n, scores.numel()))
    hits = []
    for value, where in zip(values.tolist(), flat.tolist(), strict=True):
        if not value > 0:
            break
        s = bisect.bisect_right(offsets, where) - 1
        hits.append(_hit(names[s], where - offsets[s], value, acts[names[s]], ignore_first))
    return hits


def _hit(source: str, index: int, score: float, acts: torch.Tensor, ignore_first: bool) -> Hit:
    column = acts[:, index]
    start = 1 if ignore_first and len(column) > 1 else 0
    peak = int(torch.argmax(column[start:])) + start
    return Hit(source, index, float(score), float(column[peak]), peak, [float(v) for v in column.tolist()])


def top_latents_per_token(
    acts: dict[str, torch.Tensor], k: int, *, too_dense: dict[str, torch.Tensor] | None = None, ignore_first: bool = True
) -> list[list[tuple[str, int, float]]]:
    """For each token position, its `k` strongest (source, index, value) with value > 0
    (position 0 gets [] when `ignore_first`)."""
    names = list(acts)
    if not names:
        return []
    blocks = []
    for name in names:
        block = acts[name]
        mask = (too_dense or {}).get(name)
        blocks.append(block.masked_fill(mask[None, :], float("-inf")) if mask is not None else block)
    matrix = torch.cat(blocks, dim=1)  # [T, total latents]
    offsets = [0]
    for name in names:
        offsets.append(offsets[-1] + acts[name].shape[1])
    values, flat = torch.topk(matrix, min(k, matrix.shape[1]), dim=1)
    out: list[list[tuple[str, int, float]]] = []
    for position, (row_values, row_idx) in enumerate(zip(values.tolist(), flat.tolist(), strict=True)):
        if ignore_first and position == 0:
            out.append([])
            continue
        row = []
        for value, where in zip(row_values, row_idx, strict=True):
            if not value > 0:
                break
            s = bisect.bisect_right(offsets, where) - 1
            row.append((names[s], where - offsets[s], float(value)))
        out.append(row)
    return out


def density_masks(densities: dict[str, np.ndarray], ceiling: float | None) -> dict[str, torch.Tensor]:
    """{source: True for latents whose stored density is above `ceiling`} ({} with no ceiling)."""
    if ceiling is None or ceiling <= 0:
        return {}
    return {name: torch.from_numpy(np.asarray(values) > ceiling) for name, values in densities.items()}
