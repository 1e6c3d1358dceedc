"""Applications scored since the last refresh, so the next applicant on the same device sees them.

The graph store learns of an application only when the hourly refresh ingests its event. Until
then, the API keeps each scored applicant's *pseudonymised* identifier nodes (keyed hashes, the
store's own ids: no raw personal data) in a table beside the audit trail, shared by every API
worker. Rows older than the retention are pruned on write; the store holds them by then.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, and_, delete, or_, select
from sqlalchemy.engine import Engine

from api.db import create_tables, make_engine
from graphrisk.graph_schema import RelType

_metadata = MetaData()
applications_table = Table(
    "recent_applications",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False, index=True),
    Column("user_id", String(128), nullable=False),
    Column("rel", String(32), nullable=False),
    Column("node", String(128), nullable=False, index=True),
)


class RecentApplications:
    """Identifier nodes of recently scored applicants.

    Args:
        url: SQLAlchemy URL (the audit database).
        retention_ms: How long a row is kept; longer than a refresh interval plus its run time.
    """

    def __init__(self, url: str, retention_ms: int) -> None:
        self.engine: Engine = make_engine(url)
        self.retention_ms = retention_ms
        create_tables(self.engine, _metadata)  # under the write lock: workers start together

    def record(self, user_id: str, nodes: dict[RelType, str], at_ms: int) -> None:
        """Keep one scored applicant's identifier nodes; prune rows past the retention."""
        rows = [
            {"at_ms": at_ms, "user_id": user_id, "rel": rel.value, "node": node}
            for rel, node in nodes.items()
        ]
        with self.engine.begin() as conn:
            conn.execute(
                delete(applications_table).where(applications_table.c.at_ms < at_ms - self.retention_ms)
            )
            if rows:
                conn.execute(applications_table.insert(), rows)

    def links(self, nodes: dict[RelType, str], before_ms: int) -> list[dict[str, Any]]:
        """Earlier applications (``at_ms < before_ms``, within the retention) on any of ``nodes``,
        as ``rel, node, user, linked_at`` rows (:func:`gnn.online.with_recent`)."""
        if not nodes:
            return []
        t = applications_table.c
        wanted = [and_(t.rel == rel.value, t.node == node) for rel, node in nodes.items()]
        query = select(t.rel, t.node, t.user_id, t.at_ms).where(
            t.at_ms < before_ms, t.at_ms >= before_ms - self.retention_ms, or_(*wanted)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.at_ms, t.id)).all()
        return [{"rel": r.rel, "node": r.node, "user": r.user_id, "linked_at": int(r.at_ms)} for r in rows]

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()
