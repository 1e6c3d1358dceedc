"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import Role
from api.deps import MaybePrincipal, State, StrictJSONRoute
from api.metrics import exposition
from api.schemas import HealthResponse, error_responses
from gnn.monitor.metrics import metrics_path
from graphrisk.errors import StoreError, StoreTimeoutError

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)
# Roles that see what /readyz found; anyone else (an orchestrator's probe) gets ready or not.
DETAIL_ROLES = frozenset({Role.ADMIN})
NOT_READY = {**error_responses(503)[503], "model": HealthResponse, "description": "not ready"}


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up. Answered on the event loop: it waits on no store, pool or thread."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=HealthResponse,
    responses={**error_responses(401, 429), 503: NOT_READY},
)
async def readyz(state: State, caller: MaybePrincipal) -> JSONResponse:
    """The store answers (within the store timeout) and a model is loaded; 503 otherwise.

    Only ``ok`` or ``unavailable`` in the body for most callers; an admin key also gets what was
    checked. Every caller gets what is served in headers, ``X-Model-Version`` and
    ``X-Scores-Snapshot`` (``<model version>@<stamp>``), so a deployment can check that a new
    publication was picked up (``api.state``: reloaded without a restart).
    """
    detail: dict[str, object] = state.describe()
    try:
        await state.store_calls.call(state.store.verify)
        state.store_ok_at = time.time()
        detail["store"] = "ok"
    except StoreTimeoutError:
        detail["store"] = "not answering"  # no driver message: it may name hosts and users
    except StoreError:
        detail["store"] = "unavailable"
    audit_ok, detail["audit"] = state.audit.health()
    detail["audit_chain"] = state.audit.chain_status()
    ready = detail["store"] == "ok" and detail["model_version"] is not None and audit_ok
    shown = detail if caller is not None and caller.role in DETAIL_ROLES else {}
    body = HealthResponse(status="ok" if ready else "unavailable", detail=shown)
    headers = {
        "X-Model-Version": str(detail["model_version"] or "none"),
        "X-Scores-Snapshot": str(detail["scores_snapshot"] or "none"),
    }
    if not ready:
        headers["Retry-After"] = state.store_calls.retry_after
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)


@router.get("/metrics", include_in_schema=False)
def metrics(state: State) -> Response:
    """Prometheus exposition (every worker's, when there are several), with the last monitoring run's."""
    return Response(exposition(metrics_path(state.settings.data_dir)), media_type=CONTENT_TYPE_LATEST)
