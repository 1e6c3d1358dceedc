"""Sealed node handles: how the console names an identifier without showing its token.

An identifier's store id is a pseudonymous token (a keyed hash of the email, phone…). Shown to an
investigator it would let them follow one person across rings and responses, which
``api/routes/rings.py`` prevents with per-response handles (``n1``, ``n2``). The console needs
more: a click must expand that very node in a later request, possibly on another worker. So a
handle here is the token encrypted under a server key and bound to a *scope* (the caller and
the view, e.g. ``key:ab12…|ring:ring-7``):

- the same identifier has the same handle within one scope (the graph can merge an expansion's
  nodes with the ones already drawn), and unrelated handles in any other scope (another ring,
  another investigator), so handles cannot be joined across views;
- only the server can open a handle, and only in the scope it was made for.

The construction is SIV (deterministic authenticated encryption): the IV is an HMAC of scope and
plaintext, which doubles as the tag; the keystream is HMAC-SHA256 in counter mode. Both keys are
derived from the pseudonymisation key, which every worker shares.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "h."
_IV_BYTES = 16


class HandleError(ValueError):
    """A handle that was not made by this server for this scope."""


class Handles:
    """Seals ``(label, token)`` pairs into scope-bound handles and opens them again."""

    def __init__(self, secret: bytes) -> None:
        root = hmac.digest(secret, b"graphrisk console handles v1", hashlib.sha256)
        self._mac = hmac.digest(root, b"mac", hashlib.sha256)
        self._enc = hmac.digest(root, b"enc", hashlib.sha256)

    def _stream(self, iv: bytes, n: int) -> bytes:
        out = bytearray()
        counter = 0
        while len(out) < n:
            out += hmac.digest(self._enc, iv + counter.to_bytes(4, "big"), hashlib.sha256)
            counter += 1
        return bytes(out[:n])

    def _iv(self, scope: str, plain: bytes) -> bytes:
        return hmac.digest(self._mac, scope.encode() + b"\x00" + plain, hashlib.sha256)[:_IV_BYTES]

    def seal(self, scope: str, label: str, token: str) -> str:
        """The handle of identifier ``token`` (a node labelled ``label``) within ``scope``."""
        plain = f"{label}\x00{token}".encode()
        iv = self._iv(scope, plain)
        sealed = bytes(a ^ b for a, b in zip(plain, self._stream(iv, len(plain)), strict=True))
        return PREFIX + base64.urlsafe_b64encode(iv + sealed).decode().rstrip("=")

    def open(self, scope: str, handle: str) -> tuple[str, str]:
        """``(label, token)`` of a handle sealed for ``scope``.

        Raises:
            HandleError: malformed, tampered with, or sealed for another scope.
        """
        if not handle.startswith(PREFIX) or len(handle) > 512:
            raise HandleError("not a handle")
        body = handle[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            raise HandleError("not a handle") from None
        iv, sealed = raw[:_IV_BYTES], raw[_IV_BYTES:]
        if len(iv) < _IV_BYTES or not sealed:
            raise HandleError("not a handle")
        plain = bytes(a ^ b for a, b in zip(sealed, self._stream(iv, len(sealed)), strict=True))
        if not hmac.compare_digest(self._iv(scope, plain), iv):
            raise HandleError("handle not valid here")
        label, sep, token = plain.decode("utf-8", "replace").partition("\x00")
        if not sep:
            raise HandleError("not a handle")
        return label, token
