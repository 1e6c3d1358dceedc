"""Truncating the audit chain's tail, or rewriting it with recomputed hashes, is detected (issue 12, item 12).

Before the fix the chain was plain SHA-256 with nothing kept outside the database: deleting the
last rows, or rewriting rows from any point and recomputing the hashes after them, left a chain
that verified.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, delete, select, update
from typer.testing import CliRunner

from api.audit import GENESIS, AuditLog, _entry_hash, _keyed_hash, audit_table
from graphrisk.cli import app

KEY = b"fault-suite-audit-key-0123456789"


def _metric(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def _filled(url: str, anchors: Path, n: int = 40, after_anchor: int = 5) -> AuditLog:
    """A keyed log of ``n`` entries, its head anchored at ``n``, then ``after_anchor`` more."""
    log = AuditLog(url, key=KEY, anchors=anchors)
    for i in range(n):
        log.append("key:a", "onboarding", "score", f"user{i}", {"score": i / 100})
    log.flush(timeout=10)
    assert log.anchor() is not None
    for i in range(after_anchor):
        log.append("key:a", "onboarding", "score", f"late{i}", {"score": 0.5})
    log.flush(timeout=10)
    assert log.verify() == (True, None) and _metric("graphrisk_audit_verification_failed") == 0
    return log


def _rewrite_from(url: str, start: int, key: bytes | None) -> None:
    """Change entry ``start``'s detail and recompute every hash from there (plain SHA-256 when
    ``key`` is None, as someone without the key would)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(audit_table).order_by(audit_table.c.seq))]
        prev = rows[start - 2]["hash"] if start > 1 else GENESIS
        for r in rows[start - 1 :]:
            if r["seq"] == start:
                r["detail"] = json.dumps({"score": 0.01})
            fields = (
                prev,
                r["seq"],
                r["at_ms"],
                r["actor"],
                r["role"],
                r["action"],
                r["target"],
                r["detail"],
            )
            digest = _keyed_hash(key, *fields) if key else _entry_hash(*fields)
            conn.execute(update(audit_table).where(audit_table.c.seq == r["seq"])
                         .values(detail=r["detail"], prev_hash=prev, hash=digest))  # fmt: skip
            prev = digest
    engine.dispose()


