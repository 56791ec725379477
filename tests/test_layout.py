"""The package layout holds: lower layers never import higher ones, and imports have no loops.

Read from the source with `ast` (nothing is imported): every `import latentpedia...` anywhere in a
module counts, inside functions too; only `if TYPE_CHECKING:` blocks are left out of the loop
check (they never run), though they still count for the layer check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "latentpedia"

# The layers, lowest first. A package may import packages of lower layers only (and itself).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "config", "security"),
    ("models", "store"),
    ("sources", "corpus"),
    ("engine",),
    ("dashboards",),
    ("train", "interp", "experiments", "exchange"),
    ("lab",),
    ("jobs",),  # jobs run the work of every layer below (the demo's stages include lab's matching)
    ("web",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported latentpedia module, runs at run time) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    static_only = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        runtime = id(node) not in static_only
        found += [(name, runtime) for name in names if name == "latentpedia" or name.startswith("latentpedia.")]
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "latentpedia"


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module a dotted import name lands in (`a.b.func` -> `a.b`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_every_package_has_a_layer():
    packages = {layer_of(m) for m in all_modules()} - {"latentpedia"}
    assert packages <= set(RANK), f"packages without a layer in LAYERS: {sorted(packages - set(RANK))}"


def test_no_upward_imports():
    modules = all_modules()
    upward = []
    for module, path in modules.items():
        here = layer_of(module)
        for name, _ in imports_of(path):
            target = resolve(name, modules)
            there = layer_of(target) if target else None
            if here in RANK and there in RANK and there != here and RANK[there] >= RANK[here]:
                upward.append(f"{module} imports {name} ({here} may not import {there})")
    assert not upward, "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> modules it imports at run time (a package's `__init__` counts as its own module)."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name, modules) for name, runtime in imports_of(path) if runtime}
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def test_no_import_loops():
    assert _cycles(import_graph()) == []


@pytest.mark.parametrize(
    "graph, expected",
    [({"a": {"b"}, "b": {"a"}}, [["a", "b"]]), ({"a": {"b"}, "b": {"c"}, "c": set()}, []), ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]])],
)
def test_cycle_finder_finds_loops(graph, expected):
    assert _cycles(graph) == expected


def test_web_runs_no_torch_itself():
    """web/ is routes, schemas, pages and templates: torch work lives in engine/ and below."""
    offenders = []
    for path in (PACKAGE / "web").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(PACKAGE)} imports {n}" for n in names if n == "torch" or n.startswith("torch.")]
    assert not offenders, "\n".join(offenders)
