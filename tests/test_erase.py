"""Data protection operations (issue 16 item 5): `graphrisk erase` removes a person's raw traces
(dead letters, decision notes) and, with --links, their graph node and relationships, and is
audited; `graphrisk retention` deletes old dead letters and shadow logs and prunes the audit
trail behind a signed checkpoint, which keeps it verifiable."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from api import audit as audit_module
from api.audit import AuditIntegrityError, AuditLog, audit_table, checkpoint_table, hmac_key
from api.decisions import DecisionStore
from api.privacy import REDACTED, enforce_retention, erase, subject_pseudonym
from graphrisk import cli
from graphrisk.config import Settings
from graphrisk.store import GraphStore

DAY_S = 86_400


def _own(settings: Settings, tmp_path: Path, **update: Any) -> Settings:
    return settings.model_copy(update={"audit_url": f"sqlite:///{tmp_path / 'audit.db'}", **update})


def _letter(record: dict[str, Any] | None, raw: str | None = None) -> str:
    body = {"source": "dt=2026-01-05/hr=14/part-0.parquet", "line": 1, "stage": "parse", "field": "x",
            "reason": "bad", "record": record, "raw": raw}  # fmt: skip
    return json.dumps(body, sort_keys=True) + "\n"


def _graph(store: GraphStore) -> None:
    """u1 and u2 share a device; u1 alone has a device and an email of its own."""
    node = {"first_seen": 1, "last_seen": 2, "count": 1, "props": {}}
    store.write_rows("upsert/nodes_user", [{"id": u, **node} for u in ("u1", "u2", "u10")], batch_seq=1)
    store.write_rows("upsert/nodes_device", [{"id": d, **node} for d in ("d-shared", "d-own")], batch_seq=1)
    store.write_rows("upsert/nodes_email", [{"id": "e-own", **node}], batch_seq=1)
    rel = {"first_seen": 1, "last_seen": 2, "count": 1}
    store.write_rows("upsert/rels_used_device", [{"src": "u1", "dst": "d-shared", **rel},
                                                 {"src": "u2", "dst": "d-shared", **rel},
                                                 {"src": "u1", "dst": "d-own", **rel}], batch_seq=1)  # fmt: skip
    store.write_rows("upsert/rels_has_email", [{"src": "u1", "dst": "e-own", **rel}], batch_seq=1)


def test_erase_removes_raw_traces_and_links_and_is_audited(
    store: GraphStore, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _own(settings, tmp_path)
    _graph(store)
    letters = settings.dead_letter_dir
    letters.mkdir(parents=True)
    (letters / "batch-000001.jsonl").write_text(
        _letter({"user_id": "u1", "email": "ada@example.org", "event_type": "logout"})
        + _letter({"user_id": "u2", "counterparty_id": "u1", "amount": 5})
        + _letter(None, raw='{"user_id": "u1", "email": "ada@exa')
        + _letter({"user_id": "u10", "email": "bob@example.org"})
        + _letter({"user_id": "u2", "email": "cy@example.org"})
    )
    (letters / "batch-000002.jsonl").write_text(_letter({"user_id": "u2"}))
    untouched = (letters / "batch-000002.jsonl").stat().st_mtime_ns
    decisions = DecisionStore(settings.decision_store_url)
    own = decisions.record("user", "u1", "confirmed_fraud", "Ada (u1) called from +447700900123",
                           "inv", "k", ["u1"])  # fmt: skip
    ring = decisions.record(
        "ring", "r1", "confirmed_fraud", "u1 and u2 share a device", "inv", "k", ["u1", "u2"]
    )
    other = decisions.record("ring", "r2", "false_positive", "u10 is a household", "inv", "k", ["u10"])
    log = AuditLog.from_settings(settings, background=False)
    try:
        log.append("api", "onboarding", "score", "u1", {"score": 0.9}).result(timeout=10)
        report = erase(settings, "u1", actor="dpo@bank", links=True, store=store, audit=log)

        # Dead letters: the three lines naming u1 (as user, as counterparty, in a raw line) are gone.
        assert (report.dead_letter_lines, report.dead_letter_files) == (3, 1)
        kept = (letters / "batch-000001.jsonl").read_text()
        assert "ada@" not in kept and '"u1"' not in kept
        assert "bob@example.org" in kept and "cy@example.org" in kept  # u10 is not u1
        assert (letters / "batch-000002.jsonl").stat().st_mtime_ns == untouched
        # Decision notes on u1, or naming u1, are redacted; verdicts and labels stay.
        assert report.decision_notes == 2
        notes = {r.id: r.note for r in decisions.history()}
        assert notes[own.id] == REDACTED and notes[ring.id] == REDACTED
        assert notes[other.id] == "u10 is a household"
        assert set(decisions.labels()["user_id"]) >= {"u1", "u2", "u10"}
        # The graph: u1, its relationships and the identifiers only it used are gone.
        assert (report.graph_nodes, report.graph_relationships, report.graph_identifiers) == (1, 3, 2)
        assert store.read("serving/user_exists", id="u1") == []
        assert store.read("serving/user_exists", id="u2")
        counts = store.node_counts()
        assert counts.get("User") == 2 and counts.get("Device") == 1 and counts.get("Email", 0) == 0
        # The audit trail records the erasure: who, what counts, the subject's keyed pseudonym only.
        entry = log.entry(int(report.audit_seq or 0))
        assert entry is not None and entry["action"] == "erasure" and entry["actor"] == "dpo@bank"
        assert entry["target"] == f"subject:{subject_pseudonym(settings, 'u1')}"
        detail = json.loads(entry["detail"])
        assert detail["dead_letter_lines"] == 3 and detail["graph_nodes"] == 1
        assert '"u1"' not in entry["detail"] and "ada" not in entry["detail"]
        assert log.check().ok
        # Erasing again finds nothing left.
        again = erase(settings, "u1", actor="dpo@bank", links=True, store=store, audit=log)
        assert (again.dead_letter_lines, again.decision_notes, again.graph_nodes) == (0, 0, 0)
    finally:
        log.close()
        decisions.close()

    # The command, without --links: raw traces only, the graph untouched.
    monkeypatch.setattr(cli, "load_settings", lambda config=None: settings)
    res = CliRunner().invoke(cli.app, ["erase", "u2", "--actor", "dpo@bank"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{") :])["dead_letter_lines"] == 2
    assert store.read("serving/user_exists", id="u2")


class _PastTime:
    """``time`` as api.audit sees it, set back ``days``: entries appended now look that old."""

    def __init__(self, days: float) -> None:
        self.offset = days * DAY_S

    def time(self) -> float:
        return time.time() - self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_retention_deletes_old_files_and_prunes_the_audit_trail_verifiably(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _own(settings, tmp_path, audit_retention_days=365, dead_letter_retention_days=30)
    letters = settings.dead_letter_dir
    letters.mkdir(parents=True)
    old, new = letters / "batch-000001.jsonl", letters / "batch-000002.jsonl"
    for path in (old, new):
        path.write_text(_letter({"user_id": "u1"}))
    past = time.time() - 40 * DAY_S
    os.utime(old, (past, past))
    shadow = settings.data_dir / "shadow"
    shadow.mkdir(parents=True)
    (shadow / "old.jsonl").write_text("{}\n")
    os.utime(shadow / "old.jsonl", (time.time() - 100 * DAY_S,) * 2)
    (shadow / "new.jsonl").write_text("{}\n")

    log = AuditLog.from_settings(settings, background=False)
    try:
        with monkeypatch.context() as m:
            m.setattr(audit_module, "time", _PastTime(400))
            for i in range(5):
                log.append("api", "onboarding", "score", f"u{i}", {"i": i})
            log.flush(timeout=10)
        for i in range(5, 8):
            log.append("api", "onboarding", "score", f"u{i}", {"i": i})
        log.flush(timeout=10)
        log.anchor()  # an anchor past the pruned prefix: still checked afterwards

        report = enforce_retention(settings, audit=log)
        assert (report.dead_letter_files, report.shadow_files) == (1, 1)
        assert not old.exists() and new.exists() and (shadow / "new.jsonl").exists()
        assert report.audit["pruned"] == 5 and report.audit["through_seq"] == 5
        assert [int(e["seq"]) for e in log.entries()] == [6, 7, 8, 9]  # 9: the retention run itself
        assert log.entry(9)["action"] == "retention"  # type: ignore[index]
        # Verification starts from the checkpoint: the whole chain verifies, here and in a new process.
        result = log.check(full=True)
        assert result.ok and result.pruned_through == 5 and result.head_seq == 9
        assert log.verify_entry(6)["links_to"] == "checkpoint at seq 5" and log.verify_entry(6)["prev_ok"]
        fresh = AuditLog.from_settings(settings, background=False)
        try:
            assert fresh.check().ok
            fresh.append("api", "onboarding", "score", "u9", {}).result(timeout=10)
            assert fresh.check().ok
        finally:
            fresh.close()
        # Nothing new to prune: a second run changes nothing.
        assert enforce_retention(settings, audit=log).audit["pruned"] == 0
    finally:
        log.close()

    key = hmac_key(settings)
    db = tmp_path / "audit.db"

    def tampered(name: str, change: Any) -> AuditLog:
        copy = tmp_path / f"{name}.db"
        shutil.copy(db, copy)
        other = AuditLog(f"sqlite:///{copy}", key=key)
        with other.engine.begin() as conn:
            change(conn)
        return other

    # Dropping the checkpoint (pruning without one) breaks the chain at the first kept entry.
    dropped = tampered("dropped", lambda c: c.execute(delete(checkpoint_table)))
    forged = tampered("forged", lambda c: c.execute(update(checkpoint_table).values(hash="f" * 64)))
    edited = tampered(
        "edited", lambda c: c.execute(update(audit_table).where(audit_table.c.seq == 7).values(target="x"))
    )
    try:
        assert dropped.check().problem == "broken"
        assert forged.check().problem == "bad_checkpoint"
        assert edited.check().problem == "broken"
        # A chain that does not verify is not pruned: a checkpoint would launder the edit.
        with pytest.raises(AuditIntegrityError):
            edited.prune(int(time.time() * 1000) + DAY_S * 1000)
        with edited.engine.connect() as conn:
            assert conn.execute(select(audit_table.c.seq).where(audit_table.c.seq == 6)).first() is not None
    finally:
        for log_ in (dropped, forged, edited):
            log_.close()


def test_erase_removes_the_user_from_the_snapshot_and_its_deltas(store: GraphStore, settings: Settings,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    from graphrisk.graph_schema import NodeLabel, RelType
    from pipelines.erase_snapshot import erase_user_from_snapshot
    from pipelines.refresh import refresh
    from pipelines.snapshot import load_snapshot, rebuild_snapshot, verify_snapshot
    from tests.factories import make_events

    events = make_events(users=20, hours=2)
    events.write(tmp_path / "in", hours=[0])
    refresh(settings, store, tmp_path / "in")
    events.write(tmp_path / "in", hours=[1])
    refresh(settings, store, tmp_path / "in")  # two batches: two deltas
    nodes, edges = load_snapshot(settings.snapshot_dir)
    user = "user0"  # users 0, 5, 10, 15 share a phone (tests/factories.py); user0's email is its own
    assert user in set(nodes[NodeLabel.USER]["id"])
    phone = edges[RelType.HAS_PHONE].query("src == @user")["dst"].iloc[0]
    email = edges[RelType.HAS_EMAIL].query("src == @user")["dst"].iloc[0]
    before = settings.snapshot_dir.joinpath("current").resolve()

    cut = erase_user_from_snapshot(settings.snapshot_dir, user)

    assert cut["snapshot_rows"] > 0 and cut["delta_rows"] > 0 and cut["snapshot_hash"]
    assert verify_snapshot(settings.snapshot_dir) == []  # a new version, with its own manifest
    assert settings.snapshot_dir.joinpath("current").resolve() != before
    for tables in (load_snapshot(settings.snapshot_dir), rebuild_snapshot(settings.snapshot_dir) and
                   load_snapshot(settings.snapshot_dir)):  # fmt: skip
        nodes, edges = tables
        assert user not in set(nodes[NodeLabel.USER]["id"])
        assert all(not ((e["src"] == user) | (e["dst"] == user)).any() for e in edges.values())
        assert email not in set(nodes[NodeLabel.EMAIL]["id"])  # only user0 used it
        assert phone in set(nodes[NodeLabel.PHONE]["id"])  # shared with others: kept
        assert len(nodes[NodeLabel.USER]) == 19
    assert erase_user_from_snapshot(settings.snapshot_dir, user)["snapshot_rows"] == 0
