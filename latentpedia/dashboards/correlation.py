"""Pearson correlation between every pair of latents of a source, over all tokens.

Sums and the Gram matrix X^T X are accumulated exactly over every token (float64). Dense
batches use a matmul; sparse ones (SAE latents) a sparse product, so a 16k-latent SAE costs
what its active pairs cost. Above `max_dense` latents the Gram matrix would not fit in memory:
then only a deterministic subsample of tokens is kept (sparse) and correlations are computed from
it blockwise at the end; the result says which.
"""

from __future__ import annotations

import warnings

import torch

MAX_DENSE = 16384
SPARSE_BELOW = 0.05  # use the sparse product when fewer than this fraction of entries are non-zero
FOLD = 32  # dense batches summed in float32 before folding into the float64 Gram (every FOLD-th batch number)


class Correlations:
    def __init__(self, d: int, *, max_dense: int = MAX_DENSE, sample_every: int = 4, sample_cap: int = 32768):
        self.d = d
        self.exact = d <= max_dense
        self.sample_every, self.sample_cap = sample_every, sample_cap
        self.n = 0
        self.sums = torch.zeros(d, dtype=torch.float64)
        self.gram = torch.zeros((d, d), dtype=torch.float64 if d <= 4096 else torch.float32) if self.exact else None
        self.partial = torch.zeros((d, d)) if self.exact and d <= 4096 else None  # float32, folded every FOLD batches
        self.unfolded = 0
        self.sample: list[torch.Tensor] = []
        self.sampled = 0
        self.batches = 0

    def update(self, x: torch.Tensor) -> None:
        """x [N, d] activations of N tokens."""
        self.batches += 1
        if not self.exact:
            self._keep_sample(x)
            return
        self.n += x.shape[0]
        self.sums += x.sum(0, dtype=torch.float64)
        nonzero = (x != 0).float().mean().item()
        if nonzero < SPARSE_BELOW:
            self._add_sparse(x)
        elif self.partial is not None:
            self.partial.addmm_(x.T, x)
            self.unfolded += 1
            if self.batches % FOLD == 0:  # by batch number, so a shard starting on a multiple of FOLD folds alike
                self._fold()
        else:
            self.gram.addmm_(x.T, x)

    def _fold(self) -> None:
        """Add the float32 partial Gram into the float64 total."""
        self.gram += self.partial
        self.partial.zero_()
        self.unfolded = 0

    def _add_sparse(self, x: torch.Tensor) -> None:
        """Gram update from each token's active latents only: every pair of non-zeros that
        share a row (token) adds its product. Sequential index_add keeps it deterministic."""
        rows, cols = torch.nonzero(x, as_tuple=True)
        if rows.numel() == 0:
            return
        vals = x[rows, cols]
        per_row = torch.bincount(rows, minlength=x.shape[0])
        reps = per_row[rows]  # each non-zero pairs with every non-zero of its row
        left = torch.repeat_interleave(torch.arange(len(rows)), reps)
        first = torch.repeat_interleave(torch.cumsum(per_row, 0)[rows] - reps, reps)
        right = first + torch.arange(len(left)) - torch.repeat_interleave(torch.cumsum(reps, 0) - reps, reps)
        self.gram.view(-1).index_add_(0, cols[left] * self.d + cols[right], (vals[left] * vals[right]).to(self.gram.dtype))

    def _keep_sample(self, x: torch.Tensor) -> None:
        if self.batches % self.sample_every or self.sampled >= self.sample_cap:
            return
        take = x[: self.sample_cap - self.sampled]
        self.sample.append(take.to_sparse_coo())
        self.sampled += take.shape[0]

    def top(self, k: int = 10, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(indices [d, k], values [d, k]) of the most correlated other latents, and a note."""
        if self.partial is not None:
            self._fold()
        if self.exact:
            n, sums, diag = self.n, self.sums, torch.diagonal(self.gram).to(torch.float64)
            gram_rows = lambda a, b: self.gram[a:b].to(torch.float64)  # noqa: E731
            note = {"correlation": "pearson over all tokens"}
        else:
            n, sums, diag, gram_rows = self._sample_gram()
            note = {"correlation": f"pearson over a sample of {n} tokens (source wider than {MAX_DENSE})"}
        n = max(n, 1)
        mean = sums / n
        std = (diag / n - mean**2).clamp_min(0).sqrt()
        return (*self._top_blocks(gram_rows, mean, std, n, k, block), note)

    def _sample_gram(self):
        """Token count, sums, Gram diagonal and a block-row function from the kept sample
        (a sparse [n, d] matrix: blocks of the Gram matrix are sparse products)."""
        if not self.sample:
            zeros = torch.zeros(self.d, dtype=torch.float64)
            return 0, zeros, zeros, lambda a, b: torch.zeros((b - a, self.d), dtype=torch.float64)
        sample = torch.cat(self.sample).coalesce()
        values = sample.values().to(torch.float64)
        cols = sample.indices()[1]
        sums = torch.zeros(self.d, dtype=torch.float64).index_add_(0, cols, values)
        diag = torch.zeros(self.d, dtype=torch.float64).index_add_(0, cols, values**2)
        transposed = sample.t().coalesce()

        def gram_rows(a: int, b: int) -> torch.Tensor:
            part = transposed.index_select(0, torch.arange(a, b)).coalesce()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                return torch.sparse.mm(part, sample).to_dense().to(torch.float64)

        return sample.shape[0], sums, diag, gram_rows

    def _top_blocks(self, gram_rows, mean, std, n, k, block):
        d = self.d
        live = std > 1e-12
        k = min(k, max(d - 1, 0))
        idx, val = torch.zeros((d, k), dtype=torch.int64), torch.zeros((d, k))
        for a in range(0, d, block):
            b = min(a + block, d)
            cov = gram_rows(a, b) / n - mean[a:b, None] * mean[None, :]
            corr = cov / (std[a:b, None] * std[None, :]).clamp_min(1e-30)
            corr[:, ~live] = float("-inf")
            corr[torch.arange(b - a), torch.arange(a, b)] = float("-inf")
            top = torch.topk(corr, k, dim=1)
            idx[a:b], val[a:b] = top.indices, top.values.float()
        return idx, val

    def merge(self, other: "Correlations") -> None:
        """Add the sums of another part of the token stream (the one that follows this one).

        Exact sums add (float64); token samples are concatenated in stream order up to the cap."""
        self.batches = max(self.batches, other.batches)
        if not self.exact:
            for piece in other.sample:
                room = self.sample_cap - self.sampled
                if room <= 0:
                    break
                take = piece if piece.shape[0] <= room else piece.to_dense()[:room].to_sparse_coo()
                self.sample.append(take)
                self.sampled += take.shape[0]
            return
        for part in (self, other):
            if part.partial is not None and part.unfolded:
                part._fold()
        self.n += other.n
        self.sums += other.sums
        self.gram += other.gram

    def state(self) -> dict:
        return {"n": self.n, "sums": self.sums, "gram": self.gram, "partial": self.partial, "unfolded": self.unfolded, "sample": self.sample, "sampled": self.sampled, "batches": self.batches}

    def load(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
