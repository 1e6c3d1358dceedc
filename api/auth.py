"""API keys (``X-API-Key`` or ``Authorization: Bearer``) mapped to roles, and role guards."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException, status


class Role(StrEnum):
    """What a caller may do."""

    ONBOARDING = "onboarding"  # score applicants and users
    INVESTIGATOR = "investigator"  # rings, explanations, decisions
    ADMIN = "admin"  # everything, including unmasked identifier tokens and models


# Roles that may see identifier tokens (pseudonymous ids) rather than masked values only.
REVEAL_ROLES = frozenset({Role.ADMIN})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a stable name (hash of its key) and a role."""

    name: str
    role: Role


class KeyRing:
    """Looks up API keys by constant-time comparison of their SHA-256."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._by_hash = {hashlib.sha256(k.encode()).digest(): Role(r) for k, r in keys.items()}

    def authenticate(self, api_key: str | None, authorization: str | None) -> Principal:
        """The caller behind the presented credentials.

        Raises:
            HTTPException: 401 when none or an unknown one is presented.
        """
        key = api_key
        if key is None and authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token:
                key = token.strip()
        if not key:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing credentials", {"WWW-Authenticate": "Bearer"}
            )
        digest = hashlib.sha256(key.encode()).digest()
        for known, role in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return Principal(name=f"key:{digest.hex()[:12]}", role=role)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid credentials", {"WWW-Authenticate": "Bearer"}
        )
