"""A lock on the audit database held past the lock timeout (issue 12, item 11).

Before the fix the first write that timed out killed the writer thread for good, and requests
went on answering 200 with nothing recorded. Now the writer retries and survives; while it
cannot write, audited routes answer 503 (an unaudited answer is not allowed) and /readyz says
why; once the lock is released everything queued is written and the routes serve again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, func, select

from api.audit import AuditLog, audit_table
from api.main import create_app
from graphrisk.config import load_settings
from graphrisk.errors import AuditUnavailableError

KEY = b"fault-suite-audit-key-0123456789"
KEYS = {"inv-key-0123456789": "investigator", "adm-key-0123456789": "admin"}
INVESTIGATOR = {"X-API-Key": "inv-key-0123456789"}
ADMIN = {"X-API-Key": "adm-key-0123456789"}


@contextmanager
def locked(url: str) -> Iterator[None]:
    """Another client holding the audit table: SQLite ``BEGIN EXCLUSIVE``; PostgreSQL
    ``LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE`` (what a long export or a backup can do)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()
    engine.dispose()


def _count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_table)).scalar_one())
    finally:
        engine.dispose()


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _failures() -> float:
    return REGISTRY.get_sample_value("graphrisk_audit_write_failures_total") or 0.0


def test_writer_survives_a_lock_past_its_timeout(audit_db_url: str) -> None:
    log = AuditLog(audit_db_url, key=KEY, max_lag_s=0.3, lock_timeout_s=0.4, max_pending=20)
    try:
        for i in range(5):
            log.append("key:a", "onboarding", "score", f"before-{i}", {})
        log.flush(timeout=10)
        assert log.healthy()
        failures = _failures()
        with locked(audit_db_url):
            tickets = [log.append("key:a", "onboarding", "score", f"during-{i}", {}) for i in range(20)]
            assert _until(lambda: not log.healthy(), timeout=5)
            time.sleep(2.0)  # five lock timeouts: every attempt in this window fails
            ok, reason = log.health()
            assert not ok and "stopped" not in reason and "driver" not in reason, reason
            assert _failures() >= failures + 2  # it failed, and tried again, and again
            assert not any(t.done() for t in tickets)
            with pytest.raises(AuditUnavailableError):  # bounded: memory does not grow unchecked
                log.append("key:a", "onboarding", "score", "one-too-many", {})
        log.flush(timeout=15)  # everything queued while locked is written after the release
        assert [t.result() for t in tickets] == list(range(6, 26))
        assert log.healthy()
        log.append("key:a", "onboarding", "score", "after", {}).result(timeout=10)
        result = log.check()
        assert result.ok and result.entries == 26, result
    finally:
        log.close()


def test_audited_routes_503_while_the_audit_db_is_locked(audit_db_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        environment="test", data_dir=tmp_path / "var", store_uri="bolt://127.0.0.1:9", api_keys=KEYS,
        audit_url=audit_db_url, audit_max_lag_s=0.5, audit_anchor_path=tmp_path / "anchors.jsonl",
        audit_hmac_key=KEY.decode(), rate_limit_per_minute=100_000,
    )  # fmt: skip
    scores = settings.data_dir / "scores"
    scores.mkdir(parents=True)
    pd.DataFrame({"id": ["u1"], "score": [0.2], "band": ["allow"], "model_version": ["v1"]}).to_parquet(
        scores / "user_scores.parquet"
    )
    with TestClient(create_app(settings)) as client:
        # A 200 means the entry is already committed, not merely queued: on the event loop (the
        # ring list) and on the thread pool (a known user's score).
        assert client.get("/v1/rings", headers=INVESTIGATOR).status_code == 200
        assert _count(audit_db_url) == 1
        assert client.get("/v1/users/u1/score", headers=INVESTIGATOR).status_code == 200
        assert _count(audit_db_url) == 2
        assert client.get("/readyz", headers=ADMIN).json()["detail"]["audit"] == "ok"

        with locked(audit_db_url):
            held = time.monotonic()
            first = client.get("/v1/rings", headers=INVESTIGATOR)
            assert first.status_code == 503 and first.headers["Retry-After"], first.text
            assert "retry" in first.json()["detail"]
            # Held past the 5 s lock timeout (the writer's attempt fails and it tries again).
            while time.monotonic() - held < 6.0:
                r = client.get("/v1/rings", headers=INVESTIGATOR)
                assert r.status_code == 503 and r.headers["Retry-After"]
                audit = client.get("/readyz", headers=ADMIN)
                assert audit.status_code == 503 and audit.json()["detail"]["audit"] != "ok"
                time.sleep(0.5)
            assert "cannot" in client.get("/readyz", headers=ADMIN).json()["detail"]["audit"]

        app_audit = client.app.state.graphrisk.audit  # type: ignore[attr-defined]
        assert _until(app_audit.healthy, timeout=15)
        assert client.get("/v1/rings", headers=INVESTIGATOR).status_code == 200
        # The first request's entry was accepted before the lock was noticed: written after the
        # release, not lost. Requests refused while unhealthy never ran, so they left none.
        entries = list(app_audit.entries())
        assert [e["action"] for e in entries] == ["list_rings", "read_score", "list_rings", "list_rings"]
        assert app_audit.check().ok
        assert client.get("/readyz", headers=ADMIN).json()["detail"]["audit"] == "ok"
