"""Streaming selection of example windows per latent: top-k by max, and quantile samples.

Both work on window maxima `[B, d]` and per-token values `[B, T, d]` of one batch and keep,
for every latent, a fixed number of windows with their per-token values (float16), so memory
does not grow with the corpus. Only the slots that change are written, so a batch costs what
its new entries cost, not what the whole table holds.

Quantile samples are a bottom-k sample by a deterministic random key per (window, latent):
within each of `n_groups` equal intervals of (0, running max] the `per_group` windows with the
smallest keys are kept. Entries are re-binned as the running max grows, so the sample is exact
for a fixed max and close to uniform otherwise.
"""

from __future__ import annotations

import torch

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
        kept = torch.zeros_like(cand_vals, dtype=torch.bool)
        kept.scatter_(1, torch.topk(cand_vals, k, dim=1, sorted=False).indices, True)
        # pair each evicted old slot with an entering new window, row by row (equal counts)
        ev_r, ev_s = torch.nonzero(~kept[:, :k], as_tuple=True)
        _, in_b = torch.nonzero(kept[:, k:], as_tuple=True)
        lat = rows[ev_r]
        self.values[lat, ev_s] = wmax[in_b, lat]
        self.windows[lat, ev_s] = windows.to(torch.int32)[in_b]
        self.tokens[lat, ev_s] = acts[in_b, :, lat].to(torch.float16)

    def ranked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values, windows, tokens) with each latent's slots sorted by value, descending."""
        order = torch.sort(self.values, dim=1, descending=True, stable=True).indices
        pick = torch.arange(len(order))[:, None]
        return self.values[pick, order], self.windows[pick, order], self.tokens[pick, order]

    def state(self) -> dict[str, torch.Tensor]:
        return {"values": self.values, "windows": self.windows, "tokens": self.tokens}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.values, self.windows, self.tokens = state["values"], state["windows"], state["tokens"]


class QuantileExamples:
    """Up to `per_group` random windows in each of `n_groups` equal intervals of (0, max]."""

    def __init__(self, d: int, window_len: int, *, n_groups: int = 10, per_group: int = 5, seed: int = 0):
        self.n_groups, self.per_group, self.seed = n_groups, per_group, seed
        slots = n_groups * per_group
        self.keys = torch.full((d, slots), float("inf"))
        self.values = torch.zeros((d, slots))
        self.windows = torch.full((d, slots), -1, dtype=torch.int32)
        self.tokens = torch.zeros((d, slots, window_len), dtype=torch.float16)

    def groups(self, values: torch.Tensor, maxima: torch.Tensor) -> torch.Tensor:
        """Interval index 0..n_groups-1 of each value given per-row maxima ([r, n], [r])."""
        scaled = values / maxima.clamp_min(1e-30)[:, None] * self.n_groups
        return (torch.ceil(scaled) - 1).clamp(0, self.n_groups - 1)

    def update(
        self, wmax: torch.Tensor, windows: torch.Tensor, acts: torch.Tensor, maxima: torch.Tensor, grew: torch.Tensor
    ) -> None:
        """Merge this batch's windows; `maxima` [d] is the running max including this batch and
        `grew` [d] marks latents whose max rose in it (their kept entries must be re-binned)."""
        rows = self._changed_rows(wmax, windows, maxima, grew)
        if rows.numel() == 0:
            return
        n_old = self.keys.shape[1]
        new_vals = wmax[:, rows].T  # [r, B]
        new_keys = window_keys(windows, rows, self.seed).T
        new_keys = torch.where(new_vals > 0, new_keys, torch.full_like(new_keys, float("inf")))
        keys = torch.cat([self.keys[rows], new_keys], dim=1)
        vals = torch.cat([self.values[rows], new_vals], dim=1)
        order, keep = self._select(keys, vals, maxima[rows])
        # empty slots keep whatever tokens they hold: only slots with a window are ever read
        order = torch.where(keep, order, torch.arange(n_old))
        wins = torch.cat([self.windows[rows], windows.to(torch.int32).expand(len(rows), -1)], dim=1)
        pick = torch.arange(len(rows))[:, None]
        _copy_changed(self.tokens, rows, order, acts, n_old)
        self.keys[rows] = torch.where(keep, keys[pick, order], torch.full((), float("inf")))
        self.values[rows] = torch.where(keep, vals[pick, order], torch.zeros(()))
        self.windows[rows] = torch.where(keep, wins[pick, order], torch.full((), -1, dtype=torch.int32))

    def _changed_rows(self, wmax: torch.Tensor, windows: torch.Tensor, maxima: torch.Tensor, grew: torch.Tensor) -> torch.Tensor:
        """Latents whose sample can change: max grew, or a new window beats its group's worst key."""
        active = torch.nonzero((wmax > 0).any(dim=0)).flatten()
        if active.numel() == 0:
            return active
        vals = wmax[:, active].T
        keys = window_keys(windows, active, self.seed).T
        worst = self.keys[active].view(len(active), self.n_groups, self.per_group)[:, :, -1]
        enters = (keys < torch.gather(worst, 1, self.groups(vals, maxima[active]).long())) & (vals > 0)
        return active[enters.any(dim=1) | grew[active]]

    def _select(self, keys: torch.Tensor, vals: torch.Tensor, maxima: torch.Tensor):
        """For each row, slot order (group-major, key-ascending) and which slots hold an entry."""
        groups = self.groups(vals, maxima)
        composite = torch.where(torch.isinf(keys), torch.full_like(keys, float("inf")), groups + keys)
        sorted_comp, order = torch.sort(composite, dim=1, stable=True)
        starts = torch.searchsorted(sorted_comp, torch.arange(self.n_groups, dtype=torch.float32).expand(len(keys), -1).contiguous())
        slot = torch.arange(self.per_group)
        index = (starts[:, :, None] + slot).reshape(len(keys), -1).clamp(max=keys.shape[1] - 1)
        chosen = torch.gather(order, 1, index)
        group_of = torch.gather(groups, 1, chosen)
        keep = torch.isfinite(torch.gather(keys, 1, chosen)) & (group_of == torch.arange(self.n_groups).repeat_interleave(self.per_group))
        keep &= (starts[:, :, None] + slot).reshape(len(keys), -1) < keys.shape[1]
        return chosen, keep

    def state(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys, "values": self.values, "windows": self.windows, "tokens": self.tokens}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.keys, self.values, self.windows, self.tokens = (state[k] for k in ("keys", "values", "windows", "tokens"))
