"""Investigators' decisions on rings and users: kept beside the audit log, read back by the
console's queue (a status per ring and per user) and merged into the next training's labels.

Three verdicts (:data:`DECISIONS`): ``confirmed_fraud`` labels fraud, ``false_positive``
labels not fraud, ``needs_info`` asks for more and labels nothing (it re-opens a case decided
before). The earlier names ``cleared`` and ``needs_review`` are accepted as aliases
(:data:`ALIASES`), and rows written under them before are read with the new names.

A ring decision labels every member the ring had when it was decided and keeps the ring's id
and typology with each label; a user decision labels that user. For a user, a decision on the
user itself outranks decisions on its rings (it is the more specific verdict); among rings, a
user confirmed in any ring stays fraud even if another ring was cleared.

Console queue status (:meth:`DecisionStore.status_of_rings`, :meth:`DecisionStore.status_of_users`):
``new`` (never decided), ``open`` (latest decision ``needs_info``), ``decided`` (latest
decision ``confirmed_fraud`` or ``false_positive``). Both read a per-process cache refreshed
when another process (an API worker) has written since (one ``max(id)`` query).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Engine

from api.db import create_tables, make_engine, write_transaction

Decision = Literal["confirmed_fraud", "false_positive", "needs_info"]
DECISIONS: tuple[str, ...] = ("confirmed_fraud", "false_positive", "needs_info")
# Earlier names of the same verdicts (API bodies and rows written before the rename).
ALIASES = {"cleared": "false_positive", "needs_review": "needs_info"}
# Decision -> label of the users it covers (needs_info gives none).
LABEL_OF = {"confirmed_fraud": 1, "false_positive": 0}
Status = Literal["new", "open", "decided"]

_metadata = MetaData()
decisions_table = Table(
    "investigator_decisions",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("subject", String(8), nullable=False),  # ring | user
    Column("subject_id", String(128), nullable=False, index=True),
    Column("decision", String(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("investigator", String(128), nullable=False),  # the key holder's name (else the key hash)
    Column("key_id", String(64), nullable=False),  # the key hash, as in the audit trail
    Column("ring_id", String(128), nullable=True),
    Column("typology", String(64), nullable=True),
    Column("score", Float, nullable=True),  # the ring's or user's score when decided
    Column("model_version", String(64), nullable=True),
)
# The users a decision labels: a ring's members at decision time, or the user itself.
decision_users_table = Table(
    "investigator_decision_users",
    _metadata,
    Column("decision_id", Integer, ForeignKey("investigator_decisions.id"), primary_key=True),
    Column("user_id", String(128), primary_key=True, index=True),
)
# Written by the first version (ring decisions only); copied into the tables above once.
_LEGACY = "ring_decisions"


@dataclass(frozen=True)
class DecisionRecord:
    """One stored decision."""

    id: int
    at_ms: int
    subject: Literal["ring", "user"]
    subject_id: str
    decision: str
    note: str
    investigator: str
    key_id: str
    ring_id: str | None
    typology: str | None
    score: float | None
    model_version: str | None
    users: int


def canonical(decision: str) -> str:
    """The current name of a verdict (aliases mapped).

    Raises:
        ValueError: not a verdict under any name.
    """
    name = ALIASES.get(decision, decision)
    if name not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; one of {', '.join(DECISIONS)}")
    return name


def _status(decision: str) -> Status:
    return "open" if decision == "needs_info" else "decided"


class DecisionStore:
    """Stores decisions; answers the queue's statuses and the training labels.

    Thread-safe: writes are single transactions; the status cache is rebuilt under a lock.
    """

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        create_tables(self.engine, _metadata)  # under the write lock: workers start together
        self._migrate_legacy()
        self._lock = threading.Lock()
        self._cache_max_id: int | None = -1
        self._latest_ring: dict[str, str] = {}
        self._latest_user: dict[str, str] = {}
        self._confirmed_at: int | None = -1
        self._confirmed: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())

    def _migrate_legacy(self) -> None:
        # Rows of the first schema become ring decisions here once, so their labels still train.
        if _LEGACY not in inspect(self.engine).get_table_names():
            return
        legacy = Table(_LEGACY, MetaData(), autoload_with=self.engine)
        with write_transaction(self.engine, "decisions") as conn:
            if conn.execute(select(func.count()).select_from(decisions_table)).scalar_one():
                return  # copied before (or new decisions exist): never copy twice
            for r in conn.execute(select(legacy).order_by(legacy.c.id)).all():
                new_id = conn.execute(decisions_table.insert().values(
                    at_ms=r.at_ms, subject="ring", subject_id=r.ring_id, decision=ALIASES.get(r.decision, r.decision),
                    note=r.note, investigator=r.actor, key_id=r.actor, ring_id=r.ring_id)).inserted_primary_key[0]  # fmt: skip
                users = sorted({u for u in str(r.members).split(",") if u})
                if users:
                    conn.execute(
                        decision_users_table.insert(), [{"decision_id": new_id, "user_id": u} for u in users]
                    )

    def record(
        self,
        subject: Literal["ring", "user"],
        subject_id: str,
        decision: str,
        note: str,
        investigator: str,
        key_id: str,
        users: Iterable[str],
        ring_id: str | None = None,
        typology: str | None = None,
        score: float | None = None,
        model_version: str | None = None,
    ) -> DecisionRecord:
        """Store one decision and the users it labels; returns it as stored.

        Raises:
            ValueError: ``decision`` is not a verdict, or ``subject`` is not ring or user.
        """
        if subject not in ("ring", "user"):
            raise ValueError(f"subject must be ring or user, not {subject!r}")
        name = canonical(decision)
        labelled = sorted(set(users))
        at_ms = int(time.time() * 1000)
        with write_transaction(self.engine, "decisions") as conn:
            new_id = int(conn.execute(decisions_table.insert().values(
                at_ms=at_ms, subject=subject, subject_id=subject_id, decision=name, note=note,
                investigator=investigator, key_id=key_id, ring_id=ring_id, typology=typology, score=score,
                model_version=model_version)).inserted_primary_key[0])  # fmt: skip
            if labelled:
                conn.execute(
                    decision_users_table.insert(), [{"decision_id": new_id, "user_id": u} for u in labelled]
                )
        return DecisionRecord(new_id, at_ms, subject, subject_id, name, note, investigator, key_id, ring_id,
                              typology, score, model_version, len(labelled))  # fmt: skip

    def history(
        self,
        ring_id: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[DecisionRecord]:
        """Decisions, newest first: all, those on a ring, or those labelling a user (its own
        and its rings'); ``before_id`` pages (ids below it)."""
        d, du = decisions_table, decision_users_table
        counts = select(du.c.decision_id, func.count().label("users")).group_by(du.c.decision_id).subquery()
        q = select(d, func.coalesce(counts.c.users, 0).label("users")).outerjoin(
            counts, counts.c.decision_id == d.c.id
        )
        if ring_id is not None:
            q = q.where(d.c.subject == "ring", d.c.subject_id == ring_id)
        if user_id is not None:
            q = q.where(d.c.id.in_(select(du.c.decision_id).where(du.c.user_id == user_id)))
        if before_id is not None:
            q = q.where(d.c.id < before_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(d.c.id.desc()).limit(limit)).all()
        return [
            DecisionRecord(
                r.id,
                r.at_ms,
                r.subject,
                r.subject_id,
                r.decision,
                r.note,
                r.investigator,
                r.key_id,
                r.ring_id,
                r.typology,
                r.score,
                r.model_version,
                int(r.users),
            )
            for r in rows
        ]

    def _refresh_cache(self) -> None:
        with self.engine.connect() as conn:
            max_id = conn.execute(select(func.max(decisions_table.c.id))).scalar_one_or_none()
            if max_id == self._cache_max_id:
                return
            rows = conn.execute(
                select(decisions_table.c.subject, decisions_table.c.subject_id, decisions_table.c.decision,
                       decision_users_table.c.user_id)
                .outerjoin(decision_users_table, decision_users_table.c.decision_id == decisions_table.c.id)
                .order_by(decisions_table.c.id)
            ).all()  # fmt: skip
        rings: dict[str, str] = {}
        users: dict[str, str] = {}
        for subject, subject_id, decision, user in rows:
            if subject == "ring":
                rings[subject_id] = decision
            # A user's case follows the latest decision touching it (its own or a ring's).
            if user is not None:
                users[user] = decision
        self._latest_ring, self._latest_user, self._cache_max_id = rings, users, max_id

    def latest_for(self, subject: Literal["ring", "user"]) -> dict[str, str]:
        """The latest decision (canonical name) per decided ring or user id; undecided ids absent.

        For users, the latest decision that labels them: on the user, or on a ring they were in.
        """
        with self._lock:
            self._refresh_cache()
            return dict(self._latest_ring if subject == "ring" else self._latest_user)

    def status_of_rings(self, ring_ids: Iterable[str] | None = None) -> dict[str, Status]:
        """Queue status per ring: ``new`` / ``open`` / ``decided``.

        With ``ring_ids``, every one of them gets a status (``new`` when never decided); without,
        only rings that have a decision are returned (any other ring is ``new``).
        """
        latest = self.latest_for("ring")
        if ring_ids is None:
            return {r: _status(d) for r, d in latest.items()}
        return {r: _status(latest[r]) if r in latest else "new" for r in ring_ids}

    def status_of_users(self, user_ids: Iterable[str] | None = None) -> dict[str, Status]:
        """Queue status per user, as :meth:`status_of_rings` (a ring decision covers its members)."""
        latest = self.latest_for("user")
        if user_ids is None:
            return {u: _status(d) for u, d in latest.items()}
        return {u: _status(latest[u]) if u in latest else "new" for u in user_ids}

    def labels(self) -> pd.DataFrame:
        """Training labels from decisions: ``user_id, is_fraud, ring_id, typology, decision_id, decided_at``.

        Per subject (a ring, a user) its latest decision counts; ``needs_info`` withdraws that
        subject's label. A user's own decision outranks its rings'; among rings, fraud wins.
        """
        d, du = decisions_table, decision_users_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.c.id, d.c.at_ms, d.c.subject, d.c.subject_id, d.c.decision, d.c.ring_id, d.c.typology,
                       du.c.user_id)
                .join(du, du.c.decision_id == d.c.id)
                .order_by(d.c.id)
            ).all()  # fmt: skip
        latest_id: dict[tuple[str, str], int] = {}
        for r in rows:
            latest_id[(r.subject, r.subject_id)] = r.id
        columns = ["user_id", "is_fraud", "ring_id", "typology", "decision_id", "decided_at"]
        own: dict[str, tuple[int, ...]] = {}
        by_ring: dict[str, tuple[int, ...]] = {}
        for r in rows:
            if latest_id[(r.subject, r.subject_id)] != r.id or r.decision not in LABEL_OF:
                continue
            entry = (LABEL_OF[r.decision], r.ring_id, r.typology, r.id, r.at_ms)
            if r.subject == "user":
                own[r.user_id] = entry
            else:
                prev = by_ring.get(r.user_id)
                # Fraud in any ring wins; between equal labels the later decision does.
                if prev is None or (entry[0], entry[3]) > (prev[0], prev[3]):
                    by_ring[r.user_id] = entry
        merged = {**by_ring, **own}
        frame = pd.DataFrame([(u, *e) for u, e in sorted(merged.items())], columns=columns)
        return frame.astype({"is_fraud": "int64", "decision_id": "int64", "decided_at": "int64"})

    def confirmed(self) -> tuple[frozenset[str], frozenset[str]]:
        """Users decided as fraud, and users decided as not fraud (from :meth:`labels`; cached
        until a decision is added, by this process or another)."""
        with self._lock:
            with self.engine.connect() as conn:
                max_id = conn.execute(select(func.max(decisions_table.c.id))).scalar_one_or_none()
            if max_id != self._confirmed_at:
                table = self.labels()
                fraud = table["is_fraud"] == 1
                self._confirmed = (
                    frozenset(table.loc[fraud, "user_id"]),
                    frozenset(table.loc[~fraud, "user_id"]),
                )
                self._confirmed_at = max_id
            return self._confirmed

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


