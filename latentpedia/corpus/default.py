"""The default offline corpus: text that exists wherever Python is installed.

Prose comes from CPython's own documentation (`pydoc_data.topics`) and the docstrings of the
standard library; code comes from the standard library's source (tests excluded). Documents are
deduplicated by content, shuffled with a fixed seed and interleaved so that prose and code each
make about half of the tokens. The composition is recorded with the corpus.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import random
import sys
import sysconfig
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SEED = 1234
_SKIP_PARTS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3"}
_MIN_CHARS = 200
_MAX_DOC_CHARS = 20_000


@dataclass(frozen=True)
class Document:
    text: str
    kind: str  # "prose" | "code"
    origin: str  # e.g. "pydoc:for", "stdlib:json/decoder.py"


def pydoc_documents() -> list[Document]:
    """CPython's language reference topics, one document per topic."""
    from pydoc_data.topics import topics

    return [Document(text, "prose", f"pydoc:{name}") for name, text in sorted(topics.items())]


def stdlib_files() -> list[Path]:
    """The standard library's .py files, tests and vendored trees excluded, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, dirs, names in os.walk(root):  # skipped folders are never entered (site-packages is large)
        dirs[:] = [d for d in dirs if d not in _SKIP_PARTS]
        files += [Path(folder, name) for name in names if name.endswith(".py") and name not in _SKIP_PARTS]
    return sorted(files)


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_STATEMENT_LISTS = ("body", "handlers", "orelse", "finalbody", "cases")  # where statements nest


def _definitions(tree: ast.AST) -> Iterator[ast.AST]:
    """The functions and classes of `tree` in `ast.walk`'s breadth-first order, visiting only
    statements (definitions never sit inside expressions): most of a module's nodes are skipped."""
    queue = deque([tree])
    while queue:
        node = queue.popleft()
        for name in node._fields:
            if name not in _STATEMENT_LISTS:
                continue
            for child in getattr(node, name):
                queue.append(child)
                if isinstance(child, _DEFINITIONS):
                    yield child


def _docstrings(tree: ast.AST) -> list[str]:
    docs = (ast.get_docstring(n, clean=True) for n in (tree, *_definitions(tree)))
    return [d for d in docs if d and len(d) > 40]


def _split(text: str, limit: int = _MAX_DOC_CHARS) -> list[str]:
    """Cut long text at blank lines into pieces of at most ~limit characters."""
    pieces, current = [], []
    size = 0
    for block in text.split("\n\n"):
        if size + len(block) > limit and current:
            pieces.append("\n\n".join(current))
            current, size = [], 0
        current.append(block)
        size += len(block) + 2
    if current:
        pieces.append("\n\n".join(current))
    return pieces


@functools.lru_cache(maxsize=1)
def stdlib_documents() -> tuple[tuple[Document, ...], tuple[Document, ...]]:
    """(prose, code): docstrings of each module as prose, the module source as code (parsed once,
    then read from the data dir while the standard library and this code are unchanged)."""
    from latentpedia.corpus import cache

    files = stdlib_files()
    key = cache.cache_key({"stdlib": cache.files_fingerprint(files), "python": sys.version, "code": cache.code_fingerprint()})
    prose, code = cache.cached_documents(key, lambda: _parse_stdlib(files), Document)
    return tuple(prose), tuple(code)


def _parse_stdlib(files: list[Path]) -> tuple[list[Document], list[Document]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    prose: list[Document] = []
    code: list[Document] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
        docs = "\n\n".join(_docstrings(tree))
        prose += [Document(p, "prose", f"stdlib-doc:{rel}") for p in _split(docs) if len(p) >= _MIN_CHARS]
        code += [Document(p, "code", f"stdlib:{rel}") for p in _split(source) if len(p) >= _MIN_CHARS]
    return prose, code


def dedupe(docs: list[Document]) -> list[Document]:
    seen: set[str] = set()
    unique = []
    for doc in docs:
        digest = hashlib.sha1(doc.text.strip().encode()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(doc)
    return unique


def default_documents(seed: int = DEFAULT_SEED) -> tuple[list[Document], list[Document]]:
    """(prose, code) document lists, deduplicated and shuffled with `seed`."""
    prose_std, code = stdlib_documents()
    prose = dedupe([*pydoc_documents(), *prose_std])
    code = dedupe(list(code))
    rng = random.Random(seed)
    rng.shuffle(prose)
    rng.shuffle(code)
    return prose, code


def interleave(prose: list[Document], code: list[Document]) -> Iterator[Document]:
    """Yield documents from both lists, always from the one with fewer characters so far."""
    streams = {"prose": iter(prose), "code": iter(code)}
    totals = {"prose": 0, "code": 0}
    while streams:
        kind = min(streams, key=lambda k: totals[k])
        doc = next(streams[kind], None)
        if doc is None:
            del streams[kind]
            continue
        totals[kind] += len(doc.text)
        yield doc
