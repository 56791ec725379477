"""Streaming selection of example windows per latent: top-k by max, and quantile samples.

Both work on window maxima `[B, d]` and per-token values `[B, T, d]` of one batch and keep,
for every latent, a fixed number of windows with their per-token values (float16), so memory
does not grow with the corpus. Only the slots that change are written, so a batch costs what
its new entries cost, not what the whole table holds.

Quantile samples are a bottom-k sample by a deterministic random key per (window, latent).
While streaming, each latent's range [0, scale) (`scale` the smallest power of two above its
running max, as in histogram.py) is cut into `fine_per_group * n_groups` equal fine intervals
and each keeps the `per_group` windows with the smallest (key, window). When the max outgrows the
scale, the scale doubles and pairs of fine intervals merge: bottom-k of a union is the bottom-k of
the parts' bottom-k, so the kept set depends only on the windows seen, not their order or
batching, and `merge` of two partial samples equals the sample of everything (what a sharded
build needs). At the end (`final`), each of the `n_groups` equal intervals of (0, max] takes the
`per_group` smallest keys among the kept windows whose value lies in it.

Top examples are ordered by (value descending, window ascending), so ties too are
order-independent.
"""

from __future__ import annotations

import torch

from latentpedia.dashboards.histogram import dyadic_scale

_MASK64 = (1 << 63) - 1


def window_keys(windows: torch.Tensor, latents: torch.Tensor, seed: int) -> torch.Tensor:
    """Deterministic pseudo-random keys in [0, 1) for each (window, latent) pair: [len(w), len(l)]."""
    x = windows.to(torch.int64)[:, None] * 0x9E3779B1 + latents.to(torch.int64)[None, :] * 0x85EBCA77 + seed
    for shift, mult in ((33, 0xFF51AFD7ED558CCD - (1 << 64)), (29, 0xC4CEB9FE1A85EC53 - (1 << 64))):
        x = (x ^ (x >> shift)) & _MASK64
        x = x * mult
    x = (x ^ (x >> 32)) & 0xFFFFFF
    return x.to(torch.float32) / float(1 << 24)


def _copy_changed(
    tokens: torch.Tensor, rows: torch.Tensor, order: torch.Tensor, acts: torch.Tensor, n_old: int
) -> None:
    """tokens[rows[i], s] <- candidate order[i, s] wherever it is not already slot s.

    Candidates < n_old are the row's current slots; the others are batch windows
    (candidate n_old + b reads acts[b, :, rows[i]]). Sources are read before anything is written.
    """
    slots = torch.arange(order.shape[1])
    r, s = torch.nonzero(order != slots, as_tuple=True)
    if r.numel() == 0:
        return
    src = order[r, s]
    lat = rows[r]
    from_old = src < n_old
    values = torch.empty((len(r), tokens.shape[2]), dtype=tokens.dtype)
    values[from_old] = tokens[lat[from_old], src[from_old]]
    new = ~from_old
    values[new] = acts[src[new] - n_old, :, lat[new]].to(tokens.dtype)
    tokens[lat, s] = values


