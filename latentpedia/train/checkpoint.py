"""Resumable training state on disk, shared by the SAE and the transcoder trainers: the config's
identity, the step, the RNG and each run's state, written atomically (a crash mid-write leaves the
previous checkpoint)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_training_state(path: Path, identity: Any, step: int, generator: torch.Generator, runs: dict[Any, Any]) -> None:
    """Write the state to `path` (via a temporary file and an atomic rename)."""
    state = {"identity": identity, "step": step, "rng": generator.get_state(), "runs": runs}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_training_state(path: Path, identity: Any) -> dict[str, Any] | None:
    """The saved state if there is one for the same `identity` (else None: start afresh)."""
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False)
    return state if state["identity"] == identity else None
