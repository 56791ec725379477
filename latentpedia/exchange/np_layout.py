"""Neuronpedia's public dataset export layout and the names shared by import and export.

    <root>/config/explanation_type.jsonl, explanation_model_type.jsonl, ...   (lookup tables)
    <root>/<modelId>/vocab.json.gz                                          (latentpedia only)
    <root>/<modelId>/<sourceId>/model.jsonl, source.jsonl, sourceset.jsonl
    <root>/<modelId>/<sourceId>/features/batch-<n>.jsonl.gz       (Neuron rows, 1024 latents each)
    <root>/<modelId>/<sourceId>/explanations/batch-<n>.jsonl.gz   (Explanation rows)
    <root>/<modelId>/<sourceId>/activations/batch-<n>.jsonl.gz    (Activation rows)

Neuronpedia's importer keeps only the keys that are columns of its tables, so latentpedia puts
what Neuronpedia has no column for (exact histograms, token ids, example kinds, scores, votes)
under one extra key, `EXTRA`, of the same rows; an importer that does not know it loses nothing
it could store.
"""

from __future__ import annotations

import re
from pathlib import Path

from latentpedia.errors import InvalidInputError

EXTRA = "latentpedia"
TABLE_DIRS = ("features", "explanations", "activations")
BATCH = 1024  # latents per features/activations file, explanations per explanations file
VOCAB_FILE = "vocab.json.gz"
CONFIG_FILES = ("explanation_type", "explanation_model_type", "explanation_score_type",
                "explanation_score_model", "eval_type")  # fmt: skip
_BATCH_NUMBER = re.compile(r"batch-(\d+)\.jsonl(\.gz)?$")


def is_source_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "source.jsonl").is_file() or (path / "features").is_dir())


def source_dirs(root: Path) -> list[Path]:
    """The source folders under `root`: the export root (model/source), a model folder, or
    one source folder. InvalidInputError if there is none."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError("not a folder (expected a Neuronpedia dataset export)", root)
    if is_source_dir(root):
        return [root]
    found = [p for p in sorted(root.iterdir()) if is_source_dir(p)]
    found += [s for m in sorted(root.iterdir()) if m.is_dir() for s in sorted(m.iterdir()) if is_source_dir(s)]
    if not found:
        raise InvalidInputError(
            "no Neuronpedia source folders here (a source folder holds source.jsonl or features/)", root
        )
    return found


def batch_files(source_dir: Path, table: str) -> list[Path]:
    """`<table>/batch-<n>.jsonl[.gz]` files in batch order (other names ignored)."""
    folder = source_dir / table
    if not folder.is_dir():
        return []
    numbered = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _BATCH_NUMBER.search(p.name))]
    return [p for _, p in sorted(numbered)]


def source_set_name(source: str) -> str:
    """Neuronpedia's source set of a source id: "6-res-jb" -> "res-jb"."""
    head, _, rest = source.partition("-")
    return rest if head.isdigit() and rest else source
