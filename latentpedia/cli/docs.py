"""The generated parts of the docs: tables written from the registries between marker comments.

    python -m latentpedia.cli.docs            # rewrite them
    python -m latentpedia.cli.docs --check    # exit 1 (naming the files) when one is out of date

A page holds `<!-- generated: NAME -->` … `<!-- end generated: NAME -->`; only the text between
them is replaced. tests/test_registries.py fails while a page is out of date.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from latentpedia.experiments import registry as experiments_registry
from latentpedia.interp import registry as interp_registry

DOCS = Path(__file__).resolve().parents[2] / "docs"
# page -> {marker name: table builder}
GENERATED: dict[str, dict[str, Callable[[], str]]] = {
    "interp.md": {"interp-registry": interp_registry.docs_tables},
    "experiments.md": {"experiments-registry": experiments_registry.docs_table},
}


def splice(text: str, name: str, table: str) -> str:
    """`text` with the block between NAME's markers replaced by `table`; ValueError without markers."""
    start, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"no '{start}' … '{end}' markers")
    return pattern.sub(lambda _m: f"{start}\n{table}\n{end}", text, count=1)


def generated_pages(docs: Path = DOCS) -> dict[Path, tuple[str, str]]:
    """{page: (current text, text with fresh tables)}."""
    out = {}
    for page, blocks in GENERATED.items():
        path = docs / page
        current = path.read_text(encoding="utf-8")
        fresh = current
        for name, build in blocks.items():
            fresh = splice(fresh, name, build())
        out[path] = (current, fresh)
    return out


def main(argv: list[str]) -> int:
    stale = {path: fresh for path, (current, fresh) in generated_pages().items() if current != fresh}
    if "--check" in argv:
        for path in stale:
            print(f"{path} is out of date: run python -m latentpedia.cli.docs", file=sys.stderr)
        return 1 if stale else 0
    for path, fresh in stale.items():
        path.write_text(fresh, encoding="utf-8")
    print(f"rewrote {len(stale)} page(s){': ' if stale else ''}{', '.join(p.name for p in stale)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
