"""The FastAPI application: ``create_app(settings)``; run with ``graphrisk serve``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

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

    @app.middleware("http")
    async def limits_and_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_request_bytes):
            return JSONResponse(
                {"detail": f"request body over {settings.max_request_bytes} bytes"}, status_code=413
            )
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        LATENCY.labels(name).observe(time.perf_counter() - started)
        REQUESTS.labels(name, str(response.status_code)).inc()
        return response

    for router in (health.router, score.router, users.router, rings.router):
        app.include_router(router)
    return app
