"""The feature rows the API actually served, kept for the training-serving skew check.

Each new applicant the API scores with a tree model (:class:`gnn.online.ApplicantScorer` on its
fast path) has one model-input row. The row is kept here, in the audit database beside the
recent applications, keyed by the pseudonymous user id, the decision time and the model
version, with the row's lineage hash (:func:`gnn.lineage.feature_row_hash`, the one in the score's
audit entry). A row holds derived counts and ages only (users on an identifier, velocities,
neighbours' aggregates), never a raw value the applicant sent. The monitoring run
(:func:`gnn.monitor.serving.applicant_skew`) compares them with the batch as-of onboarding rows
of the same users once their events are in the event log.

Rows are deleted after ``served_rows_retention_days`` (:func:`api.privacy.enforce_retention`),
and a person's rows with their pseudonymous links (``graphrisk erase --links``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from api.db import create_tables, make_engine

log = logging.getLogger(__name__)

_metadata = MetaData()
served_rows_table = Table(
    "served_feature_rows",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False, index=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("model_version", String(128), nullable=False),
    Column("kind", String(32), nullable=False),  # "applicant": an onboarding row served online
    Column("row_hash", String(64), nullable=False),
    Column("names_hash", String(64), nullable=False),
    Column("row", LargeBinary, nullable=False),  # little-endian float64, in the names' order
)
served_names_table = Table(
    "served_feature_names",
    _metadata,
    Column("names_hash", String(64), primary_key=True),
    Column("names", Text, nullable=False),  # JSON list: a model's columns are stored once
)


def names_hash(names: Sequence[str]) -> str:
    """The SHA-256 of a list of column names (the key their rows are stored under)."""
    return hashlib.sha256(json.dumps(list(names)).encode()).hexdigest()


class ServedRows:
    """The model-input rows served to new applicants.

    Args:
        url: SQLAlchemy URL (the audit database).
    """

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        create_tables(self.engine, _metadata)
        self._known_names: set[str] = set()

    def record(
        self,
        user_id: str,
        at_ms: int,
        model_version: str,
        row: np.ndarray,
        names: Sequence[str],
        row_hash: str,
        kind: str = "applicant",
    ) -> None:
        """Keep one served row (float64, exactly as scored)."""
        key = names_hash(names)
        if key not in self._known_names:
            self._store_names(key, names)
        x = np.asarray(row, dtype="<f8").reshape(-1)
        with self.engine.begin() as conn:
            conn.execute(
                served_rows_table.insert(),
                {"at_ms": int(at_ms), "user_id": user_id, "model_version": model_version, "kind": kind,
                 "row_hash": row_hash, "names_hash": key, "row": x.tobytes()},
            )  # fmt: skip

    def _store_names(self, key: str, names: Sequence[str]) -> None:
        with self.engine.connect() as conn:
            have = conn.execute(
                select(served_names_table.c.names_hash).where(served_names_table.c.names_hash == key)
            ).first()
        if have is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        served_names_table.insert(), {"names_hash": key, "names": json.dumps(list(names))}
                    )
            except IntegrityError:
                pass  # another worker stored the same columns meanwhile
        self._known_names.add(key)

    def rows(
        self, since_ms: int | None = None, kind: str = "applicant", model_version: str | None = None
    ) -> dict[str, pd.DataFrame]:
        """Served rows (at or after ``since_ms``), one frame per model version.

        Each frame is indexed by ``user_id`` (a user served twice keeps its latest row), with
        ``at_ms`` and ``row_hash`` columns followed by the model's feature columns.
        """
        t = served_rows_table.c
        query = select(t.at_ms, t.user_id, t.model_version, t.row_hash, t.names_hash, t.row).where(
            t.kind == kind
        )
        if since_ms is not None:
            query = query.where(t.at_ms >= since_ms)
        if model_version is not None:
            query = query.where(t.model_version == model_version)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.at_ms, t.id)).all()
            names = {
                r.names_hash: json.loads(r.names) for r in conn.execute(select(served_names_table)).all()
            }
        out: dict[str, pd.DataFrame] = {}
        by_version: dict[tuple[str, str], list[Any]] = {}
        for r in rows:
            by_version.setdefault((r.model_version, r.names_hash), []).append(r)
        for (version, key), group in by_version.items():
            cols = names[key]
            x = np.vstack([np.frombuffer(r.row, dtype="<f8") for r in group])
            frame = pd.DataFrame(x, columns=cols)
            frame.insert(0, "row_hash", [r.row_hash for r in group])
            frame.insert(0, "at_ms", np.array([r.at_ms for r in group], dtype=np.int64))
            frame.index = pd.Index([r.user_id for r in group], name="user_id")
            frame = frame[~frame.index.duplicated(keep="last")]
            # A version's columns do not change; if they did, the later rows are its rows.
            out[version] = pd.concat([out[version], frame]) if version in out else frame
        return out

    def prune(self, before_ms: int) -> int:
        """Delete rows served before ``before_ms``; returns how many."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(delete(served_rows_table).where(served_rows_table.c.at_ms < before_ms)).rowcount
            )

    def forget(self, user_id: str) -> int:
        """Delete every row of ``user_id``; returns how many."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(delete(served_rows_table).where(served_rows_table.c.user_id == user_id)).rowcount
            )

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


def served_row(scorer: Any, result: Any) -> tuple[np.ndarray, list[str]] | None:
    """The model-input row ``scorer`` served in ``result`` (``result.input_row``), kept only if
    it hashes to the served row's lineage hash; None for scorers that serve no single model-input
    row (non-tree models)."""
    row = getattr(result, "input_row", None)
    if getattr(result, "input_row_kind", None) != "model_inputs" or row is None:
        return None
    from gnn.lineage import feature_row_hash

    names = list(scorer.star.names)
    row = np.asarray(row, dtype=np.float64)
    if feature_row_hash(row, names) != result.input_row_hash:
        log.warning("the served row of an applicant does not hash to its lineage hash: not kept")
        return None
    return row, names
