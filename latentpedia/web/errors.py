"""The one shape of every JSON error the atlas answers: `{"error": message, "detail": ...}`.

Neuronpedia's API answers an error as `{"error": "<message>"}` (its route wrappers, in
apps/webapp/lib); FastAPI's clients, our own pages' scripts and our tests read `detail`. Every
handler that answers an error in JSON builds its body with `error_body`, so both keys are
always there: `error` is a one-line message; `detail` is what FastAPI would have sent (the
same message, or for a refused request the list of validation errors, each with `loc`, `msg`
and `type`). Status codes and headers are the handlers' own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

MAX_LISTED = 5  # validation errors spelled out in `error`; the rest are counted


def error_body(detail: Any) -> dict[str, Any]:
    """`{"error": one-line message, "detail": detail}` for a `detail` FastAPI would send."""
    return {"error": error_message(detail), "detail": detail}


def error_response(detail: Any, status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON error answer with `error_body(detail)`."""
    return JSONResponse(error_body(detail), status_code=status, headers=dict(headers) if headers else None)


def error_message(detail: Any) -> str:
    """`detail` as one line: a string as it is (whitespace runs made one space), a list of
    validation errors as `where: what; ...` (the first MAX_LISTED, then how many more)."""
    if isinstance(detail, list):
        shown = "; ".join(_validation_line(e) for e in detail[:MAX_LISTED])
        more = len(detail) - MAX_LISTED
        return f"{shown}; and {more} more" if more > 0 else shown or "invalid request"
    if isinstance(detail, Mapping) and "msg" in detail:
        return _validation_line(detail)
    return _one_line(detail if isinstance(detail, str) else str(detail))


def _validation_line(error: Any) -> str:
    if not isinstance(error, Mapping):
        return _one_line(str(error))
    where = _location(error.get("loc") or ())
    what = _one_line(str(error.get("msg", error)))
    return f"{where}: {what}" if where else what


def _location(loc: Any) -> str:
    """`("body", "features", 0, "index")` -> `body.features[0].index`."""
    out = ""
    for part in loc if isinstance(loc, list | tuple) else (loc,):
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())
