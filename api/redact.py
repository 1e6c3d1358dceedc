"""Validation errors that never repeat what was submitted.

FastAPI's default 422 echoes each invalid ``input`` (the applicant's email, phone, document
number, address; 734 MB of it for a large body) and pydantic's ``ctx``; and a 422 whose input
held ``NaN`` could not even be rendered, so it became a 500 whose logged traceback held the whole
body. Here a 422 keeps FastAPI's shape, ``{"detail": [{"loc", "msg", "type"}]}``, and nothing
else: no ``input``, no ``ctx``, messages scrubbed of any submitted string, bounded in size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_ISSUES = 20
MAX_TEXT = 200
MIN_SCRUBBED = 3  # shorter submitted strings ("GB", "1") are too common to be personal data


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string (and dict key) in a parsed JSON value."""
    if depth > 64:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v, depth + 1)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def scrub(text: str, submitted: Any) -> str:
    """``text`` without any string found in ``submitted`` (replaced by ``…``), bounded in length."""
    for s in sorted({s.strip() for s in _strings(submitted)}, key=len, reverse=True):
        if len(s) >= MIN_SCRUBBED and s in text:
            text = text.replace(s, "…")
    return text[:MAX_TEXT]


def _loc_part(part: Any) -> str | int:
    # A loc may name a key the caller sent (extra="forbid"): kept, so the caller can find it,
    # but bounded.
    return part if isinstance(part, int) else str(part)[:64]


def validation_issues(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The issues of ``exc`` as ``loc``, ``msg`` and ``type`` only."""
    submitted = getattr(exc, "body", None)
    issues = []
    for e in exc.errors()[:MAX_ISSUES]:
        msg = str(e.get("msg", "invalid"))
        ctx = e.get("ctx") or {}
        if e.get("type") == "json_invalid" and isinstance(ctx.get("error"), str):
            msg = f"{msg}: {ctx['error']}"  # the parser's words ("NaN is not a JSON number"), no input
        issues.append({
            "loc": [_loc_part(p) for p in e.get("loc", ())],
            "msg": scrub(msg, submitted),
            "type": str(e.get("type", "value_error")),
        })  # fmt: skip
    return issues


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 in FastAPI's shape, echoing no submitted value (registered for RequestValidationError)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_issues(exc)}, status_code=422)
