"""Opaque page cursors for list routes: an offset the client hands back unchanged."""

from __future__ import annotations

import base64

from fastapi.exceptions import RequestValidationError


def encode_cursor(offset: int) -> str:
    """The cursor of the page starting at ``offset``."""
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    """The offset a cursor names (0 for none).

    Raises:
        RequestValidationError: not a cursor this API issued (answered 422 like any bad query).
    """
    if not cursor:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(cursor.encode()).decode()))
    except ValueError:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "invalid cursor", "type": "value_error"}]
        ) from None
