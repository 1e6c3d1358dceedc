"""Keyed hashing of sensitive identifiers.

HMAC-SHA256 under a secret key from configuration: without the key nobody can confirm a guess
(a plain hash of a phone number is reversible by enumerating all phone numbers). The label
is part of the message so that the same string as an email and as a document never collide.
Ids are the first 128 bits in hex: collisions need ~2^64 values.
"""

from __future__ import annotations

import hashlib
import hmac

from graphrisk.graph_schema import NodeLabel


class Pseudonymiser:
    """Turns a normalised sensitive value into a stable, keyed node id."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonymisation key must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymiser(key=<hidden>)"

    def token(self, label: NodeLabel, normalised_value: str) -> str:
        """The id of the ``label`` node for this normalised value."""
        msg = f"{label.value}\x1f{normalised_value}".encode()
        # hmac.digest is the one-shot C path: same MAC as hmac.new(...).digest(), a third of the cost.
        return hmac.digest(self._key, msg, hashlib.sha256).hex()[:32]
