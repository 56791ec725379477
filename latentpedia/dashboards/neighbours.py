"""Nearest latents by decoder cosine: within a source and across sources at the same hook.

Neuronpedia stores each latent's `topkCosSimIndices` / `topkCosSimValues`: the latents of its
own source whose decoder directions are closest (the latent itself first). We compute those, and
the same list in every other built source at the same hook (e.g. two SAE widths at layer 14),
as the last step of a build and for existing atlases with `latentpedia neighbours`. One
normalised matmul per pair of sources, in blocks; each pair is written in one transaction and
skipped when already stored (resumable).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from latentpedia.engine.resolve import source_from_record
from latentpedia.errors import InvalidInputError
from latentpedia.store import families
from latentpedia.store.records import SourceRecord

TOP_K = 10
HIST_BINS = 20


def unit_rows(directions: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm (zero rows stay zero)."""
    directions = directions.float()
    return directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cosine_topk(a: torch.Tensor, b: torch.Tensor, k: int = TOP_K, *, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `a` [da, d], the `k` rows of `b` [db, d] with the highest cosine:
    (indices int32 [da, k'], values float32 [da, k']), best first, k' = min(k, db)."""
    a, b = unit_rows(a), unit_rows(b)
    k = min(k, b.shape[0])
    indices, values = [], []
    for start in range(0, a.shape[0], block):
        top = torch.topk(a[start : start + block] @ b.T, k, dim=1)
        indices.append(top.indices.to(torch.int32))
        values.append(top.values)
    return torch.cat(indices).numpy(), torch.cat(values).numpy()


def best_match_summary(values: np.ndarray, live: np.ndarray | None = None, *, low: float = -1.0) -> tuple[float | None, dict]:
    """Median and histogram of each latent's best match (column 0), over `live` latents."""
    best = values[:, 0] if values.ndim == 2 and values.shape[1] else np.zeros(0)
    if live is not None:
        best = best[live]
    best = best[np.isfinite(best)]
    if not len(best):
        return None, {"edges": [], "counts": [], "n": 0}
    counts, edges = np.histogram(np.clip(best, low, 1.0), bins=HIST_BINS, range=(low, 1.0))
    summary = {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts], "n": int(len(best))}
    return float(np.median(best)), summary


def same_hook_pairs(records: Sequence[SourceRecord]) -> list[tuple[SourceRecord, SourceRecord]]:
    """Every ordered (source, other) pair of built sources reading the same hook, self included."""
    ready = [r for r in records if r.status == "ready"]
    return [(a, b) for a in ready for b in ready if a.hook_name == b.hook_name]


def update_neighbours(store, model, *, names: Sequence[str] | None = None, k: int = TOP_K, rebuild: bool = False,
                      log: Callable[[str], None] = print) -> list[tuple[str, str]]:  # fmt: skip
    """Store decoder-cosine neighbours for every same-hook pair involving `names` (default: all
    of the model's built sources) that is not stored yet; the pairs computed."""
    records = store.list_sources(model.id)
    wanted = set(names) if names is not None else None
    done: list[tuple[str, str]] = []
    decoders: dict[int, torch.Tensor | None] = {}
    for a, b in same_hook_pairs(records):
        if wanted is not None and not ({a.name, b.name} & wanted):
            continue
        if not rebuild and families.has_pair(store, a.id, b.id, "decoder_cos"):
            continue
        start = time.perf_counter()
        if not all(_decoder(model, record, decoders, log) is not None for record in (a, b)):
            continue
        indices, values = cosine_topk(decoders[a.id], decoders[b.id], k)
        column = 1 if a.id == b.id and values.shape[1] > 1 else 0  # a latent's best other match
        median, hist = best_match_summary(values[:, column:])
        meta = {"hist": hist, "seconds": round(time.perf_counter() - start, 3), "self_first": a.id == b.id}
        families.write_pair(store, a.id, b.id, "decoder_cos", indices, values, median=median, meta=meta)
        log(f"  neighbours {a.name} -> {b.name}: median best decoder cosine {median if median is not None else float('nan'):.3f}")
        done.append((a.name, b.name))
    return done


def _decoder(model, record: SourceRecord, decoders: dict, log: Callable[[str], None]) -> torch.Tensor | None:
    """The source's decoder (cached in `decoders`), or None with a note if its weights are not
    here (a static source imported without them): its neighbours are skipped, not the build."""
    if record.id not in decoders:
        try:
            decoders[record.id] = source_from_record(model, record).decoder()
        except InvalidInputError as err:
            log(f"  neighbours of {record.name} skipped: {err}")
            decoders[record.id] = None
    return decoders[record.id]
