"""Graph-store calls from the API: on threads of their own, each bounded by a timeout.

A frozen store (SIGSTOP, a stalled network) accepts connections and never answers, and the
neo4j driver sets no timeout on socket reads, so a blocking call can wait forever. Handlers
therefore never call the store directly: :meth:`StoreCalls.call` runs the call on a small pool
reserved for the store and waits at most ``timeout_s`` for it. The thread of a call that timed
out stays blocked until the store answers; while the pool and a queue as long again are taken
by such calls, new calls fail at once instead of queueing. Liveness and known-user reads never
come here, and the threads other routes run on are never held by the store.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from graphrisk.errors import StoreTimeoutError

T = TypeVar("T")


class StoreCalls:
    """Runs blocking store calls on ``threads`` threads, each waited for at most ``timeout_s``.

    Args:
        timeout_s: The longest a caller waits for one call.
        threads: Threads reserved for store calls.
    """

    def __init__(self, timeout_s: float, threads: int) -> None:
        self.timeout_s = timeout_s
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="store")
        self._lock = threading.Lock()
        self._in_flight = 0  # submitted and not finished, including calls whose caller gave up

    @property
    def retry_after(self) -> str:
        """The ``Retry-After`` value (seconds) for a 503 caused by the store."""
        return str(max(1, math.ceil(self.timeout_s)))

    @property
    def in_flight(self) -> int:
        """Calls running or queued, including those stuck past their timeout."""
        return self._in_flight

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a store thread, in the caller's context (audit tickets).

        Raises:
            StoreTimeoutError: it did not finish within ``timeout_s``, or the pool is taken by
                calls that did not finish (the store is hung).
            StoreError: whatever ``fn`` raised, unchanged.
        """
        with self._lock:
            if self._in_flight >= 2 * self.threads:
                raise StoreTimeoutError(f"{self._in_flight} graph-store calls have not returned")
            self._in_flight += 1
        ctx = contextvars.copy_context()
        try:
            future: Future[T] = self._pool.submit(ctx.run, fn, *args, **kwargs)
        except RuntimeError:  # shut down
            self._finished(None)
            raise StoreTimeoutError("the graph-store pool is closed") from None
        future.add_done_callback(self._finished)
        try:
            # Cancelling the wrapper cancels a call still queued; one already running runs on.
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            raise StoreTimeoutError(f"the graph store did not answer within {self.timeout_s:g}s") from None

    def _finished(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._in_flight -= 1

    def close(self, grace_s: float | None = None) -> None:
        """Stop taking calls, and wait up to ``grace_s`` (default: the call timeout) for calls
        still running, so the driver is not closed under them (a start-up warm-up that outlived
        its caller's timeout was, and the driver raised); threads stuck on a hung store are
        then left behind."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + (self.timeout_s if grace_s is None else grace_s)
        while self._in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