def merge_labels(base: pd.DataFrame, decided: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """``base`` labels (``user_id, is_fraud``, maybe more columns) with decided labels merged in.

    A decided user's label replaces its earlier one (the investigator's verdict is newer than
    the label file); decided users without an earlier label are added. Ring decisions bring
    ``ring_id`` and ``typology``, which fill those columns when the base has them or adds them.
    Nothing else of ``base`` is dropped.

    Returns:
        The merged labels and counts: ``decided`` (labels from decisions), ``changed`` (earlier
        labels a decision replaced with another value), ``added`` (users with no earlier label).
    """
    if decided.empty:
        return base.copy(), {"decided": 0, "changed": 0, "added": 0}
    out = base.drop_duplicates("user_id", keep="last").reset_index(drop=True)
    # Wide enough for any label (files come as int8), and plain objects for the ring columns
    # (string or categorical columns refuse values they have not seen).
    out["is_fraud"] = out["is_fraud"].astype("int64")
    for column in ("ring_id", "typology"):
        out[column] = out[column].astype(object) if column in out else None
    decided = decided.drop_duplicates("user_id", keep="last").set_index("user_id")
    position = pd.Index(out["user_id"]).get_indexer(decided.index)
    present = position >= 0
    before = out["is_fraud"].to_numpy()[position[present]]
    now = decided["is_fraud"].to_numpy()[present]
    out.loc[position[present], "is_fraud"] = now
    for column in ("ring_id", "typology"):
        values = decided[column].to_numpy()[present]
        has = pd.notna(values)
        out.loc[position[present][has], column] = values[has]
    new = decided[~present].reset_index()
    added = new.reindex(columns=out.columns)
    out = pd.concat([out, added], ignore_index=True) if len(added) else out
    out["is_fraud"] = out["is_fraud"].astype("int64")
    return out, {"decided": len(decided), "changed": int((before != now).sum()), "added": len(new)}


def training_labels(base: pd.DataFrame, url: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """:func:`merge_labels` of ``base`` and the decisions stored at ``url`` (what ``graphrisk
    train`` reads: no export step)."""
    store = DecisionStore(url)
    try:
        decided = store.labels()
    finally:
        store.close()
    return merge_labels(base, decided)
