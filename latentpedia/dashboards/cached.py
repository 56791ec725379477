"""Dashboards from cached activations instead of a second forward pass.

The build pass caches the residual stream of chosen hooks (build/actcache.py: float16 shards of
[tokens, width], BOS dropped, in corpus order). A source reading one of those hooks (an SAE just
trained on them) can be built from the cache: the windows it covers are rebuilt as
[windows, T, width] tensors with a zero BOS row (position 0 is left out of every statistic), so
the statistics are the ones a forward pass over those windows would give, up to float16
rounding of the inputs, at the cost of the SAE encoder alone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open

from latentpedia.errors import InvalidInputError


class CachedActivations:
    """The cached activations of `hooks` in `folder`, addressed by corpus window."""

    def __init__(self, folder: str | Path, hooks: list[str], window_len: int):
        self.folder, self.window_len = Path(folder), window_len
        self.hooks = sorted(set(hooks))
        manifest = self.folder / "manifest.json"
        if not manifest.exists():
            raise InvalidInputError("no finished activation cache here (manifest.json missing)", self.folder)
        self.manifest = json.loads(manifest.read_text())
        missing = sorted(set(self.hooks) - set(self.manifest["hooks"]))
        if missing:
            raise InvalidInputError(f"hook(s) {', '.join(missing)} not cached (cached: {', '.join(self.manifest['hooks'])})", self.folder)
        self.tensors = self._load()
        self.n_windows = len(next(iter(self.tensors.values()))) // (window_len - 1)

    @staticmethod
    def covers(folder: str | Path, hooks: list[str]) -> bool:
        manifest = Path(folder) / "manifest.json"
        return manifest.exists() and set(hooks) <= set(json.loads(manifest.read_text())["hooks"])

    def _load(self) -> dict[str, torch.Tensor]:
        shards = sorted(self.folder.glob("shard-*.safetensors"), key=lambda p: int(p.stem.split("-")[1]))
        parts: dict[str, list[torch.Tensor]] = {h: [] for h in self.hooks}
        for shard in shards:
            with safe_open(str(shard), framework="pt") as f:
                for hook in self.hooks:
                    parts[hook].append(f.get_tensor(hook))
        return {h: torch.cat(p) for h, p in parts.items()}

    def fingerprint(self) -> str:
        """What identifies these activations in a build key."""
        data = json.dumps({"dir": str(self.folder.resolve()), "manifest": self.manifest, "hooks": self.hooks}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def windows(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        """{hook: [hi - lo, T, width] float32} for windows lo..hi-1 (position 0 zero)."""
        if hi > self.n_windows:
            raise IndexError(f"windows up to {hi} requested; the cache covers {self.n_windows}")
        body = self.window_len - 1
        out = {}
        for hook, flat in self.tensors.items():
            chunk = flat[lo * body:hi * body].view(hi - lo, body, -1).float()
            out[hook] = torch.cat([chunk.new_zeros(hi - lo, 1, chunk.shape[-1]), chunk], dim=1)
        return out
