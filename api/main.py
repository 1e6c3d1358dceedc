"""The FastAPI application: ``create_app(settings)``; run with ``graphrisk serve``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit_guard import AuditGuard
from api.metrics import LATENCY, REQUESTS
from api.routes import health, rings, score, users
from api.state import AppState
from graphrisk import __version__
from graphrisk.config import Settings, load_settings
from graphrisk.errors import StoreError

STORE_CHECK_EVERY_S = 5.0


async def _watch_store(state: AppState) -> None:
    # Known-user scores are served from memory; this only tells handlers whether the store is
    # reachable (new applicants need it; known users' scores are marked stale without it).
    while True:
        try:
            await asyncio.to_thread(state.store.verify)
            state.store_ok_at = time.time()
        except StoreError:
            pass
        await asyncio.sleep(STORE_CHECK_EVERY_S)


class LimitsAndMetrics:
    """Refuses bodies over ``max_bytes`` (413) and records latency per route.

    A plain ASGI middleware: ``@app.middleware("http")`` wraps every request in extra tasks
    and doubled the floor latency.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                response = JSONResponse(
                    {"detail": f"request body over {self.max_bytes} bytes"}, status_code=413
                )
                await response(scope, receive, send)
                return
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(route).observe(time.perf_counter() - started)
            REQUESTS.labels(route, str(status_code)).inc()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the store, model and scores are opened in its lifespan."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await asyncio.to_thread(AppState.load, settings)
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(state.store.verify)
            state.store_ok_at = time.time()
        app.state.graphrisk = state
        watcher = asyncio.create_task(_watch_store(state))
        try:
            yield
        finally:
            watcher.cancel()
            state.close()

    app = FastAPI(
        title="graphrisk",
        version=__version__,
        description="Risk scores for onboarding; fraud rings and explanations for investigators.",
        lifespan=lifespan,
    )

    app.add_middleware(AuditGuard)  # inside LimitsAndMetrics: its 503s are counted
    app.add_middleware(LimitsAndMetrics, max_bytes=settings.max_request_bytes)
    for router in (health.router, score.router, users.router, rings.router):
        app.include_router(router)
    return app