def _truncate_after(url: str, seq: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(delete(audit_table).where(audit_table.c.seq > seq))
    engine.dispose()


def test_truncated_tail_is_detected(audit_db_url: str, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    log = _filled(audit_db_url, anchors)
    try:
        # Past the last anchor: the process that wrote seq 45 knows the chain reached it.
        _truncate_after(audit_db_url, 43)
        assert log.verify() == (False, 44)
        assert log.last_verification is not None and log.last_verification.problem == "truncated"
        assert _metric("graphrisk_audit_verification_failed") == 1
        assert _metric("graphrisk_audit_sequence_shrunk") == 1
        # Appending past the cut does not hide it: seq 45 is now another entry.
        for i in range(3):
            log.append("key:a", "onboarding", "score", f"after-cut{i}", {})
        log.flush(timeout=10)
        result = log.check()
        assert not result.ok and result.problem == "rewritten" and result.first_bad_seq == 45, result
        assert _metric("graphrisk_audit_sequence_shrunk") == 1
    finally:
        log.close()
    # The evidence was anchored: a process that never saw seq 45 finds the rewrite too.
    other = AuditLog(audit_db_url, key=KEY, anchors=anchors)
    try:
        assert other.verify() == (False, 45)
    finally:
        other.close()

    # Before the anchor at seq 40: a freshly started process sees it from the anchor file alone,
    # in its verification on start.
    _truncate_after(audit_db_url, 30)
    fresh = AuditLog(audit_db_url, key=KEY, anchors=anchors, verify_interval_s=60)
    try:
        deadline = time.monotonic() + 10
        while fresh.last_verification is None and time.monotonic() < deadline:
            time.sleep(0.02)
        result = fresh.last_verification
        assert result is not None and not result.ok and result.problem == "truncated", result
        assert result.first_bad_seq == 31 and result.anchored_seq == 45
        assert _metric("graphrisk_audit_verification_failed") == 1
        assert _metric("graphrisk_audit_sequence_shrunk") == 1
    finally:
        fresh.close()


def test_rewrite_with_recomputed_plain_hashes_is_detected(audit_db_url: str, tmp_path: Path) -> None:
    log = _filled(audit_db_url, tmp_path / "anchors.jsonl")
    try:
        _rewrite_from(audit_db_url, 20, key=None)
        assert log.verify() == (False, 20)
        assert log.last_verification is not None
        assert log.last_verification.problem == "unkeyed_after_keyed"
        assert _metric("graphrisk_audit_verification_failed") == 1
    finally:
        log.close()


def test_rewrite_with_the_key_is_caught_by_the_anchors(audit_db_url: str, tmp_path: Path) -> None:
    # Someone holding the key but not the anchor file rewrites seq 35 onwards and re-chains it.
    log = _filled(audit_db_url, tmp_path / "anchors.jsonl")
    try:
        _rewrite_from(audit_db_url, 35, key=KEY)
        result = log.check()
        assert not result.ok and result.problem == "rewritten" and result.first_bad_seq == 40, result
        assert _metric("graphrisk_audit_verification_failed") == 1
    finally:
        log.close()


def test_scheduled_verification_raises_the_alert(audit_db_url: str, tmp_path: Path) -> None:
    log = AuditLog(audit_db_url, key=KEY, anchors=tmp_path / "a.jsonl", verify_interval_s=0.2)
    try:
        for i in range(10):
            log.append("key:a", "onboarding", "score", f"user{i}", {})
        log.flush(timeout=10)
        deadline = time.monotonic() + 5
        while (log.last_verification is None or log.last_verification.entries < 10) and time.monotonic() < deadline:  # fmt: skip
            time.sleep(0.05)
        assert log.last_verification is not None and log.last_verification.ok
        _rewrite_from(audit_db_url, 4, key=None)
        deadline = time.monotonic() + 5
        while log.last_verification.ok and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not log.last_verification.ok and log.last_verification.first_bad_seq == 4
        assert _metric("graphrisk_audit_verification_failed") == 1
        assert "failed" in log.chain_status()
    finally:
        log.close()


def test_forged_anchor_is_detected(tmp_path: Path) -> None:
    url, anchors = f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "anchors.jsonl"
    log = _filled(url, anchors)
    try:
        line = json.loads(anchors.read_text())
        anchors.write_text(json.dumps(line | {"seq": 30}) + "\n")  # pretend the chain ended at 30
        result = log.check()
        assert not result.ok and result.problem == "bad_anchor", result
    finally:
        log.close()


def test_legacy_unkeyed_chain_is_reported_and_continued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditLog(url, key=KEY).close()  # the table, as the previous version created it
    engine = create_engine(url)
    prev, rows = GENESIS, []
    for seq in range(1, 11):  # ten entries the previous version wrote (plain SHA-256)
        fields = (seq, 1_700_000_000_000 + seq, "key:old", "onboarding", "score", f"u{seq}", "{}")
        digest = _entry_hash(prev, *fields)
        rows.append(dict(zip(["seq", "at_ms", "actor", "role", "action", "target", "detail"], fields, strict=True))
                    | {"prev_hash": prev, "hash": digest})  # fmt: skip
        prev = digest
    with engine.begin() as conn:
        conn.execute(audit_table.insert(), rows)
    engine.dispose()

    log = AuditLog(url, key=KEY)
    try:
        log.append("key:new", "onboarding", "score", "u11", {}).result(timeout=10)
        result = log.check()
        assert result.ok and not result.keyed and result.unkeyed_entries == 10 and result.entries == 11
        assert _metric("graphrisk_audit_unkeyed_entries") == 10
        assert "10 un-keyed" in log.chain_status()
    finally:
        log.close()


@pytest.mark.parametrize("tamper", ["none", "truncate"])
def test_cli_audit_verify(tamper: str, tmp_path: Path) -> None:
    env = {"GRAPHRISK_ENVIRONMENT": "test", "GRAPHRISK_DATA_DIR": str(tmp_path / "var"),
           "GRAPHRISK_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
           "GRAPHRISK_AUDIT_HMAC_KEY": KEY.decode(),
           "GRAPHRISK_AUDIT_ANCHOR_PATH": str(tmp_path / "anchors.jsonl")}  # fmt: skip
    _filled(env["GRAPHRISK_AUDIT_URL"], tmp_path / "anchors.jsonl").close()
    if tamper == "truncate":
        _truncate_after(env["GRAPHRISK_AUDIT_URL"], 39)
    res = CliRunner().invoke(app, ["audit", "verify"], env=env)
    report = json.loads(res.stdout[: res.stdout.rindex("}") + 1])
    if tamper == "none":
        assert res.exit_code == 0 and report["ok"] and report["keyed"] and report["head_seq"] == 45
    else:
        assert res.exit_code == 1 and report["problem"] == "truncated" and report["first_bad_seq"] == 40


@pytest.mark.parametrize("tamper", ["truncate", "rewrite_tail", "edit_new_entry"])
def test_incremental_verification_catches_tail_tampering(tamper: str, tmp_path: Path) -> None:
    # The scheduled runs between full ones verify only what was appended since the last one.
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = _filled(url, tmp_path / "anchors.jsonl")  # a full verification passed at seq 45
    try:
        for i in range(5):
            log.append("key:a", "onboarding", "score", f"new{i}", {})
        log.flush(timeout=10)
        assert log.check(full=False).ok and log.last_verification.entries == 50
        for i in range(5):
            log.append("key:a", "onboarding", "score", f"newer{i}", {})
        log.flush(timeout=10)
        if tamper == "truncate":
            _truncate_after(url, 47)
            expected = (False, 48)
        elif tamper == "rewrite_tail":
            _rewrite_from(url, 30, key=None)
            expected = (False, 30)
        else:
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(update(audit_table).where(audit_table.c.seq == 53).values(detail="{}x"))
            engine.dispose()
            expected = (False, 53)
        result = log.check(full=False)
        assert (result.ok, result.first_bad_seq) == expected, result
        assert _metric("graphrisk_audit_verification_failed") == 1
    finally:
        log.close()
