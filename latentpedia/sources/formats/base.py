"""What a format loader is and what it hands back.

A loader is one small class: `name`, `detect(folder)` (is this folder in my format?) and
`read(folder, hook_name)` returning a `RawSAE`: canonical `SAEWeights` plus where things came
from, so that `validate.check_sae` can name the file, the key and the layout of any problem.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from latentpedia.sources.sae import SAEWeights


@dataclass
class RawSAE:
    """An SAE as read from disk, before validation."""

    weights: SAEWeights
    weights_path: Path
    cfg_path: Path | None = None
    hook_name: str | None = None  # None: the files do not say; load_sae asks for hook_name
    output_hook: str | None = None  # transcoders only
    hook_origin: str = "config"  # how hook_name was found, for the metadata
    cfg: dict[str, Any] = field(default_factory=dict)  # JSON-able config as stored
    origins: dict[str, tuple[str, bool]] = field(default_factory=dict)  # field -> (file key, transposed)
    declared: dict[str, int | None] = field(default_factory=dict)  # d_in / d_sae / d_out the cfg states
    skip: torch.Tensor | None = None  # transcoders with a linear skip: [d_in, d_out], input @ skip joins the output

    @property
    def config_file(self) -> Path:
        """The file to blame for a configuration problem (the weights file if there is no cfg)."""
        return self.cfg_path or self.weights_path


class Format(ABC):
    """One on-disk SAE format."""

    name: ClassVar[str]
    # Files that identify the format inside an SAE folder (used in error messages).
    marker_files: ClassVar[tuple[str, ...]]

    @abstractmethod
    def detect(self, folder: Path) -> bool:
        """True when `folder` holds an SAE in this format."""

    @abstractmethod
    def read(self, folder: Path, hook_name: str | None) -> RawSAE:
        """Read the SAE in `folder`; `hook_name` is the caller's override (may be None)."""

    def resolve(self, folder: Path) -> Path:
        """The SAE folder to read when `folder` holds several (e.g. a sparsify run)."""
        return folder

    def select(self, folder: Path, path: Path) -> Path:
        """What `read` gets when the user named `path` (a file in `folder`, or `folder` itself)."""
        return self.resolve(folder)


def take(state: dict[str, torch.Tensor], key: str, origins: dict[str, tuple[str, bool]],
         name: str, *, transpose: bool = False) -> torch.Tensor | None:
    """`state[key]` under canonical `name` (transposed if asked), recording where it came from."""
    if key not in state:
        return None
    origins[name] = (key, transpose)
    tensor = state[key]
    return tensor.T if transpose and tensor.ndim == 2 else tensor


def first_key(state: dict[str, Any], *keys: str) -> str | None:
    """The first of `keys` present in `state`."""
    return next((key for key in keys if key in state), None)


def as_int(value: Any) -> int | None:
    """An int from a cfg value or a 0-d tensor (None stays None)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return int(value.item())
    return int(value)


def broadcast(tensor: torch.Tensor | None, d_sae: int) -> torch.Tensor | None:
    """A scalar (0-d or 1-element) per-SAE value as a [d_sae] vector; vectors unchanged."""
    if tensor is None or tensor.numel() != 1 or d_sae == 1:
        return tensor
    return tensor.reshape(()).expand(d_sae).clone()
