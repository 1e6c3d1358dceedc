"""The audit trail: appends are chained, tampering is detected, export round-trips."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import update

from api.audit import AuditLog, audit_table


def test_chain_verifies_and_detects_tampering(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    key = b"test-audit-chain-key-0123456789"
    log = AuditLog(url, key=key)
    for i in range(50):
        log.append("key:abc", "onboarding", "score", f"user{i}", {"score": i / 100, "model_version": "v1"})
    log.flush()
    assert log.verify() == (True, None)
    n = log.export_jsonl(tmp_path / "audit.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert n == len(lines) == 50 and lines[0]["seq"] == 1 and lines[-1]["target"] == "user49"
    log.close()

    reopened = AuditLog(url, key=key)  # the chain continues across restarts
    reopened.append("key:def", "investigator", "decision", "ring-1", {"decision": "cleared"})
    reopened.flush()
    assert reopened.verify() == (True, None)
    with reopened.engine.begin() as conn:
        conn.execute(update(audit_table).where(audit_table.c.seq == 17).values(detail='{"score": 0.99}'))
    assert reopened.verify() == (False, 17)
    reopened.close()
