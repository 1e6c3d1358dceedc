"""Dependencies: the app state, the authenticated caller, role guards, the rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from api.auth import Principal, Role
from api.state import AppState


# Dependencies are async on purpose: they do no I/O, and FastAPI runs sync ones on a worker
# thread, a hop that cost more than the known-user lookup itself.
async def get_state(request: Request) -> AppState:
    """The state loaded in the lifespan."""
    return request.app.state.graphrisk


State = Annotated[AppState, Depends(get_state)]


async def current_principal(
    state: State,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """Authenticate, then apply the caller's rate limit (429 with Retry-After when over)."""
    principal = state.keys.authenticate(x_api_key, authorization)
    allowed, wait = state.limiter.allow(principal.name)
    if not allowed:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded",
                            {"Retry-After": str(max(1, round(wait)))})  # fmt: skip
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


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
