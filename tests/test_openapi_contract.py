"""The OpenAPI spec is the API's contract: it changes only on purpose.

The spec the app serves is compared with tests/snapshots/openapi.json. A deliberate change (a new
route, a new field) is made by regenerating the snapshot and committing it with the change:

    LATENTPEDIA_WRITE_OPENAPI=1 .venv/bin/python -m pytest -q tests/test_openapi_contract.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from latentpedia.web import create_app

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.json"


def _spec(tmp_path: Path) -> dict:
    return json.loads(json.dumps(create_app(f"sqlite:///{tmp_path / 'atlas.db'}").openapi(), sort_keys=True))


def _operations(spec: dict) -> dict[str, str]:
    return {f"{method.upper()} {path}": json.dumps(op, sort_keys=True) for path, ops in spec["paths"].items() for method, op in ops.items()}


def test_openapi_matches_the_snapshot(tmp_path):
    spec = _spec(tmp_path)
    if os.environ.get("LATENTPEDIA_WRITE_OPENAPI"):
        SNAPSHOT.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    new, old = _operations(spec), _operations(expected)
    changes = [f"added {k}" for k in sorted(set(new) - set(old))] + [f"removed {k}" for k in sorted(set(old) - set(new))]
    changes += [f"changed {k}" for k in sorted(set(new) & set(old)) if new[k] != old[k]]
    schemas, known = spec["components"]["schemas"], expected["components"]["schemas"]
    changes += [f"schema {name} differs" for name in sorted(set(schemas) | set(known)) if schemas.get(name) != known.get(name)]
    assert not changes, "the OpenAPI spec changed (regenerate the snapshot if on purpose; see the module doc):\n" + "\n".join(changes)


def test_the_snapshot_check_sees_a_change(tmp_path):
    spec = _spec(tmp_path)
    path, ops = next(iter(spec["paths"].items()))
    before = _operations(spec)
    next(iter(ops.values()))["summary"] = "something else"
    assert _operations(spec) != before
