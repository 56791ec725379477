"""Atomic, resumable build checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import torch

CRASH_ENV = "LATENTPEDIA_CRASH_AT"  # test hook: "<point>:<n>" kills the process with SIGKILL


def build_key(spec: dict[str, Any]) -> str:
    """A stable id for a build's inputs: a resumed build must have the same key."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, then rename over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, key: str) -> dict | None:
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False)
    return state if state.get("key") == key else None


_hits: dict[str, int] = {}


def crash_point(point: str) -> None:
    """Kill this process (SIGKILL) at the n-th pass through `point` when asked to by the env (tests)."""
    wanted = os.environ.get(CRASH_ENV, "")
    if not wanted.startswith(point + ":"):
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == int(wanted.split(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)
