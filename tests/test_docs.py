"""Every extension point is documented: formats, architectures, CLI commands."""

from __future__ import annotations

from pathlib import Path

from latentpedia.cli import app
from latentpedia.sources.architectures import ARCHITECTURES
from latentpedia.sources.formats import FORMATS

ROOT = Path(__file__).resolve().parents[1]


def test_every_format_and_architecture_is_documented():
    page = (ROOT / "docs" / "formats.md").read_text()
    for name in [*FORMATS, *ARCHITECTURES]:
        assert f"`{name}`" in page, f"docs/formats.md does not document {name!r}"


def test_every_cli_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for command in app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        assert f"latentpedia {name}" in readme, f"README.md does not mention `latentpedia {name}`"


def test_every_cli_subcommand_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for group in app.registered_groups:
        for command in group.typer_instance.registered_commands:
            name = command.name or command.callback.__name__.replace("_", "-")
            assert f"latentpedia {group.name} {name}" in readme, f"README.md does not mention `latentpedia {group.name} {name}`"


# ---------------------------------------------------------------- docs/CONTRACTS.md "where does a new X go"

WHERE_KINDS = {"SAE format", "SAE architecture", "trainable architecture", "dashboard panel", "scorer", "explainer",
               "experiment", "page", "route", "CLI command", "migration"}  # fmt: skip


def _where_rows() -> dict[str, list[str]]:
    """{kind: [goes in, registered in, documented in, tested by]} from the CONTRACTS table."""
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    section = text.split("## Where does a new X go", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("a new …",) and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1:]
    return rows


def _ticked(cell: str) -> list[str]:
    return cell.split("`")[1::2]


def _defined_in(entry) -> set[str]:
    """The modules an entry of a registry comes from (a module, a class, an instance, a router)."""
    import inspect

    from fastapi import APIRouter

    if inspect.ismodule(entry):
        return {entry.__name__}
    if isinstance(entry, APIRouter):
        return {route.endpoint.__module__ for route in entry.routes if hasattr(route, "endpoint")}
    return {(entry if inspect.isclass(entry) else type(entry)).__module__}


def test_where_table_is_true():
    import importlib

    rows = _where_rows()
    assert WHERE_KINDS <= set(rows), f"missing rows: {sorted(WHERE_KINDS - set(rows))}"
    for kind, (goes_in, registered, documented, tested) in rows.items():
        paths = [p for p in _ticked(goes_in) if p.startswith("latentpedia/")]
        assert paths and all((ROOT / p).exists() for p in paths), f"{kind}: {paths} do not all exist"
        module_name, _, attr = _ticked(registered)[0].partition(":")
        registry = getattr(importlib.import_module(module_name), attr)
        if isinstance(registry, dict | tuple | list):
            entries = list(registry.values() if isinstance(registry, dict) else registry)
            assert entries, f"{kind}: {module_name}:{attr} is empty"
            folders = tuple(p.rstrip("/").removesuffix(".py").replace("/", ".") for p in paths)
            for entry in entries:
                modules = _defined_in(entry)
                assert modules and all(m.startswith(folders) for m in modules), f"{kind}: {entry!r} comes from {modules}, not {paths}"
        for path in _ticked(documented) + [p for p in _ticked(tested) if p.startswith("tests/")]:
            assert (ROOT / path).exists(), f"{kind}: {path} does not exist"
