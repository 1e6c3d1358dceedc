"""API keys (``X-API-Key`` or ``Authorization: Bearer``) mapped to roles, and the gate that
checks them before a request's body is read, limiting and auditing failed attempts per address."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.ratelimit import RateLimiter
from graphrisk.config import ApiKey
from graphrisk.errors import AuditUnavailableError

log = logging.getLogger("graphrisk.api")


class Role(StrEnum):
    """What a caller may do."""

    ONBOARDING = "onboarding"  # score applicants and users
    INVESTIGATOR = "investigator"  # rings, explanations, decisions
    ADMIN = "admin"  # everything, including unmasked identifier tokens and models


# Roles that may see identifier tokens (pseudonymous ids) rather than masked values only.
REVEAL_ROLES = frozenset({Role.ADMIN})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a stable name (hash of its key), a role, and the key's holder.

    ``name`` stays the key hash (rate limits and the audit trail's actor key on it, and it never
    changes when a holder is renamed); ``holder`` is the person the key was issued to, when the
    key configuration names one.
    """

    name: str
    role: Role
    holder: str | None = None

    @property
    def investigator(self) -> str:
        """Who to credit with a decision: the holder's name, else the key hash."""
        return self.holder or self.name


class KeyRing:
    """Looks up API keys by constant-time comparison of their SHA-256.

    ``keys`` maps a key to a role (``"investigator"``) or to an :class:`graphrisk.config.ApiKey`
    (or a mapping like it) that also names the holder.
    """

    def __init__(self, keys: Mapping[str, str | ApiKey | Mapping[str, str]]) -> None:
        self._by_hash: dict[bytes, tuple[Role, str | None]] = {}
        for key, spec in keys.items():
            if isinstance(spec, str):
                entry = (Role(spec), None)
            else:
                parsed = spec if isinstance(spec, ApiKey) else ApiKey.model_validate(spec)
                entry = (Role(parsed.role), parsed.name)
            self._by_hash[hashlib.sha256(key.encode()).digest()] = entry

    def lookup(self, key: str) -> Principal | None:
        """The caller whose key is ``key``, or ``None``."""
        digest = hashlib.sha256(key.encode()).digest()
        for known, (role, holder) in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return Principal(name=f"key:{digest.hex()[:12]}", role=role, holder=holder)
        return None

    def authenticate(self, api_key: str | None, authorization: str | None) -> Principal:
        """The caller behind the presented credentials.

        Raises:
            HTTPException: 401 when none or an unknown one is presented.
        """
        key = presented_key(api_key, authorization)
        if not key:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing credentials", {"WWW-Authenticate": "Bearer"}
            )
        principal = self.lookup(key)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "invalid credentials", {"WWW-Authenticate": "Bearer"}
            )
        return principal


def presented_key(api_key: str | None, authorization: str | None) -> str | None:
    """The key a request presents: ``X-API-Key``, else a bearer token; ``None`` if neither."""
    key = api_key
    if key is None and authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token:
            key = token.strip()
    return key or None


class AuthGate:
    """ASGI middleware: authenticates requests before anything reads their body.

    Under ``required`` prefixes a request without a known key gets 401 at once (its body, maybe
    100 MB, is never read) and the failure is audited (``auth_failed``, with the client address).
    Under ``optional`` prefixes (``/readyz``) no key is fine (an anonymous caller) and a wrong one
    is a failure as above. An address with more than ``failures_per_minute`` failures gets 429
    with ``Retry-After`` for any key until its budget refills: checked before the key, so a guess
    made while blocked learns nothing. The principal is left in the request's state
    (``request.state.principal``) for the route's dependencies.
    """

    def __init__(
        self,
        app: ASGIApp,
        failures_per_minute: int,
        required: tuple[str, ...] = ("/v1/",),
        optional: tuple[str, ...] = ("/readyz",),
    ) -> None:
        self.app = app
        self.failures = RateLimiter(failures_per_minute)
        self.required = required
        self.optional = optional

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = getattr(getattr(scope.get("app"), "state", None), "graphrisk", None)
        path = scope.get("path", "")
        required = path.startswith(self.required)
        if scope["type"] != "http" or state is None or not (required or path.startswith(self.optional)):
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode(): v.decode("latin-1")
            for k, v in scope["headers"]
            if k in (b"x-api-key", b"authorization")
        }
        key = presented_key(headers.get("x-api-key"), headers.get("authorization"))
        if key is None and not required:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        wait = self.failures.wait(address)
        if wait > 0:
            response = JSONResponse({"detail": "too many failed authentications; retry later"}, 429,
                                    {"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip
            await response(scope, receive, send)
            return
        principal = state.keys.lookup(key) if key else None
        if principal is None:
            self.failures.allow(address)  # takes one token of the address's failure budget
            reason = "invalid credentials" if key else "missing credentials"
            try:
                state.audit.append(f"client:{address}", "anonymous", "auth_failed", path[:256],
                                   {"reason": reason, "client": address, "method": scope.get("method")})  # fmt: skip
            except AuditUnavailableError:
                if required:
                    raise  # api.audit_guard answers 503: no unaudited answer on /v1/
                log.warning(
                    "failed authentication from %s not audited: the audit log is unavailable", address
                )
            response = JSONResponse({"detail": reason}, 401, {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
