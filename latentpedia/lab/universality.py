"""The universality report of two matched sources, read from their stored matches (store/families.py).

    rows = agreement(store, model_id, "14-res-topk-2304", "14-res-topk-4.5k")   # both ways, both methods
    fams, n_with_family = example_families(store, model_id, "14-res-topk-2304", "14-res-topk-4.5k", n=5)

`agreement` answers "how many latents of A have a counterpart in B": for each direction and
method (decoder cosine, activation correlation) the median best match and the fraction of
latents whose best match reaches each threshold. Activation correlation counts only latents that
fired over the matched tokens (a latent that never varied has correlation 0 with everything);
decoder cosine counts every latent. `example_families` draws latents of A whose best matches in
B match back to them (a coarse latent and the finer latents it splits into, or a latent and
where it continues at a deeper layer), each with its best explanation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latentpedia.engine.resolve import source_record
from latentpedia.errors import InvalidInputError
from latentpedia.store import families
from latentpedia.store.families import BestExplanation

THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
PREFERRED = ("act_corr", "decoder_cos")


@dataclass(frozen=True)
class Agreement:
    """One direction (source → other) by one method."""

    source: str
    other: str
    method: str
    n: int  # latents counted (act_corr: those that fired)
    median: float | None
    fractions: dict[float, float]  # threshold -> fraction of counted latents whose best match reaches it


@dataclass
class FamilyExample:
    """A latent of A and its matches in B that match back to it (best first)."""

    source: str
    index: int
    explanation: BestExplanation | None
    method: str
    matches: list[tuple[str, int, float, BestExplanation | None]] = field(default_factory=list)  # (source, index, value, explanation)


def agreement(store, model_id: str, a: str, b: str, thresholds: tuple[float, ...] = THRESHOLDS) -> list[Agreement]:
    """A → B and B → A by every method stored; InvalidInputError if the pair was never matched."""
    ra, rb = source_record(store, model_id, a), source_record(store, model_id, b)
    out = []
    for r1, r2 in ((ra, rb), (rb, ra)):
        for method in families.METHODS:
            best = _best_values(store, r1.id, r2.id, method)
            if best is None:
                continue
            counted = best[best != 0] if method == "act_corr" else best
            fractions = {t: float((counted >= t).mean()) if len(counted) else 0.0 for t in thresholds}
            median = float(np.median(counted)) if len(counted) else None
            out.append(Agreement(r1.name, r2.name, method, int(len(counted)), median, fractions))
    if not out:
        raise InvalidInputError(f"{a} and {b} are not matched yet: run `latentpedia match {a} {b}`")
    return out


def _best_values(store, source_id: int, other_id: int, method: str) -> np.ndarray | None:
    rows = families.pair_rows(store, source_id, other_id, method)
    if not rows:
        return None
    return np.array([values[0] if values else 0.0 for _, values in rows.values()], dtype=np.float64)


def _best_of(rows: dict[int, tuple[list[int], list[float]]], index: int) -> int | None:
    indices = rows.get(index, ([], []))[0]
    return indices[0] if indices else None


def example_families(store, model_id: str, a: str, b: str, *, n: int = 5, min_match: float = 0.5, max_matches: int = 4,
                     seed: int = 0) -> tuple[list[FamilyExample], int]:  # fmt: skip
    """(`n` latents of A drawn at random (seeded) among those with a family in B, how many have
    one): a latent's family is its matches in B of at least `min_match` whose own best match is
    that latent (up to `max_matches`, best first), by the preferred stored method; explanations
    attached. Drawn, not the strongest: the strongest are often latents that fire on a handful
    of the matched tokens, where a correlation near 1 says little."""
    ra, rb = source_record(store, model_id, a), source_record(store, model_id, b)
    for method in PREFERRED:
        down, up = families.pair_rows(store, ra.id, rb.id, method), families.pair_rows(store, rb.id, ra.id, method)
        if down and up:
            break
    else:
        raise InvalidInputError(f"{a} and {b} are not matched both ways yet: run `latentpedia match {a} {b}`")
    found = []
    for i, (indices, values) in sorted(down.items()):
        back = [(j, v) for j, v in zip(indices, values, strict=True) if v >= min_match and _best_of(up, j) == i]
        if back:
            found.append((i, back[:max_matches]))
    rng = np.random.default_rng(seed)
    picked = [found[k] for k in sorted(rng.choice(len(found), size=min(n, len(found)), replace=False))] if found else []
    explained = families.best_explanations(store, {ra.id: {i for i, _ in picked}, rb.id: {j for _, back in picked for j, _ in back}})
    examples = [
        FamilyExample(ra.name, i, explained.get((ra.id, i)), method, [(rb.name, j, v, explained.get((rb.id, j))) for j, v in back])
        for i, back in picked
    ]
    return examples, len(found)
