"""Tokenized corpora kept on disk, keyed by everything their windows depend on.

Reading and tokenizing a corpus is a fixed cost of every build: the default corpus parses the
whole standard library (~650 files) before its first token. The windows a build makes are kept
in `data_dir()/corpora/<key>.npz` and read back by the next build that asks for the same thing.
The key is a hash of: the corpus (the default's seed, Python version and a fingerprint of the
standard-library files it reads; a user corpus's resolved path and the names, sizes and
modification times of its files; the text field), the tokenizer (its full serialized definition),
the BOS and separator ids, the window length and token budget, and the source of the code that
turns text into windows. Change any of them and the corpus is tokenized again.

The default corpus's documents (the standard library parsed into docstrings and source, the
slow part of reading it) are kept too, as one gzipped JSON file keyed by the standard library's
fingerprint, so a new tokenizer, budget or window length costs only the tokenizing.

Entries are written to a temporary file and renamed into place; an unreadable entry is ignored
and rewritten. Only the most recent MAX_ENTRIES windows files are kept.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np


class Windows(Protocol):
    """What is kept of a tokenized corpus (corpus/windows.py's TokenizedCorpus; this module
    imports no other corpus module, so the default corpus can use it without an import loop)."""

    windows: np.ndarray
    composition: dict


TokenizedCorpus = TypeVar("TokenizedCorpus", bound=Windows)

FORMAT_VERSION = 1
MAX_ENTRIES = 16
_FINGERPRINT_ATTR = "_latentpedia_fingerprint"


def cache_dir() -> Path:
    from latentpedia.config import data_dir

    return data_dir() / "corpora"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's serialized definition (vocabulary, merges, normalizer, added
    tokens; a slow tokenizer: its class and vocabulary), computed once per tokenizer object."""
    known = getattr(tokenizer, _FINGERPRINT_ATTR, None)
    if known:
        return known
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:
        text = type(tokenizer).__name__ + json.dumps(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256(text.encode()).hexdigest()
    try:
        setattr(tokenizer, _FINGERPRINT_ATTR, digest)
    except AttributeError:  # a tokenizer that takes no attributes: hash it each time
        pass
    return digest


def files_fingerprint(paths: Iterable[Path]) -> str:
    """sha256 over each file's path, size and modification time (no file is read)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """sha256 of the modules that turn documents into windows: a change to them is a new corpus."""
    return files_fingerprint(Path(__file__).with_name(name) for name in ("default.py", "readers.py", "windows.py"))


def corpus_files(corpus: str | Path) -> list[Path]:
    """The files a user corpus is read from (a file, or every file under a folder), sorted."""
    path = Path(corpus).resolve()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True).encode()).hexdigest()[:32]


def corpus_key(corpus: str, files: list[Path], tokenizer: Any, **settings: Any) -> str:
    """The cache key of `corpus` read from `files` and tokenized by `tokenizer` with `settings`
    (seed, text field, BOS and separator ids, window length, budget)."""
    return cache_key({
        "corpus": corpus, "files": files_fingerprint(files), "python": sys.version, "code": code_fingerprint(),
        "tokenizer": tokenizer_fingerprint(tokenizer), **settings,
    })  # fmt: skip


def load(key: str, build: Callable[[np.ndarray, dict], TokenizedCorpus]) -> TokenizedCorpus | None:
    """The cached corpus of `key` made by `build(windows, composition)`, or None (missing or unreadable)."""
    path = cache_dir() / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            windows = np.ascontiguousarray(data["windows"], dtype=np.int32)
            composition = json.loads(str(data["composition"]))
    except (OSError, KeyError, ValueError):
        return None
    os.utime(path)  # most recently used: kept longest
    return build(windows, composition)


def save(key: str, corpus: TokenizedCorpus) -> None:
    """Keep `corpus` under `key` (atomically); a failure to write only costs the next build time."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
        with os.fdopen(handle, "wb") as out:
            np.savez(out, windows=corpus.windows, composition=np.array(json.dumps(corpus.composition)))
        os.replace(tmp, folder / f"{key}.npz")
    except OSError:
        return
    _prune(folder)


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        old.unlink(missing_ok=True)


def cached_documents(key: str, make: Callable[[], tuple[list, list]], document: type) -> tuple[list, list]:
    """Two lists of documents (the default corpus's parsed standard library) kept as gzipped
    JSON under `key`, else `make()` kept there; `document` rebuilds each from (text, kind, origin)."""
    path = cache_dir() / f"documents-{key}.json.gz"
    try:
        parts = json.loads(gzip.decompress(path.read_bytes()))
        return tuple([document(*fields) for fields in part] for part in parts)  # type: ignore[return-value]
    except (OSError, ValueError, TypeError):
        pass
    made = make()
    payload = [[(d.text, d.kind, d.origin) for d in part] for part in made]
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".tmp-", dir=cache_dir())
        with os.fdopen(handle, "wb") as out:
            out.write(gzip.compress(json.dumps(payload).encode(), compresslevel=1))
        os.replace(tmp, path)
        for old in cache_dir().glob("documents-*.json.gz"):  # an earlier standard library's
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass
    return made


def cached(key: str | None, make: Callable[[], TokenizedCorpus], build: Callable[[np.ndarray, dict], TokenizedCorpus]) -> TokenizedCorpus:
    """The corpus of `key` from the cache (made by `build(windows, composition)`), else `make()`
    kept under `key` (None: not cached)."""
    found = load(key, build) if key is not None else None
    if found is not None:
        return found
    corpus = make()
    if key is not None:
        save(key, corpus)
    return corpus
