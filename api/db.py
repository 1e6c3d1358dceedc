"""The SQLAlchemy engine for the API's own tables (audit trail, decisions, recent applications).

Several API processes share one database, so writes that must not interleave take a lock in the
database itself: :func:`write_transaction` opens a transaction holding the database's write lock
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), with a bounded wait
for it. SQLite runs in WAL mode, so a long read (an export, a backup) never blocks writers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine

# How long a statement waits for a lock before failing (SQLite's busy timeout, PostgreSQL's
# lock_timeout). Callers that must not fail retry; see api.audit.
DEFAULT_LOCK_TIMEOUT_S = 5.0
_IMMEDIATE = "graphrisk_immediate"


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, pre_ping: bool = True) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created first.

    ``postgresql://`` URLs use psycopg 3 (the driver installed); SQLite connections get WAL mode,
    a busy timeout of ``lock_timeout_s`` and explicit ``BEGIN`` statements, so that
    :func:`write_transaction` can ask for ``BEGIN IMMEDIATE``. ``pre_ping`` tests a pooled
    PostgreSQL connection before use (a round trip); callers that retry anyway turn it off.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": lock_timeout_s})
        _sqlite_explicit_transactions(engine)
        return engine
    # Every session waits at most lock_timeout_s for a lock (a LOCK TABLE elsewhere, a writer).
    options = f"-c lock_timeout={int(lock_timeout_s * 1000)}"
    return create_engine(url, pool_pre_ping=pre_ping, connect_args={"options": options})


def _sqlite_explicit_transactions(engine: Engine) -> None:
    # SQLAlchemy's documented recipe: stop pysqlite from issuing its own BEGIN (it defers the
    # write lock to the first write, where a lock conflict cannot be waited out), and emit ours.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL still makes a commit survive a crash of the process (the API's
            # failure mode); only an OS crash or power loss can lose the last commits. FULL
            # fsyncs every commit: ~3 ms on these disks, on every audited request.
            cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _advisory_key(name: str) -> int:
    # A stable 32-bit key per lock name (PostgreSQL advisory locks take a bigint).
    return zlib.crc32(f"graphrisk:{name}".encode())


@contextmanager
def write_transaction(engine: Engine, lock_name: str) -> Iterator[Connection]:
    """A transaction holding the database's write lock for ``lock_name`` until it commits.

    Writers in every process that use the same ``lock_name`` are serialised, so reading a value
    and writing what depends on it (the audit chain's head, then the next entry) is safe across
    processes. Waiting for the lock is bounded by the engine's lock timeout.

    Raises:
        sqlalchemy.exc.OperationalError: the lock was not obtained in time (or the database failed).
    """
    if is_sqlite(engine):
        # One write lock per SQLite file: BEGIN IMMEDIATE takes it, waiting up to the busy timeout.
        with engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn
        return
    with engine.begin() as conn:
        # Released at commit or rollback; lock_timeout (set per session) bounds the wait.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _advisory_key(lock_name)})
        yield conn


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """``metadata.create_all`` under the write lock, so workers starting together do not race.

    The lock is taken only when a table is missing: a process starting while another client
    holds the database (a backup) does not wait for it.
    """
    existing = set(inspect(engine).get_table_names())
    if all(name in existing for name in metadata.tables):
        return
    with write_transaction(engine, "ddl") as conn:
        metadata.create_all(conn)
