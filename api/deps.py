"""Dependencies: the app state, the authenticated caller, role guards, the rate limit; and the
route class every router uses, which reads JSON bodies strictly."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, Response, status
from fastapi.routing import APIRoute

from api.auth import Principal, Role
from api.state import AppState


# Dependencies are async on purpose: they do no I/O, and FastAPI runs sync ones on a worker
# thread, a hop that cost more than the known-user lookup itself.
async def get_state(request: Request) -> AppState:
    """The state loaded in the lifespan."""
    return request.app.state.graphrisk


State = Annotated[AppState, Depends(get_state)]


async def current_principal(
    request: Request,
    state: State,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """The caller (authenticated by :class:`api.auth.AuthGate`, or here for routes it does not
    guard), then the caller's rate limit (429 with Retry-After when over)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        principal = state.keys.authenticate(x_api_key, authorization)
    allowed, wait = state.limiter.allow(principal.name)
    if not allowed:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded",
                            {"Retry-After": str(max(1, round(wait)))})  # fmt: skip
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def optional_principal(request: Request) -> Principal | None:
    """The caller :class:`api.auth.AuthGate` authenticated on a route where a key is optional."""
    return getattr(request.state, "principal", None)


MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]


def require(*roles: Role):  # type: ignore[no-untyped-def]
    """A dependency admitting only ``roles`` (admin always); others get 403."""
    allowed = frozenset(roles) | {Role.ADMIN}

    async def guard(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role.value} may not do this")
        return principal

    return guard


ScoreCaller = Annotated[Principal, Depends(require(Role.ONBOARDING))]
Onboarding = Annotated[Principal, Depends(require(Role.ONBOARDING, Role.INVESTIGATOR))]
Investigator = Annotated[Principal, Depends(require(Role.INVESTIGATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def _reject_constant(name: str) -> Any:
    # NaN and ±Infinity are not JSON (RFC 8259); Python's parser accepts them, and a NaN that
    # reached a response could not be rendered (a 500 whose log held the whole body).
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


class StrictJSONRequest(Request):
    """A request whose JSON body may not hold ``NaN``, ``Infinity`` or ``-Infinity``."""

    async def json(self) -> Any:
        """The parsed body; FastAPI turns the decode error into a 422 (``json_invalid``)."""
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_constant=_reject_constant)
        return self._json


class StrictJSONRoute(APIRoute):
    """The route class of every router: bodies are parsed by :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The default handler, given a strict request."""
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
