"""Errors users see. Each says what is wrong and, where it applies, which file."""

from __future__ import annotations

from pathlib import Path


class LatentpediaError(Exception):
    """Base class: the CLI prints these as one clear line, without a traceback."""


class InvalidInputError(LatentpediaError):
    """Input (a file, a folder, an argument) that cannot be used as given."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class UnknownHookError(LatentpediaError):
    """A hook point name the model does not have."""


class NotFoundError(LatentpediaError, LookupError):
    """A model, source, latent or record the atlas does not have (HTTP 404)."""