def best_first(values: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Per-row slot order by value descending, then window ascending (empty slots last)."""
    by_window = torch.sort(windows, dim=1, stable=True).indices
    by_value = torch.sort(torch.gather(values, 1, by_window), dim=1, descending=True, stable=True).indices
    return torch.gather(by_window, 1, by_value)


def _composite(groups: torch.Tensor, keys: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """int64 sort key (group, key, window): a total order, so ties never depend on slot order.
    Empty entries (infinite key) sort last."""
    key_bits = (keys.clamp(max=1.0) * float(1 << 24)).to(torch.int64)  # keys are multiples of 2^-24
    comp = (groups.to(torch.int64) << 56) | (key_bits << 31) | windows.to(torch.int64).clamp_min(0)
    return torch.where(torch.isinf(keys), torch.full_like(comp, _MASK64), comp)


class TopExamples:
    """The k windows with the highest max activation, per latent (one entry per window).

    Slots are unordered; `ranked()` sorts them. A new window evicts the current minimum.
    """

    def __init__(self, d: int, k: int, window_len: int):
        self.values = torch.full((d, k), float("-inf"))
        self.windows = torch.full((d, k), -1, dtype=torch.int32)
        self.tokens = torch.zeros((d, k, window_len), dtype=torch.float16)

    def update(self, wmax: torch.Tensor, windows: torch.Tensor, acts: torch.Tensor) -> None:
        """wmax [B, d], windows [B] int, acts [B, T, d] per-token values (position 0 zeroed)."""
        floor = self.values.min(dim=1).values
        rows = torch.nonzero(((wmax > floor) & (wmax > 0)).any(dim=0)).flatten()
        if rows.numel() == 0:
            return
        k = self.values.shape[1]
        cand_vals = torch.cat([self.values[rows], wmax[:, rows].T], dim=1)
        cand_wins = torch.cat([self.windows[rows], windows.to(torch.int32).expand(len(rows), -1)], dim=1)
        kept = torch.zeros_like(cand_vals, dtype=torch.bool)
        kept.scatter_(1, best_first(cand_vals, cand_wins)[:, :k], True)
        # pair each evicted old slot with an entering new window, row by row (equal counts)
        ev_r, ev_s = torch.nonzero(~kept[:, :k], as_tuple=True)
        _, in_b = torch.nonzero(kept[:, k:], as_tuple=True)
        lat = rows[ev_r]
        self.values[lat, ev_s] = wmax[in_b, lat]
        self.windows[lat, ev_s] = windows.to(torch.int32)[in_b]
        self.tokens[lat, ev_s] = acts[in_b, :, lat].to(torch.float16)

    def ranked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values, windows, tokens) with each latent's slots sorted by value, descending."""
        order = best_first(self.values, self.windows)
        pick = torch.arange(len(order))[:, None]
        return self.values[pick, order], self.windows[pick, order], self.tokens[pick, order]

    def merge(self, other: "TopExamples") -> None:
        """Keep the k best of both (other holds other windows of the same latents)."""
        k = self.values.shape[1]
        values = torch.cat([self.values, other.values], dim=1)
        windows = torch.cat([self.windows, other.windows], dim=1)
        tokens = torch.cat([self.tokens, other.tokens], dim=1)
        order = best_first(values, windows)[:, :k]
        pick = torch.arange(len(order))[:, None]
        self.values, self.windows, self.tokens = values[pick, order], windows[pick, order], tokens[pick, order]

    def state(self) -> dict[str, torch.Tensor]:
        return {"values": self.values, "windows": self.windows, "tokens": self.tokens}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.values, self.windows, self.tokens = state["values"], state["windows"], state["tokens"]


class QuantileExamples:
    """Per latent, the `per_group` windows of smallest key in each fine interval of [0, scale);
    `final` turns them into up to `per_group` windows per equal interval of (0, max]."""

    def __init__(self, d: int, window_len: int, *, n_groups: int = 10, per_group: int = 5, seed: int = 0, fine_per_group: int = 2):
        self.n_groups, self.per_group, self.seed = n_groups, per_group, seed
        self.n_fine = n_groups * fine_per_group
        slots = self.n_fine * per_group
        self.scale = torch.zeros(d)
        self.keys = torch.full((d, slots), float("inf"))
        self.values = torch.zeros((d, slots))
        self.windows = torch.full((d, slots), -1, dtype=torch.int32)
        self.tokens = torch.zeros((d, slots, window_len), dtype=torch.float16)

    def fine_groups(self, values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Fine interval 0..n_fine-1 of each value given per-row scales ([r, n], [r]); exact
        under doubling of the scale (fine interval 2j and 2j+1 become j)."""
        return torch.floor(values / scale.clamp_min(1e-30)[:, None] * self.n_fine).clamp(0, self.n_fine - 1)

    def update(
        self, wmax: torch.Tensor, windows: torch.Tensor, acts: torch.Tensor, maxima: torch.Tensor, grew: torch.Tensor
    ) -> None:
        """Merge this batch's windows; `maxima` [d] is the running max including this batch
        (`grew` is kept for callers: rows are re-binned when their scale, not their max, grows)."""
        scale = dyadic_scale(maxima)
        rows = self._changed_rows(wmax, windows, scale)
        self.scale = scale
        if rows.numel() == 0:
            return
        n_old = self.keys.shape[1]
        new_vals = wmax[:, rows].T  # [r, B]
        new_keys = window_keys(windows, rows, self.seed).T
        new_keys = torch.where(new_vals > 0, new_keys, torch.full_like(new_keys, float("inf")))
        keys = torch.cat([self.keys[rows], new_keys], dim=1)
        vals = torch.cat([self.values[rows], new_vals], dim=1)
        wins = torch.cat([self.windows[rows], windows.to(torch.int32).expand(len(rows), -1)], dim=1)
        order, keep = self._select(keys, vals, wins, scale[rows])
        # empty slots keep whatever tokens they hold: only slots with a window are ever read
        order = torch.where(keep, order, torch.arange(n_old))
        pick = torch.arange(len(rows))[:, None]
        _copy_changed(self.tokens, rows, order, acts, n_old)
        self._set(rows, keys[pick, order], vals[pick, order], wins[pick, order], keep)

    def _set(self, rows, keys, vals, wins, keep) -> None:
        self.keys[rows] = torch.where(keep, keys, torch.full((), float("inf")))
        self.values[rows] = torch.where(keep, vals, torch.zeros(()))
        self.windows[rows] = torch.where(keep, wins, torch.full((), -1, dtype=torch.int32))

    def _changed_rows(self, wmax: torch.Tensor, windows: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Latents whose sample can change: scale grew, or a new window beats its interval's worst key."""
        grew = scale > self.scale
        active = torch.nonzero((wmax > 0).any(dim=0)).flatten()
        if active.numel() == 0:
            return torch.nonzero(grew).flatten()
        vals = wmax[:, active].T
        keys = window_keys(windows, active, self.seed).T
        worst = self.keys[active].view(len(active), self.n_fine, self.per_group)[:, :, -1]
        # <=: an equal key may still win on its window id; the selection settles it exactly
        enters = (keys <= torch.gather(worst, 1, self.fine_groups(vals, scale[active]).long())) & (vals > 0)
        changed = torch.zeros_like(grew)
        changed[active[enters.any(dim=1)]] = True
        return torch.nonzero(changed | grew).flatten()

    def _select(self, keys: torch.Tensor, vals: torch.Tensor, wins: torch.Tensor, scale: torch.Tensor):
        """For each row, slot order (fine-interval-major, then key and window) and which slots hold an entry."""
        groups = self.fine_groups(vals, scale)
        return _bottom_per_group(_composite(groups, keys, wins), groups, keys, self.n_fine, self.per_group)

    def merge(self, other: "QuantileExamples", maxima: torch.Tensor) -> None:
        """Add another partial sample of the same latents over other windows; `maxima` [d] is
        the max over both. The result equals the sample of all their windows."""
        scale = dyadic_scale(maxima)
        keys = torch.cat([self.keys, other.keys], dim=1)
        vals = torch.cat([self.values, other.values], dim=1)
        wins = torch.cat([self.windows, other.windows], dim=1)
        tokens = torch.cat([self.tokens, other.tokens], dim=1)
        order, keep = self._select(keys, vals, wins, scale)
        pick = torch.arange(len(order))[:, None]
        rows = torch.arange(len(order))
        self.tokens = tokens[pick, order]
        self._set(rows, keys[pick, order], vals[pick, order], wins[pick, order], keep)
        self.scale = scale

    def final(self, maxima: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(windows [d, n_groups*per_group] (-1 = empty), tokens [d, same, T]): slot g*per_group+r
        holds the r-th smallest key among kept windows with a value in ((g/n) max, ((g+1)/n) max]."""
        values = torch.where(self.windows >= 0, self.values, torch.zeros(()))
        scaled = values / maxima.clamp_min(1e-30)[:, None] * self.n_groups
        groups = (torch.ceil(scaled) - 1).clamp(0, self.n_groups - 1)
        keys = torch.where(self.windows >= 0, self.keys, torch.full((), float("inf")))
        chosen, keep = _bottom_per_group(_composite(groups, keys, self.windows), groups, keys, self.n_groups, self.per_group)
        pick = torch.arange(len(chosen))[:, None]
        windows = torch.where(keep, self.windows[pick, chosen], torch.full((), -1, dtype=torch.int32))
        return windows, self.tokens[pick, chosen]

    def state(self) -> dict[str, torch.Tensor]:
        return {"scale": self.scale, "keys": self.keys, "values": self.values, "windows": self.windows, "tokens": self.tokens}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.scale, self.keys, self.values, self.windows, self.tokens = (state[k] for k in ("scale", "keys", "values", "windows", "tokens"))


def _bottom_per_group(composite: torch.Tensor, groups: torch.Tensor, keys: torch.Tensor, n_groups: int, per_group: int):
    """Per row, the first `per_group` entries of each group in composite order: (chosen slot
    indices [r, n_groups*per_group], which of them hold an entry of that group)."""
    sorted_comp, order = torch.sort(composite, dim=1, stable=True)
    bounds = torch.arange(n_groups, dtype=torch.int64) << 56
    starts = torch.searchsorted(sorted_comp, bounds.expand(len(keys), -1).contiguous())
    slot = torch.arange(per_group)
    position = (starts[:, :, None] + slot).reshape(len(keys), -1)
    chosen = torch.gather(order, 1, position.clamp(max=keys.shape[1] - 1))
    group_of = torch.gather(groups, 1, chosen)
    keep = torch.isfinite(torch.gather(keys, 1, chosen)) & (group_of == torch.arange(n_groups).repeat_interleave(per_group))
    keep &= position < keys.shape[1]
    return chosen, keep
