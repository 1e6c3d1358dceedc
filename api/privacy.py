"""Data protection operations: erasure of one person (``graphrisk erase``) and retention
(``graphrisk retention``, run by the hourly job at the end of ``graphrisk refresh``).

Where a person's data is, and what each operation does with it:

- **Dead letters** (``data_dir/dead_letters/*.jsonl``) keep rejected records *raw*, so that
  they can be fixed and replayed. Erasure removes every line whose record names the user (as
  ``user_id`` or ``counterparty_id``, or, for a line that could not be parsed, anywhere in the
  raw text); retention deletes files older than ``dead_letter_retention_days``.
- **Decision notes** (the decision store) are investigators' free text. Erasure replaces the
  note of every decision on the user, and of any decision whose note names the user, with
  :data:`REDACTED`; the verdicts stay (they are the bank's own record, and training labels).
- **Pseudonymous links** (the graph store: the user's node and its relationships to keyed
  hashes of identifiers; the API's recent applications) are removed with ``--links``, where the
  law requires it (no overriding legal ground to keep them, such as an open fraud case).
- **The audit trail** never holds raw values (hashes, ids and counts). It is append-only:
  erasure is recorded in it, and entries leave it only through retention, older than
  ``audit_retention_days``, behind a signed checkpoint that keeps the chain verifiable.
- **Shadow logs** (``data_dir/shadow/``: a challenger's scores, logged beside the champion's)
  are deleted after ``shadow_log_retention_days``.
- **Served feature rows** (the audit database's ``served_feature_rows``: the model-input row each
  new applicant was scored from, derived counts keyed by the pseudonymous user id, kept for the
  training-serving skew check) are deleted after ``served_rows_retention_days``, and a person's
  rows with their pseudonymous links (``--links``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, update

from api.applications import applications_table
from api.audit import AuditLog
from api.db import create_tables, make_engine, write_transaction
from api.decisions import DecisionStore, decisions_table
from api.served_rows import ServedRows
from graphrisk.config import Settings
from graphrisk.store import GraphStore
from pipelines.erase_snapshot import erase_user_from_snapshot

REDACTED = "[redacted: data subject erasure]"
SHADOW_DIR = "shadow"
DAY_MS = 86_400_000
# Record fields of a dead letter that name a user (pipelines.records.DeadLetter.record).
_USER_FIELDS = ("user_id", "counterparty_id")


@dataclass
class ErasureReport:
    """What an erasure removed: counts only, never a value."""

    subject: str  # the keyed pseudonym of the user id (subject_pseudonym), not the id
    dead_letter_lines: int = 0
    dead_letter_files: int = 0
    decision_notes: int = 0
    links: bool = False
    recent_applications: int = 0
    served_rows: int = 0
    graph_identifiers: int = 0
    graph_relationships: int = 0
    graph_nodes: int = 0
    snapshot_rows: int = 0
    snapshot_delta_rows: int = 0
    audit_seq: int | None = None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the JSON report and the audit entry."""
        return asdict(self)


def subject_pseudonym(settings: Settings, user_id: str) -> str:
    """A keyed hash naming the person in the audit trail: whoever holds the pseudonymisation key
    can check that a given user was erased, and the trail itself names no one."""
    key = settings.pseudonymisation_key.get_secret_value().encode()
    return hmac.new(key, b"erasure:" + user_id.encode(), hashlib.sha256).hexdigest()[:32]


def _names_user(line: str, user_id: str, token: re.Pattern[str]) -> bool:
    """Whether one dead-letter line's record names ``user_id``."""
    try:
        letter = json.loads(line)
    except ValueError:
        return bool(token.search(line))  # not even JSON: judge by its text
    record = letter.get("record") if isinstance(letter, dict) else None
    if isinstance(record, dict) and any(str(record.get(f)) == user_id for f in _USER_FIELDS if record.get(f)):
        return True
    raw = letter.get("raw") if isinstance(letter, dict) else None
    return isinstance(raw, str) and bool(token.search(raw))


