"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import State
from api.schemas import HealthResponse
from graphrisk.errors import StoreError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
def healthz() -> HealthResponse:
    """The process is up."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
def readyz(state: State) -> JSONResponse:
    """The store answers and a model is loaded; 503 otherwise (with what is missing)."""
    detail: dict[str, object] = state.describe()
    try:
        state.store.verify()
        detail["store"] = "ok"
    except StoreError as exc:
        detail["store"] = str(exc)
    audit_ok, detail["audit"] = state.audit.health()
    detail["audit_chain"] = state.audit.chain_status()
    ready = detail["store"] == "ok" and detail["model_version"] is not None and audit_ok
    body = HealthResponse(status="ok" if ready else "unavailable", detail=detail)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
