"""Append-only, keyed hash chain of audit entries (SQLite by default, PostgreSQL by URL).

What holds, and why:

- **Keyed chain.** Each entry stores the previous entry's hash and its own, an HMAC-SHA256 over
  (previous hash, entry content) with a key that is not in the database. Editing or deleting a
  row breaks the chain there; rewriting rows with recomputed hashes needs the key.
- **Several writers.** Appends from every process are serialised in the database (SQLite
  ``BEGIN IMMEDIATE``, PostgreSQL an advisory lock), and the head is read inside that
  transaction, so N API workers make one linear, gapless chain.
- **Locks and outages.** One writer thread per process batches appends and retries failed
  batches until they are written; it never gives up while the process runs. While it cannot
  write (an entry waiting longer than ``max_lag_s``, or the last attempt failed),
  :meth:`AuditLog.health` says so; the API answers audited routes 503 and holds each audited
  response until its entry is committed (``api.audit_guard``).
- **Anchors.** The head (seq, hash) is written every ``anchor_interval_s`` to an append-only file
  of signed JSON lines outside the database. Truncating the tail (the chain ends before an
  anchored seq) or rewriting it (another hash at an anchored seq) is then detected even by
  someone who holds the key but not the anchor file.
- **Verification** at start and every ``verify_interval_s`` (and ``graphrisk audit verify``):
  the chain, its HMACs and the anchors. A failure sets ``graphrisk_audit_verification_failed``;
  a chain shorter than a seq seen or anchored before sets ``graphrisk_audit_sequence_shrunk``.
- **Retention.** :meth:`AuditLog.prune` deletes a verified prefix of entries older than the
  retention, after recording a signed checkpoint (the last pruned seq, its hash, the legacy
  entries in it) in ``audit_checkpoint``, in the same transaction. Verification then starts
  from the latest checkpoint instead of the genesis: the first kept entry must chain to it.
  Deleting the checkpoint, or pruning without one, breaks the chain at the first kept entry.
- **Migration.** Entries written before the chain was keyed (plain SHA-256) are accepted only as
  a prefix, and reported (``unkeyed_entries``); a plain-SHA entry after a keyed one is tampering.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from api.db import DEFAULT_LOCK_TIMEOUT_S, create_tables, make_engine, write_transaction
from graphrisk.errors import AuditUnavailableError, ConfigError, GraphRiskError

if TYPE_CHECKING:
    from graphrisk.config import Settings

log = logging.getLogger("graphrisk.audit")

GENESIS = "0" * 64
_metadata = MetaData()
audit_table = Table(
    "audit_log",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)
# One row per pruning: the chain's state at the last pruned entry, signed with the chain key.
# Verification starts from the row with the highest seq.
checkpoint_table = Table(
    "audit_checkpoint",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("unkeyed", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("before_ms", BigInteger, nullable=False),
    Column("pruned", Integer, nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("sig", String(64), nullable=False),
)

# With several workers (api.metrics.MULTIPROC_ENV) each gauge says how the workers' values
# combine: an alarm raised by any live worker stands; the writer is healthy only if all are.
VERIFICATION_FAILED = Gauge(
    "graphrisk_audit_verification_failed",
    "1 when the last verification of the audit chain failed",
    multiprocess_mode="livemax",
)
SEQUENCE_SHRUNK = Gauge(
    "graphrisk_audit_sequence_shrunk",
    "1 when the audit chain was found shorter than a sequence number seen or anchored before",
    multiprocess_mode="livemax",
)
VERIFICATIONS = Counter("graphrisk_audit_verifications", "Audit chain verifications by result", ["result"])
UNKEYED_ENTRIES = Gauge(
    "graphrisk_audit_unkeyed_entries",
    "Entries of the chain's legacy, un-keyed (plain SHA-256) prefix",
    multiprocess_mode="livemax",
)
WRITE_FAILURES = Counter(
    "graphrisk_audit_write_failures", "Failed attempts to write an audit batch (retried)"
)
WRITER_HEALTHY = Gauge(
    "graphrisk_audit_writer_healthy",
    "1 while the audit writer's last attempt succeeded",
    multiprocess_mode="livemin",
)
PENDING = Gauge(
    "graphrisk_audit_pending_entries",
    "Audit entries accepted and not yet committed",
    multiprocess_mode="livesum",
)

BATCH = 500
FULL_EVERY = 12  # scheduled verifications: the whole chain at start and every 12th run
# The entries an audited request appended; api.audit_guard holds its response until they commit.
request_tickets: ContextVar[list[Future[int]] | None] = ContextVar("graphrisk_audit_tickets", default=None)
_STOP = object()


def _payload(prev: str, seq: int, at_ms: int, actor: str, role: str, action: str, target: str, detail: str) -> bytes:  # fmt: skip
    return json.dumps([prev, seq, at_ms, actor, role, action, target, detail], separators=(",", ":")).encode()


def _entry_hash(
    prev: str, seq: int, at_ms: int, actor: str, role: str, action: str, target: str, detail: str
) -> str:
    """The legacy, un-keyed hash (chains written before the key existed)."""
    return hashlib.sha256(_payload(prev, seq, at_ms, actor, role, action, target, detail)).hexdigest()


def _keyed_hash(
    key: bytes, prev: str, seq: int, at_ms: int, actor: str, role: str, action: str, target: str, detail: str
) -> str:
    payload = _payload(prev, seq, at_ms, actor, role, action, target, detail)
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A short public name of ``key`` (in anchors and reports; reveals nothing of the key)."""
    return hashlib.sha256(b"graphrisk-audit-key-id:" + key).hexdigest()[:16]


