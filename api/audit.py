"""Append-only, hash-chained audit trail (SQLite by default, PostgreSQL by URL).

Each entry stores the hash of the previous one and its own hash over (previous hash, entry
content). Editing or deleting any row breaks the chain from there on, which
:meth:`AuditLog.verify` reports.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, select
from sqlalchemy.engine import Engine

from api.db import make_engine

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


def _entry_hash(
    prev: str, seq: int, at_ms: int, actor: str, role: str, action: str, target: str, detail: str
) -> str:
    payload = json.dumps([prev, seq, at_ms, actor, role, action, target, detail], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class AuditLog:
    """Appends and verifies audit entries; one instance per process (it serialises appends).

    Appends are queued and written by one background thread in batches, so a request never
    waits for a database commit; :meth:`flush` waits until everything queued is written.
    """

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        _metadata.create_all(self.engine)
        self._lock = threading.Lock()
        with self.engine.connect() as conn:
            last = conn.execute(
                select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc()).limit(1)
            ).first()
        self._seq, self._prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        self._queue: queue.Queue[tuple[int, str, str, str, str, str] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._drain, name="audit-writer", daemon=True)
        self._writer.start()

    def append(self, actor: str, role: str, action: str, target: str, detail: dict[str, Any]) -> None:
        """Queue one entry (its time is now); the writer chains and stores it."""
        body = json.dumps(detail, sort_keys=True, default=str)
        self._queue.put((int(time.time() * 1000), actor, role, action, target, body))

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = []
            with self._lock:
                for entry in batch:
                    if entry is None:
                        continue
                    at, actor, role, action, target, body = entry
                    seq = self._seq + 1
                    digest = _entry_hash(self._prev, seq, at, actor, role, action, target, body)
                    rows.append({"seq": seq, "at_ms": at, "actor": actor, "role": role, "action": action,
                                 "target": target, "detail": body, "prev_hash": self._prev, "hash": digest})  # fmt: skip
                    self._seq, self._prev = seq, digest
                if rows:
                    with self.engine.begin() as conn:
                        conn.execute(audit_table.insert(), rows)
            for _ in batch:
                self._queue.task_done()
            if any(e is None for e in batch):
                return

    def flush(self) -> None:
        """Wait until every queued entry is stored."""
        self._queue.join()

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every stored entry in order (call :meth:`flush` first to include queued ones)."""
        with self.engine.connect() as conn:
            for row in conn.execute(select(audit_table).order_by(audit_table.c.seq)):
                yield dict(row._mapping)

    def verify(self) -> tuple[bool, int | None]:
        """``(True, None)`` if the chain is intact, else ``(False, first bad seq)``."""
        prev = GENESIS
        expected_seq = 1
        for e in self.entries():
            digest = _entry_hash(
                prev, e["seq"], e["at_ms"], e["actor"], e["role"], e["action"], e["target"], e["detail"]
            )
            if e["seq"] != expected_seq or e["prev_hash"] != prev or e["hash"] != digest:
                return False, int(e["seq"])
            prev = e["hash"]
            expected_seq += 1
        return True, None

    def export_jsonl(self, path: Path) -> int:
        """Write every entry as JSON lines; returns the number written."""
        n = 0
        with path.open("w") as fh:
            for e in self.entries():
                fh.write(json.dumps(e, default=str) + "\n")
                n += 1
        return n

    def close(self) -> None:
        """Write what is queued, stop the writer, release the connection pool."""
        self._queue.put(None)
        self._writer.join(timeout=30)
        self.engine.dispose()
