"""The FastAPI application: ``create_app(settings)``; run with ``graphrisk serve``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit_guard import AuditGuard
from api.auth import AuthGate
from api.console import mount_console
from api.metrics import LATENCY, REQUESTS, worker_exited
from api.redact import validation_error_handler
from api.routes import admin, console, decisions, health, rings, score, users
from api.state import AppState
from gnn.online import warm_store_plans
from graphrisk import __version__
from graphrisk.config import Settings, load_settings
from graphrisk.errors import StoreError

STORE_CHECK_EVERY_S = 5.0
log = logging.getLogger("graphrisk.api")


async def _watch_store(state: AppState) -> None:
    # Known-user scores are served from memory; this only tells handlers whether the store is
    # reachable (new applicants need it; known users' scores are marked stale without it).
    # Through the store's bounded pool: a hung store times the check out, it does not stop it.
    while True:
        try:
            await state.store_calls.call(state.store.verify)
            state.store_ok_at = time.time()
            await state.store_calls.call(warm_store_plans, state.store)
        except StoreError:
            pass
        await asyncio.sleep(STORE_CHECK_EVERY_S)


async def _watch_publications(state: AppState, every_s: float) -> None:
    # A refresh, a train or a rollback publishes new files; this swaps in a new snapshot once
    # they settle (AppState.reload_if_changed), off the event loop: reading a million scores
    # takes seconds, and requests keep being answered from the old snapshot meanwhile.
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(state.reload_if_changed, True)
        except Exception:
            log.exception("checking for a new publication failed")


class _BodyTooLargeError(Exception):
    """Raised from ``receive`` once a request body passes the limit."""


class LimitsAndMetrics:
    """Refuses bodies over ``max_bytes`` (413) and records latency per route.

    The limit holds while the body streams in: a declared ``Content-Length`` over it is refused
    before anything is read, and a chunked body is counted chunk by chunk and refused as soon as
    it passes the limit, whatever the app then did with the error (FastAPI turns exceptions
    from reading a body into a 400; that response is replaced by the 413).

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
                await self._too_large(send)
                return
        started = time.perf_counter()
        status_code = 500
        received = 0
        too_large = replaced = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLargeError(f"request body over {self.max_bytes} bytes")
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code, replaced
            if message["type"] == "http.response.start":
                if too_large:
                    replaced = True
                    status_code = 413
                    await self._too_large(send)
                    return
                status_code = message["status"]
            elif replaced:
                return  # the body of the response the 413 replaced
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLargeError:
            if status_code != 500 or replaced:
                raise
            status_code = 413
            await self._too_large(send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(route).observe(time.perf_counter() - started)
            REQUESTS.labels(route, str(status_code)).inc()

    async def _too_large(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        # The rest of the body is not read: the connection cannot be reused.
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Any store failure a route lets through: 503, with no driver message (it names hosts,
    # users and statements).
    state = getattr(request.app.state, "graphrisk", None)
    retry_after = state.store_calls.retry_after if state is not None else "5"
    return JSONResponse({"detail": "the graph store is unavailable; retry later"}, 503,
                        {"Retry-After": retry_after})  # fmt: skip


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the store, model and scores are opened in its lifespan."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await asyncio.to_thread(AppState.load, settings)
        with contextlib.suppress(StoreError):  # a store that is down or hung does not stop the start
            await state.store_calls.call(state.store.verify)
            state.store_ok_at = time.time()
            await state.store_calls.call(warm_store_plans, state.store)
        app.state.graphrisk = state
        watcher = asyncio.create_task(_watch_store(state))
        publications = (
            asyncio.create_task(_watch_publications(state, settings.reload_check_s))
            if settings.reload_check_s > 0
            else None
        )
        try:
            yield
        finally:
            watcher.cancel()
            if publications is not None:
                publications.cancel()
            state.close()
            worker_exited()

    app = FastAPI(
        title="graphrisk",
        version=__version__,
        description="Risk scores for onboarding; fraud rings and explanations for investigators.",
        lifespan=lifespan,
    )

    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StoreError, _store_unavailable)
    # Outermost last: LimitsAndMetrics (413s are counted) > AuditGuard > AuthGate (its audited
    # 401s are held until committed) > routes.
    app.add_middleware(AuthGate, failures_per_minute=settings.auth_failures_per_minute)
    app.add_middleware(AuditGuard)
    app.add_middleware(LimitsAndMetrics, max_bytes=settings.max_request_bytes)
    for router in (health.router, score.router, users.router, rings.router, decisions.router, admin.router,
                   console.router):  # fmt: skip
        app.include_router(router)
    mount_console(app)
    return app