def hmac_key(settings: Settings) -> bytes:
    """The chain key: ``audit_hmac_key``, else the file ``audit_hmac_key_file``; outside production
    without either, ``data_dir/audit/hmac.key``, created once (shared by workers and restarts).

    Raises:
        ConfigError: the key file is missing or unreadable, or the key is shorter than 16 bytes.
    """
    if settings.audit_hmac_key is not None:
        key = settings.audit_hmac_key.get_secret_value().encode()
    elif settings.audit_hmac_key_file is not None:
        try:
            key = settings.audit_hmac_key_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"audit_hmac_key_file {settings.audit_hmac_key_file}: {exc.strerror}") from None
    elif settings.environment == "production":
        raise ConfigError("no audit chain key; set GRAPHRISK_AUDIT_HMAC_KEY or GRAPHRISK_AUDIT_HMAC_KEY_FILE")
    else:
        key = _development_key(settings.data_dir / "audit" / "hmac.key")
    if len(key) < 16:
        raise ConfigError("the audit chain key must be at least 16 bytes")
    return key


def _development_key(path: Path) -> bytes:
    # Linked into place, so that workers starting together agree on one key (the loser reads it).
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
            log.warning(
                "generated an audit chain key at %s (development only: production needs "
                "GRAPHRISK_AUDIT_HMAC_KEY or GRAPHRISK_AUDIT_HMAC_KEY_FILE)",
                path,
            )
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


def anchor_path(settings: Settings) -> Path:
    """Where the chain's head is anchored: ``audit_anchor_path``, else a file per audit database
    under ``data_dir/audit/`` (so that two databases never share, and contradict, one file)."""
    if settings.audit_anchor_path is not None:
        return settings.audit_anchor_path
    db = hashlib.sha256(settings.audit_db_url.encode()).hexdigest()[:12]
    return settings.data_dir / "audit" / f"anchors-{db}.jsonl"


class AuditIntegrityError(GraphRiskError):
    """The chain does not verify, so an operation that relies on it (pruning) is refused."""


@dataclass(frozen=True)
class Verification:
    """The outcome of checking the chain against its key and anchors.

    ``problem`` is one of ``broken`` (a row does not chain or its hash is wrong), ``unkeyed_after_keyed``
    (a plain SHA-256 row after keyed ones: rewritten without the key), ``rewritten`` (another head at
    an anchored seq), ``truncated`` (the chain ends before a seq anchored or seen before),
    ``bad_anchor`` (an anchor line whose signature does not verify), ``bad_checkpoint`` (the
    latest checkpoint's signature does not verify), or ``None``.

    ``entries`` counts the pruned prefix too (it is the head's seq on a whole chain);
    ``pruned_through`` is the checkpoint's seq verification started after (0: the genesis).
    """

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    detail: str = ""
    unkeyed_entries: int = 0
    anchors: int = 0
    anchored_seq: int = 0
    pruned_through: int = 0

    @property
    def keyed(self) -> bool:
        """Every entry is HMAC-chained (no legacy prefix)."""
        return self.unkeyed_entries == 0

    def as_dict(self) -> dict[str, Any]:
        """For reports."""
        return {**asdict(self), "keyed": self.keyed}


@dataclass(frozen=True)
class _Verified:
    """The end of the last passing verification: an incremental one continues from there."""

    seq: int
    hash: str
    unkeyed: int
    anchors: dict[int, str]