def _token(user_id: str) -> re.Pattern[str]:
    # The id as a whole token: erasing u0011 must not touch u00115's lines.
    return re.compile(rf"(?<![\w.-]){re.escape(user_id)}(?![\w.-])")


def erase_dead_letters(dead_letter_dir: Path, user_id: str) -> dict[str, int]:
    """Remove the lines naming ``user_id`` from every dead-letter file; ``{file: lines removed}``.

    Each changed file is rewritten beside itself and renamed into place (a crash leaves the old
    file or the new one, never half), keeping its modification time so retention still ages it.
    """
    token = _token(user_id)
    removed: dict[str, int] = {}
    if not dead_letter_dir.is_dir():
        return removed
    for path in sorted(dead_letter_dir.rglob("*.jsonl")):
        with path.open() as fh:
            lines = fh.readlines()
        keep = [ln for ln in lines if not (ln.strip() and _names_user(ln, user_id, token))]
        if len(keep) == len(lines):
            continue
        st = path.stat()
        tmp = path.with_name(f".{path.name}.erase-{os.getpid()}")
        tmp.write_text("".join(keep))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        tmp.replace(path)
        removed[str(path.relative_to(dead_letter_dir))] = len(lines) - len(keep)
    return removed


def redact_decision_notes(url: str, user_id: str) -> int:
    """Replace the note of every decision on ``user_id``, or whose note names it, with
    :data:`REDACTED`; returns how many notes changed."""
    token = _token(user_id)
    store = DecisionStore(url)  # creates or migrates the tables, as the API would
    try:
        with write_transaction(store.engine, "investigator_decisions") as conn:
            rows = conn.execute(
                select(
                    decisions_table.c.id,
                    decisions_table.c.note,
                    decisions_table.c.subject,
                    decisions_table.c.subject_id,
                ).where(
                    decisions_table.c.note != REDACTED,
                    or_(
                        (decisions_table.c.subject == "user") & (decisions_table.c.subject_id == user_id),
                        decisions_table.c.note.contains(user_id, autoescape=True),
                    ),
                )
            ).all()
            # The LIKE pre-filter matches substrings; a note about u00115 does not name u0011.
            ids = [
                int(r.id)
                for r in rows
                if (r.subject == "user" and r.subject_id == user_id) or token.search(str(r.note))
            ]
            if ids:
                conn.execute(
                    update(decisions_table).where(decisions_table.c.id.in_(ids)).values(note=REDACTED)
                )
        return len(ids)
    finally:
        store.close()


def forget_applications(url: str, user_id: str) -> int:
    """Delete the user's rows of the API's recent applications (pseudonymised identifiers)."""
    engine = make_engine(url)
    try:
        create_tables(engine, applications_table.metadata)
        with engine.begin() as conn:
            return int(conn.execute(delete(applications_table).where(applications_table.c.user_id == user_id)).rowcount)  # fmt: skip
    finally:
        engine.dispose()


def forget_served_rows(url: str, user_id: str) -> int:
    """Delete the user's served feature rows (:mod:`api.served_rows`)."""
    served = ServedRows(url)
    try:
        return served.forget(user_id)
    finally:
        served.close()


def erase_graph_links(store: GraphStore, user_id: str) -> dict[str, int]:
    """Delete the user's node and relationships, and the identifier nodes only it used."""
    identifiers = store.write("admin/erase_user_identifiers", id=user_id)
    user = store.write("admin/erase_user", id=user_id)
    return {
        "identifiers": int(identifiers[0]["deleted"]) if identifiers else 0,
        "relationships": (int(identifiers[0]["rels"] or 0) if identifiers else 0)
        + (int(user[0]["rels"]) if user else 0),
        "nodes": int(user[0]["nodes"]) if user else 0,
    }


