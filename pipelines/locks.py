"""One refresh at a time: an OS file lock beside the data, and a lock in the store's ledger.

The file lock (``fcntl.flock`` on ``<data_dir>/refresh-run.lock``) stops two runs sharing a data
directory, and so a snapshot, on one host; the OS drops it when its process dies, so it never
goes stale. The store lock (one ``IngestLock`` node, taken atomically by
``cypher/ledger/acquire_refresh_lock.cypher``) stops two runs sharing a graph store from any
host. It carries who holds it (user, pid, host, since when) and a heartbeat; a lock whose
heartbeat is older than ``refresh_lock_stale_s`` belongs to a run that died and is taken over,
with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from graphrisk.config import Settings
from graphrisk.errors import GraphRiskError
from graphrisk.store import GraphStore

_POLL_S = 0.5


class RefreshLockedError(GraphRiskError):
    """Another run holds the refresh lock (it names the holder and what to do)."""

    exit_code = 75  # EX_TEMPFAIL: a scheduler may simply try again later


class RefreshLockLostError(GraphRiskError):
    """This run's store lock was taken over by another run: it must not commit anything more."""


def holder_name() -> str:
    """``user@host pid N``: who a lock says holds it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _iso(ms: int | None) -> str:
    return "unknown" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _dead_here(host: str | None, pid: int | None) -> bool:
    """Whether ``pid`` on ``host`` is a process of this host that no longer exists."""
    if host != socket.gethostname() or not pid or pid == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def now_ms() -> int:
    """The wall clock in epoch milliseconds (the ledger's time unit)."""
    return int(time.time() * 1000)


class FileLock:
    """An exclusive ``flock`` on one file; the file records who holds it, for the message."""

    def __init__(self, path: Path, purpose: str, hint: str = "") -> None:
        self.path = path
        self.purpose = purpose
        self.hint = hint or (
            "Another run is working on this data directory: wait for it to finish, or run again with"
            " --lock-wait SECONDS (setting refresh_lock_wait_s) to wait for it."
        )
        self._fh: IO[str] | None = None

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting at most ``wait_s`` seconds.

        Raises:
            RefreshLockedError: another process holds it after ``wait_s``.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder(fh)
                    fh.close()
                    raise RefreshLockedError(
                        f"{self.purpose} is locked by {holder} (file lock {self.path}). {self.hint}"
                        " The OS releases the lock when that process exits."
                    ) from None
                time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"holder": holder_name(), "acquired_at": _iso(now_ms())}))
        fh.flush()
        self._fh = fh

    @staticmethod
    def _holder(fh: IO[str]) -> str:
        fh.seek(0)
        try:
            info = json.loads(fh.read() or "{}")
        except ValueError:
            info = {}
        if not info:
            return "another process"
        return f"{info.get('holder', 'another process')} since {info.get('acquired_at', 'unknown')}"

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StoreLock:
    """The ``IngestLock`` node in the store's ledger, held with a heartbeat thread."""

    def __init__(self, store: GraphStore, stale_s: float, warn: Callable[[str], None]) -> None:
        self.store = store
        self.stale_s = stale_s
        self.warn = warn
        self.token = uuid.uuid4().hex
        self.holder = holder_name()
        self.taken_over: dict[str, Any] | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting at most ``wait_s`` seconds; start heartbeating.

        Raises:
            RefreshLockedError: a live run holds it after ``wait_s`` (its heartbeat is fresh).
        """
        deadline = time.monotonic() + wait_s
        dead_token = ""
        while True:
            now = now_ms()
            row = self.store.write(
                "ledger/acquire_refresh_lock", token=self.token, holder=self.holder, pid=os.getpid(),
                host=socket.gethostname(), now=now, stale_before=now - int(self.stale_s * 1000),
                dead_token=dead_token,
            )[0]  # fmt: skip
            if row["acquired"]:
                break
            if row["prev_token"] != dead_token and _dead_here(row["prev_host"], row["prev_pid"]):
                dead_token = row["prev_token"]  # its process is gone (killed): take it over now
                continue
            if time.monotonic() >= deadline:
                raise RefreshLockedError(
                    f"the graph store's refresh lock is held by {row['prev_holder']} since"
                    f" {_iso(row['prev_acquired_at'])} (last heartbeat {_iso(row['prev_heartbeat_at'])})."
                    " Another refresh is writing to this store: wait for it to finish, or run again with"
                    " --lock-wait SECONDS. If that run is dead, its lock is taken over once its heartbeat"
                    f" is {self.stale_s:g} s old (setting refresh_lock_stale_s)."
                )
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        if row["taken_over"]:
            why = (
                "its process is gone"
                if row["prev_token"] == dead_token
                else f"no heartbeat for {self.stale_s:g} s"
            )
            self.taken_over = {
                k.removeprefix("prev_"): v
                for k, v in row.items()
                if k.startswith("prev_") and k != "prev_token"
            } | {"why": why}
            self.warn(
                f"WARNING: took over the refresh lock of {row['prev_holder']} (acquired"
                f" {_iso(row['prev_acquired_at'])}, last heartbeat {_iso(row['prev_heartbeat_at'])}):"
                f" {why}. That run is presumed dead; if it is not, stop it now."
            )
        self._thread = threading.Thread(target=self._beat, name="refresh-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = min(60.0, self.stale_s / 5)
        while not self._stop.wait(interval):
            try:
                if not self.store.write("ledger/heartbeat_refresh_lock", token=self.token, now=now_ms()):
                    self._lost.set()
                    return
            except GraphRiskError as exc:  # a store outage: keep trying, the run fails on its own
                self.warn(f"refresh lock heartbeat failed: {exc}")

    def check(self) -> None:
        """Raise if another run took this lock over; called before every ledger commit.

        Raises:
            RefreshLockLostError: the lock is no longer this run's.
        """
        if self._lost.is_set():
            raise RefreshLockLostError(
                "this run's refresh lock in the graph store was taken over by another run (its"
                " heartbeat looked stale): stopping before committing anything more. Check which"
                " run holds it now, and raise refresh_lock_stale_s if runs stall that long."
            )

    def release(self) -> None:
        """Stop heartbeating and release the lock if still held (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            try:
                self.store.write("ledger/release_refresh_lock", token=self.token, now=now_ms())
            except GraphRiskError as exc:  # the store is down: the lock goes stale and is taken over
                self.warn(f"could not release the refresh lock in the store: {exc}")


def refresh_lock_path(settings: Settings) -> Path:
    """The file lock of refreshes on this data directory.

    Not ``refresh.lock``: a cron line that wraps the run in ``flock -n var/refresh.lock`` (as the
    README once advised) would then hold the very lock the run needs, and the run would refuse.
    """
    return settings.data_dir / "refresh-run.lock"


@contextlib.contextmanager
def refresh_lock(
    settings: Settings,
    store: GraphStore,
    wait_s: float | None = None,
    warn: Callable[[str], None] | None = None,
) -> Iterator[StoreLock]:
    """Hold both refresh locks (file, then store) for the body; released in reverse order.

    Args:
        wait_s: how long to wait for each lock (default: ``settings.refresh_lock_wait_s``).
        warn: where warnings go (a stale lock taken over); default stderr.

    Raises:
        RefreshLockedError: another run holds one of them.
    """
    wait = settings.refresh_lock_wait_s if wait_s is None else wait_s
    file_lock = FileLock(refresh_lock_path(settings), "refresh of this data directory")
    file_lock.acquire(wait)
    try:
        store.ensure_schema()  # the lock node's uniqueness constraint, before the first MERGE of it
        lock = StoreLock(store, settings.refresh_lock_stale_s, warn or _stderr)
        lock.acquire(wait)
        try:
            yield lock
        finally:
            lock.release()
    finally:
        file_lock.release()


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)
