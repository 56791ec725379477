"""Activations captured during the build pass, cached to disk for SAE training.

Shards are float16 safetensors files of [tokens, width] per hook (BOS positions dropped), named
by the batch range they hold; they are flushed right before each checkpoint, so after a crash
the shards match the checkpoint cursor and later ones are deleted on resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file


class ActivationCache:
    def __init__(self, directory: Path, hooks: list[str], max_tokens: int):
        self.dir, self.hooks, self.max_tokens = Path(directory), sorted(hooks), max_tokens
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pending: dict[str, list[torch.Tensor]] = {h: [] for h in self.hooks}
        self.start_batch = 0
        self.tokens = 0

    def resume(self, batch: int, tokens: int) -> None:
        """Drop shards written after the checkpoint at `batch`."""
        self.start_batch, self.tokens = batch, tokens
        for shard in self.dir.glob("shard-*.safetensors"):
            if int(shard.stem.split("-")[2]) > batch:
                shard.unlink()

    def add(self, acts: dict[str, torch.Tensor]) -> None:
        if self.tokens >= self.max_tokens or not self.hooks:
            return
        room = self.max_tokens - self.tokens
        for hook in self.hooks:
            x = acts[hook][:, 1:, :].reshape(-1, acts[hook].shape[-1])[:room]
            self.pending[hook].append(x.to(torch.float16).contiguous())
        self.tokens += min(room, acts[self.hooks[0]][:, 1:].shape[0] * (acts[self.hooks[0]].shape[1] - 1))

    def flush(self, end_batch: int) -> None:
        if not any(self.pending.values()):
            self.start_batch = end_batch
            return
        tensors = {hook: torch.cat(parts) for hook, parts in self.pending.items()}
        path = self.dir / f"shard-{self.start_batch:07d}-{end_batch:07d}.safetensors"
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
        self.pending = {h: [] for h in self.hooks}
        self.start_batch = end_batch

    def finish(self, meta: dict) -> None:
        (self.dir / "manifest.json").write_text(json.dumps({"hooks": self.hooks, "tokens": self.tokens, **meta}, indent=2))