def erase(
    settings: Settings,
    user_id: str,
    *,
    actor: str,
    links: bool = False,
    store: GraphStore | None = None,
    audit: AuditLog | None = None,
) -> ErasureReport:
    """Erase a person's raw-value traces (and with ``links`` their pseudonymous links), then
    record the erasure in the audit trail: who, what counts, under the subject's pseudonym.

    ``store`` is needed with ``links``; ``audit`` defaults to the configured log.

    Raises:
        ValueError: ``links`` without a store, or an empty user id.
        StoreError: the graph store failed (the raw traces are erased by then; re-run).
    """
    if not user_id.strip():
        raise ValueError("an empty user id")
    if links and store is None:
        raise ValueError("--links needs the graph store")
    report = ErasureReport(subject=subject_pseudonym(settings, user_id), links=links)
    files = erase_dead_letters(settings.dead_letter_dir, user_id)
    report.dead_letter_files, report.dead_letter_lines = len(files), sum(files.values())
    report.files = sorted(files)
    report.decision_notes = redact_decision_notes(settings.decision_store_url, user_id)
    if links:
        assert store is not None
        report.recent_applications = forget_applications(settings.audit_db_url, user_id)
        report.served_rows = forget_served_rows(settings.audit_db_url, user_id)
        graph = erase_graph_links(store, user_id)
        report.graph_identifiers = graph["identifiers"]
        report.graph_relationships = graph["relationships"]
        report.graph_nodes = graph["nodes"]
        # The training snapshot and its deltas too, or the next scoring run publishes them again.
        cut = erase_user_from_snapshot(settings.snapshot_dir, user_id)
        report.snapshot_rows, report.snapshot_delta_rows = cut["snapshot_rows"], cut["delta_rows"]
    own = audit is None
    log = audit or AuditLog.from_settings(settings, background=False)
    try:
        detail = report.to_dict()
        detail.pop("audit_seq")
        report.audit_seq = log.append(actor, "admin", "erasure", f"subject:{report.subject}", detail).result(
            timeout=60
        )
    finally:
        if own:
            log.close()
    return report


@dataclass
class RetentionReport:
    """What a retention run deleted."""

    dead_letter_files: int = 0
    shadow_files: int = 0
    served_rows: int = 0
    audit: dict[str, Any] = field(default_factory=dict)
    audit_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the JSON report."""
        return asdict(self)


def _delete_older(folder: Path, pattern: str, cutoff_s: float) -> int:
    """Delete the files under ``folder`` matching ``pattern`` last modified before ``cutoff_s``."""
    if not folder.is_dir():
        return 0
    n = 0
    for path in folder.rglob(pattern):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff_s:
                path.unlink()
                n += 1
        except FileNotFoundError:
            continue  # removed meanwhile (another run)
    return n


def enforce_retention(
    settings: Settings, *, actor: str = "retention", now_s: float | None = None, audit: AuditLog | None = None
) -> RetentionReport:
    """Delete dead letters, shadow logs and served feature rows older than their retention, and prune audit entries
    older than theirs behind a signed checkpoint (:meth:`api.audit.AuditLog.prune`); the run is
    itself audited.

    Raises:
        AuditIntegrityError: the audit chain does not verify (files are deleted first; the
            audit trail is not pruned).
    """
    now = time.time() if now_s is None else now_s
    report = RetentionReport()
    report.dead_letter_files = _delete_older(
        settings.dead_letter_dir, "*.jsonl", now - settings.dead_letter_retention_days * 86_400
    )
    report.shadow_files = _delete_older(
        settings.data_dir / SHADOW_DIR, "*", now - settings.shadow_log_retention_days * 86_400
    )
    served = ServedRows(settings.audit_db_url)
    try:
        report.served_rows = served.prune(int(now * 1000) - settings.served_rows_retention_days * DAY_MS)
    finally:
        served.close()
    own = audit is None
    log = audit or AuditLog.from_settings(settings, background=False)
    try:
        before_ms = int(now * 1000) - settings.audit_retention_days * DAY_MS
        report.audit = log.prune(before_ms)
        detail = {k: v for k, v in report.to_dict().items() if k != "audit_seq"}
        report.audit_seq = log.append(actor, "admin", "retention", "data", detail).result(timeout=60)
    finally:
        if own:
            log.close()
    return report
