"""Administration: reload what is published without a restart."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, status

from api.deps import Admin, State, StrictJSONRoute
from api.schemas import V1_ERRORS, ReloadOut, error_responses
from gnn.registry import RegistryError

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=StrictJSONRoute)


@router.post("/reload", response_model=ReloadOut, responses=error_responses(*V1_ERRORS))
async def reload(state: State, caller: Admin) -> ReloadOut:
    """Swap in what is published now (scores, rings, the production model), whether or not the
    watcher has noticed yet. Requests in flight finish on the previous snapshot.

    503 when a published file cannot be read; the previous snapshot stays served.
    """
    before = state.snapshot.describe()
    try:
        # Reading the tables takes seconds at scale: off the event loop.
        now = (await asyncio.to_thread(state.reload)).describe()
    except (OSError, ValueError, KeyError, RegistryError) as exc:
        state.reload_error = f"{type(exc).__name__}: {exc}"[:300]
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the published files could not be read; still serving the previous snapshot",
            {"Retry-After": "5"},
        ) from None
    state.audit.append(caller.name, caller.role.value, "reload", "state",
                       {"from": before["scores_snapshot"], "to": now["scores_snapshot"],
                        "model_version": now["model_version"]})  # fmt: skip
    return ReloadOut(previous=before, serving=now)
