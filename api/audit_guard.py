"""No unaudited answer: audited routes wait for their audit entries, or answer 503.

Every route under ``/v1/`` appends to the audit trail. This ASGI middleware, for those routes:

- answers 503 with ``Retry-After`` before the handler runs while the audit log is unhealthy
  (:meth:`api.audit.AuditLog.health`: its database locked or down, its writer behind);
- collects the entries the handler appends (:data:`api.audit.request_tickets`) and holds the
  response until they are committed; if they are not within ``max_lag_s``, the response is
  replaced by a 503. The entry stays queued and is written once the database is back, so the
  trail may record a request whose caller got 503, never the reverse.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import Future

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import AuditLog, request_tickets
from graphrisk.errors import AuditUnavailableError

AUDITED_PREFIXES = ("/v1/",)


class AuditGuard:
    """The middleware; ``app.add_middleware(AuditGuard)``."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...] = AUDITED_PREFIXES) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        audit = _audit_of(scope)
        if scope["type"] != "http" or audit is None or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        retry_after = str(max(1, math.ceil(audit.max_lag_s)))
        if not audit.healthy():
            await _unavailable(send, retry_after)
            return
        tickets: list[Future[int]] = []
        token = request_tickets.set(tickets)
        started = replaced = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                if tickets and not await audit.wait_durable(tickets, audit.max_lag_s):
                    replaced = True
                    await _unavailable(send, retry_after)
                    return
            elif replaced:
                return  # the original body of a response replaced by 503
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except AuditUnavailableError:
            if started:
                raise
            await _unavailable(send, retry_after)
        finally:
            request_tickets.reset(token)


def _audit_of(scope: Scope) -> AuditLog | None:
    # The app state is loaded in the lifespan; before that (and for lifespan events) there is none.
    app = scope.get("app")
    state = getattr(getattr(app, "state", None), "graphrisk", None)
    return getattr(state, "audit", None)


async def _unavailable(send: Send, retry_after: str) -> None:
    body = json.dumps({"detail": "the audit trail cannot record this request now; retry later"}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", retry_after.encode()),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
