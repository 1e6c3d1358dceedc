"""Investigators' decisions on rings, kept beside the audit log and exported as training labels."""

from __future__ import annotations

import time

import pandas as pd
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, select
from sqlalchemy.engine import Engine

from api.db import create_tables, make_engine

_metadata = MetaData()
decisions_table = Table(
    "ring_decisions",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("ring_id", String(128), nullable=False, index=True),
    Column("decision", String(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("members", Text, nullable=False),  # comma-separated user ids at decision time
)

# Decision -> label for the members (needs_review gives no label).
LABEL_OF = {"confirmed_fraud": 1, "cleared": 0}


class DecisionStore:
    """Stores decisions; the latest decision per ring wins when exporting labels."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        create_tables(self.engine, _metadata)  # under the write lock: workers start together

    def record(self, ring_id: str, decision: str, note: str, actor: str, members: list[str]) -> int:
        """Store one decision; returns its id."""
        with self.engine.begin() as conn:
            result = conn.execute(decisions_table.insert().values(
                at_ms=int(time.time() * 1000), ring_id=ring_id, decision=decision, note=note, actor=actor,
                members=",".join(members)))  # fmt: skip
            return int(result.inserted_primary_key[0])

    def labels(self) -> pd.DataFrame:
        """``user_id, is_fraud`` from the latest labelling decision of each ring."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(decisions_table).order_by(decisions_table.c.id)).all()
        latest: dict[str, tuple[str, str]] = {}
        for r in rows:
            if r.decision in LABEL_OF:
                latest[r.ring_id] = (r.decision, r.members)
        out = [(u, LABEL_OF[d]) for d, members in latest.values() for u in members.split(",") if u]
        # A user confirmed in any ring stays fraud even if cleared in another.
        frame = pd.DataFrame(out, columns=["user_id", "is_fraud"])
        return frame.groupby("user_id", as_index=False)["is_fraud"].max()

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()