class AuditLog:
    """Appends and verifies audit entries; one instance per process, any number of processes.

    Appends are queued and written by one background thread in batches; :meth:`append` returns a
    future that completes with the entry's seq once it is committed. :meth:`flush` waits for
    everything queued.

    Args:
        url: SQLAlchemy URL of the audit database.
        key: The chain's HMAC key (:func:`hmac_key`); ``None`` makes a random key for this
            instance only (tests, scripts), with a warning: its entries verify only with it.
        anchors: The anchor file; ``None`` disables anchoring and anchor checks.
        max_lag_s: Longest an entry may wait to be committed before the log is unhealthy.
        lock_timeout_s: How long one write attempt waits for the database's lock.
        verify_interval_s: Verify the chain at start and then this often (``None``: never by itself).
        anchor_interval_s: Anchor the head this often and at close (``None``: only by :meth:`anchor`).
        max_pending: Appends refused (:class:`AuditUnavailableError`) beyond this many uncommitted.
    """

    def __init__(
        self,
        url: str,
        *,
        key: bytes | None = None,
        anchors: Path | None = None,
        max_lag_s: float = 2.0,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        verify_interval_s: float | None = None,
        anchor_interval_s: float | None = None,
        max_pending: int = 100_000,
    ) -> None:
        if key is None:
            key = secrets.token_bytes(32)
            log.warning("audit log on %s uses a random key for this process only", url.split("@")[-1])
        self._key = key
        self.key_id = key_id(key)
        self.anchors = anchors
        self.max_lag_s = max_lag_s
        self.max_pending = max_pending
        # No pre-ping: a stale connection fails the write attempt, which is retried anyway.
        self.engine: Engine = make_engine(url, lock_timeout_s, pre_ping=False)
        create_tables(self.engine, _metadata)
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._enqueued: deque[float] = deque()  # monotonic enqueue time of each uncommitted entry
        # The highest (seq, hash) this process committed, verified or anchored: an in-memory
        # anchor. The chain never gets shorter, and that entry never changes.
        self._seen: tuple[int, str] = (0, GENESIS)
        # The (seq, hash) this process had seen when it found the chain shorter: kept (and
        # anchored) as evidence, so that appending past the cut does not hide it.
        self._lost: tuple[int, str] | None = None
        self._verified: _Verified | None = None  # where the last passing verification ended
        self._last_anchored = 0
        self._failing: str | None = None  # why the last write attempt failed, until one succeeds
        self._closing = threading.Event()
        self._closed = False
        self._close_deadline = float("inf")
        self.last_verification: Verification | None = None
        self._writer = threading.Thread(target=self._drain, name="audit-writer", daemon=True)
        self._writer.start()
        self._watcher: threading.Thread | None = None
        self._anchor_on_close = anchor_interval_s is not None and anchors is not None
        if verify_interval_s is not None or self._anchor_on_close:
            self._watcher = threading.Thread(
                target=self._watch, args=(verify_interval_s, anchor_interval_s), name="audit-verifier",
                daemon=True,
            )  # fmt: skip
            self._watcher.start()

    @classmethod
    def from_settings(cls, settings: Settings, *, background: bool = True) -> AuditLog:
        """The log as configured; ``background`` runs scheduled verification and anchoring."""
        return cls(
            settings.audit_db_url,
            key=hmac_key(settings),
            anchors=anchor_path(settings),
            max_lag_s=settings.audit_max_lag_s,
            verify_interval_s=settings.audit_verify_interval_s if background else None,
            anchor_interval_s=settings.audit_anchor_interval_s if background else None,
        )

    # -- appending ---------------------------------------------------------------------------

    def append(self, actor: str, role: str, action: str, target: str, detail: dict[str, Any]) -> Future[int]:
        """Queue one entry (its time is now); returns a future of its seq, done once committed.

        Inside a request guarded by ``api.audit_guard`` the response waits for it.

        Raises:
            AuditUnavailableError: the log is closed, or too many entries are waiting.
        """
        body = json.dumps(detail, sort_keys=True, default=str)
        ticket: Future[int] = Future()
        with self._lock:
            if self._closed:
                raise AuditUnavailableError("the audit log is closed")
            if len(self._enqueued) >= self.max_pending:
                raise AuditUnavailableError(f"{len(self._enqueued)} audit entries are waiting to be written")
            self._enqueued.append(time.monotonic())
            self._queue.put((int(time.time() * 1000), actor, role, action, target, body, ticket))
        pending = request_tickets.get()
        if pending is not None:
            pending.append(ticket)
        return ticket

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[Any] = []
            stop = item is _STOP
            if not stop:
                batch.append(item)
                while len(batch) < BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
            if batch:
                self._write_batch(batch)
            if stop:
                return

    def _write_batch(self, batch: list[Any]) -> None:
        # The writer must outlive any database trouble: DB errors are retried (until close's
        # deadline); anything else fails this batch's tickets, is logged, and the writer goes on.
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(DBAPIError),
                wait=wait_exponential(multiplier=0.05, max=2.0),
                stop=self._give_up,
                before_sleep=self._on_failure,
                reraise=True,
            ):
                with attempt:
                    last = self._insert(batch)
        except Exception as exc:
            log.exception("audit: %d entries could not be written", len(batch))
            self._done(len(batch))
            for *_, ticket in batch:
                ticket.set_exception(AuditUnavailableError(f"audit entry not written: {type(exc).__name__}"))
            return
        self._failing = None
        WRITER_HEALTHY.set(1)
        self._done(len(batch))
        for i, (*_, ticket) in enumerate(batch):
            ticket.set_result(last - len(batch) + 1 + i)

    def _done(self, n: int) -> None:
        with self._lock:
            for _ in range(n):
                self._enqueued.popleft()
            PENDING.set(len(self._enqueued))

    def _give_up(self, state: RetryCallState) -> bool:
        return self._closing.is_set() and time.monotonic() > self._close_deadline

    def _on_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        WRITE_FAILURES.inc()
        WRITER_HEALTHY.set(0)
        self._failing = type(exc).__name__
        log.warning("audit: write attempt %d failed (%s); retrying", state.attempt_number, exc)

    def _insert(self, batch: list[Any]) -> int:
        """Chain and insert ``batch`` after the current head, under the database's write lock."""
        with write_transaction(self.engine, "audit_log") as conn:
            head = conn.execute(
                select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc()).limit(1)
            ).first()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            lost = self._seen if seq < self._seen[0] else None
            rows = []
            for at, actor, role, action, target, body, _ticket in batch:
                seq += 1
                digest = _keyed_hash(self._key, prev, seq, at, actor, role, action, target, body)
                rows.append({"seq": seq, "at_ms": at, "actor": actor, "role": role, "action": action,
                             "target": target, "detail": body, "prev_hash": prev, "hash": digest})  # fmt: skip
                prev = digest
            conn.execute(audit_table.insert(), rows)
        if lost is not None:
            self._shrunk(lost, seq - len(batch))
        if seq > self._seen[0]:
            self._seen = (seq, prev)
        return seq

    def _shrunk(self, lost: tuple[int, str], head_seq: int) -> None:
        """The chain ends before ``lost``, an entry this process had seen: alert, and keep the
        evidence (in memory, and in the anchor file for every other verifier)."""
        SEQUENCE_SHRUNK.set(1)
        log.error("audit chain shrank: head was seq %d, this process had seen seq %d", head_seq, lost[0])
        if self._lost is None:
            self._lost = lost
            if self.anchors is not None:
                try:
                    self._write_anchor(*lost)
                except OSError as exc:
                    log.error("audit: could not anchor the lost head seq %d: %s", lost[0], exc)

    def health(self) -> tuple[bool, str]:
        """``(True, "ok")`` while entries get committed within ``max_lag_s``; else ``(False, why)``.

        The reason names no driver message (it may reach a client).
        """
        if self._closed:
            return False, "the audit log is closed"
        if not self._writer.is_alive():
            return False, "the audit writer has stopped"
        with self._lock:
            waiting = len(self._enqueued)
            oldest = self._enqueued[0] if waiting else None
        if self._failing is not None:
            return False, f"the audit database cannot be written ({waiting} entries waiting)"
        if oldest is not None and time.monotonic() - oldest > self.max_lag_s:
            return (
                False,
                f"the audit writer is behind ({waiting} entries waiting {time.monotonic() - oldest:.1f}s)",
            )
        return True, "ok"

    def healthy(self) -> bool:
        """Whether audited actions may proceed (:meth:`health`)."""
        return self.health()[0]

    async def wait_durable(self, tickets: list[Future[int]], timeout: float) -> bool:
        """Whether every ticket committed within ``timeout`` seconds (awaited, not blocking)."""
        waiting = [t for t in tickets if not t.done()]
        if waiting:
            _, not_done = await asyncio.wait([asyncio.wrap_future(t) for t in waiting], timeout=timeout)
            if not_done:
                return False
        return all(t.exception() is None for t in tickets)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every entry queued so far is committed.

        Raises:
            AuditUnavailableError: not within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._enqueued:
                    return
            if deadline is not None and time.monotonic() > deadline:
                raise AuditUnavailableError(f"audit entries not written within {timeout}s")
            time.sleep(0.005)

    # -- reading and verifying ---------------------------------------------------------------

    def entries(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Every stored entry with seq > ``after`` in order (call :meth:`flush` first to include
        queued ones)."""
        with self.engine.connect() as conn:
            # Streamed (a server-side cursor on PostgreSQL): the chain may not fit in memory.
            rows = conn.execution_options(yield_per=2000).execute(
                select(audit_table).where(audit_table.c.seq > after).order_by(audit_table.c.seq)
            )
            for row in rows:
                yield dict(row._mapping)

    def head(self) -> tuple[int, str]:
        """The last committed entry's ``(seq, hash)``; ``(0, GENESIS)`` when empty."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc()).limit(1)
            ).first()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def verify(self) -> tuple[bool, int | None]:
        """``(True, None)`` if the chain is intact, else ``(False, first bad seq)`` (:meth:`check`)."""
        result = self.check()
        return result.ok, result.first_bad_seq

    def check(self, full: bool = True) -> Verification:
        """Verify the chain (keyed hashes, legacy prefix, anchors, no shrinking); sets the metrics.

        ``full=False`` verifies only what was appended since the last passing verification by
        this process, after checking that its last entry, and any anchor added since at or
        before it, are unchanged: this catches truncation and rewrites of the tail (which reach
        that entry) at a cost that does not grow with the chain. An edit of one older row that
        keeps the rows after it needs a full verification (at start, then every
        ``FULL_EVERY``-th scheduled run, and ``graphrisk audit verify``).
        """
        # Anchors and the seen seq are read before the chain: everything they name was committed
        # before this read's snapshot, so a concurrent append cannot look like a truncation.
        try:
            anchored = self._read_anchors()
        except _BadAnchor as bad:
            return self._record(Verification(False, 0, 0, GENESIS, problem="bad_anchor", detail=str(bad)))
        memory = dict([self._seen, *([self._lost] if self._lost else [])])
        memory.pop(0, None)
        # Twice at most: a pruning between reading the checkpoint and walking the chain makes
        # the walk miss rows it expected; with the new checkpoint it does not.
        for attempt in range(2):
            try:
                base = self._checkpoint()
            except _BadCheckpoint as bad:
                return self._record(
                    Verification(False, 0, 0, GENESIS, problem="bad_checkpoint", detail=str(bad))
                )
            pruned = base.seq if base is not None else 0
            result = self._walk_from(anchored, memory, base, full)
            if result.ok or attempt or self._checkpoint_seq() == pruned:
                break
        expected = max(max(anchored, default=0), max(memory, default=0))
        if result.ok and result.head_seq < expected:
            result = Verification(
                False, result.entries, result.head_seq, result.head_hash, first_bad_seq=result.head_seq + 1,
                problem="truncated", detail=f"the chain ends at seq {result.head_seq}; seq {expected} existed",
                unkeyed_entries=result.unkeyed_entries, anchors=len(anchored),
                anchored_seq=max(anchored, default=0),
            )  # fmt: skip
        return self._record(dataclasses.replace(result, pruned_through=pruned), anchored)

    def _walk_from(
        self, anchored: dict[int, str], memory: dict[int, str], base: _Verified | None, full: bool
    ) -> Verification:
        """:meth:`_walk` from the last passing verification (incremental) or the checkpoint."""
        if base is not None:
            # Of what was anchored or seen at or before the checkpoint only its own seq is left
            # to compare; the rows before it are gone.
            for seq, head in (*anchored.items(), *memory.items()):
                if seq == base.seq and head != base.hash:
                    return Verification(False, base.seq, base.seq, base.hash, first_bad_seq=seq, problem="rewritten",
                                        detail=f"the checkpoint at seq {seq} differs from its anchored hash",
                                        anchors=len(anchored), anchored_seq=max(anchored, default=0))  # fmt: skip
        start = self._verified if not full else None
        if start is not None and not self._still_there(start, anchored, memory):
            start = None
        if start is None or (base is not None and start.seq < base.seq):
            start = base
        return self._walk(anchored, memory, start)

    # -- retention ---------------------------------------------------------------------------

    def _sign_checkpoint(self, seq: int, head: str, unkeyed: int, at_ms: int, before_ms: int, pruned: int, kid: str) -> str:  # fmt: skip
        msg = json.dumps(
            ["checkpoint", seq, head, unkeyed, at_ms, before_ms, pruned, kid], separators=(",", ":")
        )
        return hmac.new(self._key, msg.encode(), hashlib.sha256).hexdigest()

    def _checkpoint_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(checkpoint_table.c.seq))).scalar() or 0)

    def _checkpoint(self) -> _Verified | None:
        """The latest checkpoint as a verified starting point (``None``: nothing was pruned).

        Raises:
            _BadCheckpoint: its signature does not verify with this key.
        """
        with self.engine.connect() as conn:
            row = conn.execute(
                select(checkpoint_table).order_by(checkpoint_table.c.seq.desc()).limit(1)
            ).first()
        if row is None:
            return None
        expected = self._sign_checkpoint(int(row.seq), str(row.hash), int(row.unkeyed), int(row.at_ms),
                                         int(row.before_ms), int(row.pruned), str(row.key_id))  # fmt: skip
        if row.key_id != self.key_id or not hmac.compare_digest(str(row.sig), expected):
            raise _BadCheckpoint(f"the checkpoint at seq {row.seq} does not verify with this key")
        return _Verified(int(row.seq), str(row.hash), int(row.unkeyed), {})

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every pruning's checkpoint, oldest first (for reports)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(checkpoint_table).order_by(checkpoint_table.c.seq)).all()
        return [dict(r._mapping) for r in rows]

    def prune(self, before_ms: int) -> dict[str, Any]:
        """Delete the entries written before ``before_ms`` (epoch ms), keeping the chain verifiable.

        Only a prefix goes, never the head (the next append chains to it), and only after a full
        verification passes: a checkpoint of a tampered chain would launder the tampering. The
        signed checkpoint of the last pruned entry is written, and the prefix deleted, in one
        transaction; the checkpoint is also anchored. Returns what was done.

        Raises:
            AuditIntegrityError: the chain does not verify; nothing is pruned.
        """
        self.flush()
        verified = self.check(full=True)
        if not verified.ok:
            raise AuditIntegrityError(
                f"the audit chain does not verify ({verified.problem} at seq {verified.first_bad_seq}); not pruning"
            )
        with write_transaction(self.engine, "audit_log") as conn:
            head = conn.execute(select(func.max(audit_table.c.seq))).scalar()
            first_kept = conn.execute(
                select(func.min(audit_table.c.seq)).where(audit_table.c.at_ms >= before_ms)
            ).scalar()
            done = int(conn.execute(select(func.max(checkpoint_table.c.seq))).scalar() or 0)
            if head is None:
                return {"pruned": 0, "through_seq": done, "before_ms": before_ms}
            last = min(
                int(head) - 1, verified.head_seq, int(first_kept) - 1 if first_kept is not None else int(head)
            )
            if last <= done:
                return {"pruned": 0, "through_seq": done, "before_ms": before_ms}
            row = conn.execute(select(audit_table).where(audit_table.c.seq == last)).one()
            unkeyed = min(verified.unkeyed_entries, last)  # the legacy entries are a prefix
            at_ms = int(time.time() * 1000)
            pruned = int(
                conn.execute(
                    select(func.count()).select_from(audit_table).where(audit_table.c.seq <= last)
                ).scalar()
                or 0
            )
            sig = self._sign_checkpoint(last, str(row.hash), unkeyed, at_ms, before_ms, pruned, self.key_id)
            conn.execute(checkpoint_table.insert(), [{
                "seq": last, "hash": str(row.hash), "unkeyed": unkeyed, "at_ms": at_ms, "before_ms": before_ms,
                "pruned": pruned, "key_id": self.key_id, "sig": sig,
            }])  # fmt: skip
            conn.execute(delete(audit_table).where(audit_table.c.seq <= last))
        if self.anchors is not None:
            try:
                self._write_anchor(last, str(row.hash))
            except OSError as exc:
                log.error("audit: could not anchor the checkpoint at seq %d: %s", last, exc)
        log.info("audit: pruned %d entries through seq %d (written before %d)", pruned, last, before_ms)
        return {"pruned": pruned, "through_seq": last, "through_hash": str(row.hash), "before_ms": before_ms}

    # -- single entries ----------------------------------------------------------------------

    def entry(self, seq: int) -> dict[str, Any] | None:
        """One stored entry (``None``: no such seq, or pruned)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_table).where(audit_table.c.seq == seq)).first()
        return dict(row._mapping) if row is not None else None

    def verify_entry(self, seq: int) -> dict[str, Any]:
        """Where one entry stands in the chain: its own HMAC, its link to the entry before (or
        the checkpoint, or the genesis), and the next entry's link to it.

        A whole-chain check (:meth:`check`) is what proves no entry before it was edited; this
        proves the entry itself is the one chained at ``seq``.

        Raises:
            KeyError: no entry has that seq (never written, or pruned).
        """
        e = self.entry(seq)
        if e is None:
            raise KeyError(f"no audit entry with seq {seq} (never written, or pruned by retention)")
        fields = (e["at_ms"], e["actor"], e["role"], e["action"], e["target"], e["detail"])
        keyed = hmac.compare_digest(e["hash"], _keyed_hash(self._key, e["prev_hash"], seq, *fields))
        before = self.entry(seq - 1) if seq > 1 else None
        try:
            base = self._checkpoint()
        except _BadCheckpoint:
            base = None  # reported by check(); here the entry just cannot link to it
        if before is not None:
            prev, via = str(before["hash"]), f"seq {seq - 1}"
        elif base is not None and base.seq == seq - 1:
            prev, via = base.hash, f"checkpoint at seq {base.seq}"
        else:
            prev, via = (GENESIS, "genesis") if seq == 1 else (None, "missing")
        after = self.entry(seq + 1)
        return {
            "seq": seq,
            "hash": e["hash"],
            "hmac_ok": keyed,
            "links_to": via,
            "prev_ok": prev is not None and hmac.compare_digest(str(e["prev_hash"]), prev),
            "next_ok": None
            if after is None
            else hmac.compare_digest(str(after["prev_hash"]), str(e["hash"])),
        }

    def _still_there(self, start: _Verified, anchored: dict[int, str], memory: dict[int, str]) -> bool:
        """Whether the last verified entry, and anchors at or before it that the last
        verification did not see, still match the stored chain."""
        wanted = {start.seq: start.hash}
        for seq, head in (*anchored.items(), *memory.items()):
            if seq <= start.seq and start.anchors.get(seq) != head:
                wanted.setdefault(seq, head)
                if wanted[seq] != head:
                    return False
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_table.c.seq, audit_table.c.hash).where(audit_table.c.seq.in_(list(wanted)))
            ).all()
        return {int(r[0]): str(r[1]) for r in rows} == wanted

    def _walk(
        self, anchored: dict[int, str], memory: dict[int, str], start: _Verified | None = None
    ) -> Verification:
        prev, expected, unkeyed, keyed_seen, n = GENESIS, 1, 0, False, 0
        if start is not None:
            prev, expected, unkeyed = start.hash, start.seq + 1, start.unkeyed
            keyed_seen, n = start.seq > start.unkeyed, start.seq
        top = max(anchored, default=0)

        def bad(seq: int, problem: str, detail: str) -> Verification:
            return Verification(False, n, expected - 1, prev, first_bad_seq=seq, problem=problem, detail=detail,
                                unkeyed_entries=unkeyed, anchors=len(anchored), anchored_seq=top)  # fmt: skip

        for e in self.entries(after=expected - 1):
            seq = int(e["seq"])
            fields = (e["at_ms"], e["actor"], e["role"], e["action"], e["target"], e["detail"])
            if seq != expected or e["prev_hash"] != prev:
                return bad(expected, "broken", f"seq {seq} does not follow seq {expected - 1}")
            if hmac.compare_digest(e["hash"], _keyed_hash(self._key, prev, seq, *fields)):
                keyed_seen = True
            elif e["hash"] == _entry_hash(prev, seq, *fields):
                if keyed_seen:
                    return bad(seq, "unkeyed_after_keyed", f"seq {seq} is un-keyed after keyed entries")
                unkeyed += 1
            else:
                return bad(seq, "broken", f"seq {seq}: hash does not match its content")
            if seq in anchored and anchored[seq] != e["hash"]:
                return bad(seq, "rewritten", f"seq {seq} differs from its anchored hash")
            if seq in memory and memory[seq] != e["hash"]:
                return bad(seq, "rewritten", f"seq {seq} differs from the entry this process saw")
            prev, expected, n = e["hash"], expected + 1, n + 1
        return Verification(True, n, expected - 1, prev, unkeyed_entries=unkeyed, anchors=len(anchored),
                            anchored_seq=top)  # fmt: skip

    def chain_status(self) -> str:
        """The last verification in a few words (for /readyz)."""
        v = self.last_verification
        if v is None:
            return "not verified yet"
        if not v.ok:
            return f"verification failed: {v.problem} at seq {v.first_bad_seq}"
        legacy = f", {v.unkeyed_entries} un-keyed legacy entries" if v.unkeyed_entries else ""
        return f"verified to seq {v.head_seq}{legacy}"

    def _record(self, result: Verification, anchored: dict[int, str] | None = None) -> Verification:
        self.last_verification = result
        VERIFICATIONS.labels("ok" if result.ok else result.problem or "failed").inc()
        VERIFICATION_FAILED.set(0 if result.ok else 1)
        UNKEYED_ENTRIES.set(result.unkeyed_entries)
        if result.problem == "truncated":
            SEQUENCE_SHRUNK.set(1)
            if self._seen[0] > result.head_seq:
                self._shrunk(self._seen, result.head_seq)
        elif result.ok and self._lost is None:
            SEQUENCE_SHRUNK.set(0)
        if result.ok:
            if result.head_seq > self._seen[0]:
                self._seen = (result.head_seq, result.head_hash)
            self._verified = _Verified(
                result.head_seq, result.head_hash, result.unkeyed_entries, anchored or {}
            )
        else:
            self._verified = None
            log.error("audit chain verification failed: %s (%s)", result.problem, result.detail)
        return result

    # -- anchors -----------------------------------------------------------------------------

    def _sign(self, seq: int, head: str, at_ms: int, kid: str) -> str:
        msg = json.dumps([seq, head, at_ms, kid], separators=(",", ":")).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _read_anchors(self) -> dict[int, str]:
        """``seq -> head hash`` from the anchor file (empty when there is none).

        Raises:
            _BadAnchor: a line is not a valid anchor signed with this key, or two disagree.
        """
        out: dict[int, str] = {}
        if self.anchors is None or not self.anchors.exists():
            return out
        with self.anchors.open() as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    a = json.loads(line)
                    seq, head, at_ms, kid, sig = int(a["seq"]), str(a["head"]), int(a["at_ms"]), str(a["key_id"]), str(a["sig"])  # fmt: skip
                except (ValueError, KeyError, TypeError):
                    if not line.endswith("\n"):
                        continue  # a torn last line (a crash while writing it)
                    raise _BadAnchor(f"{self.anchors}:{lineno}: not an anchor") from None
                if kid != self.key_id or not hmac.compare_digest(sig, self._sign(seq, head, at_ms, kid)):
                    raise _BadAnchor(f"{self.anchors}:{lineno}: signature does not verify with this key")
                if out.get(seq, head) != head:
                    raise _BadAnchor(f"{self.anchors}:{lineno}: seq {seq} anchored with two different hashes")
                out[seq] = head
        return out

    def anchor(self) -> dict[str, Any] | None:
        """Append the current head to the anchor file as a signed line; returns it (``None`` when
        anchoring is off, nothing new was committed, or the head is not a valid keyed entry)."""
        if self.anchors is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_table).order_by(audit_table.c.seq.desc()).limit(1)).first()
        if row is None or row.seq <= self._last_anchored:
            return None
        fields = (row.at_ms, row.actor, row.role, row.action, row.target, row.detail)
        if not hmac.compare_digest(row.hash, _keyed_hash(self._key, row.prev_hash, row.seq, *fields)):
            log.error("audit: not anchoring head seq %d: its hash is not keyed with this key", row.seq)
            return None
        line = self._write_anchor(int(row.seq), str(row.hash))
        self._last_anchored = int(row.seq)
        if row.seq > self._seen[0]:
            self._seen = (int(row.seq), str(row.hash))
        return line

    def _write_anchor(self, seq: int, head: str) -> dict[str, Any]:
        assert self.anchors is not None
        at_ms = int(time.time() * 1000)
        line: dict[str, Any] = {"seq": seq, "head": head, "at_ms": at_ms, "key_id": self.key_id}
        line["sig"] = self._sign(seq, head, at_ms, self.key_id)
        self.anchors.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line under an exclusive lock: workers' anchors never interleave.
        fd = os.open(self.anchors, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, (json.dumps(line, separators=(",", ":")) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return line

    def _watch(self, verify_every: float | None, anchor_every: float | None) -> None:
        # Verification on start, then on schedule; anchoring on schedule. A database error here
        # means the check could not run (not that it failed): logged, and tried next time.
        now = time.monotonic()
        next_verify = now if verify_every is not None else float("inf")
        next_anchor = now + anchor_every if anchor_every is not None else float("inf")
        runs = 0
        while True:
            wait = max(0.0, min(next_verify, next_anchor) - time.monotonic())
            if self._closing.wait(wait):
                return
            now = time.monotonic()
            try:
                if now >= next_verify:
                    self.check(full=runs % FULL_EVERY == 0)
                    runs += 1
                if now >= next_anchor and self.anchors is not None:
                    self.anchor()
            except (DBAPIError, OSError) as exc:
                log.warning("audit: scheduled verification or anchoring did not run: %s", exc)
            except Exception:
                # Anything else is a bug, but a dead verifier would silently end the checks.
                log.exception("audit: scheduled verification or anchoring failed")
            if now >= next_verify:
                next_verify = now + verify_every  # type: ignore[operator]
            if now >= next_anchor:
                next_anchor = now + anchor_every  # type: ignore[operator]

    # -- export and shutdown -----------------------------------------------------------------

    def export_jsonl(self, path: Path) -> int:
        """Write every entry as JSON lines; returns the number written."""
        n = 0
        with path.open("w") as fh:
            for e in self.entries():
                fh.write(json.dumps(e, default=str) + "\n")
                n += 1
        return n

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (retrying up to ``timeout`` seconds), anchor the head, stop the
        threads and release the connection pool. Entries still unwritten then are logged as lost."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._close_deadline = time.monotonic() + timeout
        self._closing.set()
        self._queue.put(_STOP)
        self._writer.join(timeout=timeout + 10)
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        if self._anchor_on_close:
            with contextlib.suppress(DBAPIError, OSError):
                self.anchor()
        if self._enqueued:
            log.error("audit: %d entries were not written before close", len(self._enqueued))
        self.engine.dispose()


class _BadAnchor(Exception):
    """An anchor line is malformed, unsigned, or contradicts another (internal to verification)."""


class _BadCheckpoint(Exception):
    """The latest checkpoint's signature does not verify (internal to verification)."""
