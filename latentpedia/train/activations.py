"""Cached activations as a stream of shuffled training batches.

Reads the float16 shards a build pass caches (`shard-*.safetensors`, {hook: [tokens, width]},
BOS already excluded; see build/actcache.py) from any folder holding them. Shards are visited
in a seeded random order, epoch after epoch; tokens go through a bounded shuffle buffer, so
memory stays at `buffer_tokens` rows per hook whatever the cache size. The same seed gives the
same batches, which is what makes training resumable (`skip` replays the stream).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from latentpedia.errors import InvalidInputError


class ActivationSource:
    """Shuffled [batch, width] float32 batches of the hooks `hooks` from a shard folder."""

    def __init__(self, folder: str | Path, hooks: list[str], *, buffer_tokens: int = 131_072, seed: int = 0):
        self.folder = Path(folder)
        self.shards = sorted(self.folder.glob("shard-*.safetensors"))
        if not self.shards:
            raise InvalidInputError("no cached activations (shard-*.safetensors) here; build with --cache-acts HOOK", self.folder)
        self.hooks = list(dict.fromkeys(hooks))
        self.buffer_tokens, self.seed = buffer_tokens, seed
        self.widths, self.n_tokens = self._inspect()

    def _inspect(self) -> tuple[dict[str, int], int]:
        """Widths per hook and tokens per epoch; clear errors for missing hooks."""
        with safe_open(str(self.shards[0]), framework="pt") as f:
            present = set(f.keys())
            missing = [h for h in self.hooks if h not in present]
            if missing:
                raise InvalidInputError(f"hook(s) {', '.join(missing)} not cached here (cached: {', '.join(sorted(present))})", self.folder)
            widths = {h: int(f.get_slice(h).get_shape()[-1]) for h in self.hooks}
        manifest = self.folder / "manifest.json"
        if manifest.exists():
            return widths, int(json.loads(manifest.read_text())["tokens"])
        total = 0
        for shard in self.shards:
            with safe_open(str(shard), framework="pt") as f:
                total += int(f.get_slice(self.hooks[0]).get_shape()[0])
        return widths, total

    def _read(self, shard: Path) -> dict[str, torch.Tensor]:
        with safe_open(str(shard), framework="pt") as f:
            return {h: f.get_tensor(h) for h in self.hooks}

    def _shard_stream(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        while True:  # epochs
            for i in torch.randperm(len(self.shards), generator=generator).tolist():
                yield self._read(self.shards[i])

    def batches(self, batch_size: int, *, skip: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Endless stream of {hook: [batch_size, width] float32}; the first `skip` are dropped."""
        if batch_size > self.n_tokens:
            raise InvalidInputError(f"batch size {batch_size} exceeds the {self.n_tokens} cached tokens", self.folder)
        if batch_size > self.buffer_tokens // 2:
            raise InvalidInputError(f"batch size {batch_size} exceeds half the shuffle buffer ({self.buffer_tokens} tokens)")
        generator = torch.Generator().manual_seed(self.seed)
        buffer: dict[str, torch.Tensor] = {h: torch.empty(0, self.widths[h], dtype=torch.float16) for h in self.hooks}
        emitted = 0
        for shard in self._shard_stream(generator):
            buffer = {h: torch.cat([buffer[h], shard[h]]) for h in self.hooks}
            while len(buffer[self.hooks[0]]) >= self.buffer_tokens:
                out, buffer = _split_shuffled(buffer, self.buffer_tokens // 2, generator)
                for start in range(0, len(out[self.hooks[0]]) - batch_size + 1, batch_size):
                    emitted += 1
                    if emitted > skip:
                        yield {h: t[start:start + batch_size].float() for h, t in out.items()}
            if self._small_cache(buffer):
                yield from self._drain_small(buffer, batch_size, generator, skip)
                return

    def _small_cache(self, buffer: dict[str, torch.Tensor]) -> bool:
        return self.n_tokens < self.buffer_tokens and len(buffer[self.hooks[0]]) >= self.n_tokens

    def _drain_small(self, data: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator,
                     skip: int) -> Iterator[dict[str, torch.Tensor]]:
        """A cache smaller than the buffer: shuffle it whole, every epoch, forever."""
        count = 0
        while True:
            perm = torch.randperm(len(data[self.hooks[0]]), generator=generator)
            for start in range(0, len(perm) - batch_size + 1, batch_size):
                count += 1
                if count > skip:
                    yield {h: t[perm[start:start + batch_size]].float() for h, t in data.items()}


def _split_shuffled(buffer: dict[str, torch.Tensor], n_out: int, generator: torch.Generator):
    """Shuffle the buffer; return (first n_out rows, the rest)."""
    perm = torch.randperm(len(next(iter(buffer.values()))), generator=generator)
    out = {h: t[perm[:n_out]] for h, t in buffer.items()}
    rest = {h: t[perm[n_out:]] for h, t in buffer.items()}
    return out, rest
