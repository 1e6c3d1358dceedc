"""Lineage of a served score: canonical hashes of what a model was trained on and scored from.

Every served score's audit entry carries a ``lineage`` block (``api.lineage``); these are the
hashes it and the model registry agree on, so that ``graphrisk trace`` can recompute them:

- :func:`label_set_hash`: the training labels as a set of ``(user_id, is_fraud)`` pairs, in
  no particular order (a file's row order or extra columns do not change it);
- :func:`event_log_hash`: the clean event history a decision-point version was replayed from
  (its ``snapshot_hash``);
- :func:`feature_row_hash`: one model input row, with its column names (a row is meaningless
  without them), as little-endian float64 with NaN and -0.0 made canonical;
- :func:`model_thresholds`: the band thresholds a registered version serves with, per decision
  point.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

# One NaN bit pattern for every NaN: a row read back from Parquet or rebuilt online may carry
# another payload, and the hash must not depend on it.
_NAN = np.float64("nan")
LABEL_HASH_SCHEME = "sha256:user_id\\tis_fraud\\n,sorted"
ROW_HASH_SCHEME = "sha256(sha256(names json) + float64le row)"


def label_set_hash(labels: pd.DataFrame) -> str:
    """The SHA-256 of ``labels`` as a set of ``(user_id, is_fraud)`` rows.

    Rows are written as ``user_id<TAB>label<LF>`` (label as an integer) and sorted, so the
    hash depends on which users carry which label only: not on row order, dtypes (int8 from
    Parquet, int64 after a merge) or extra columns (typology, ring, source).

    Raises:
        KeyError: ``labels`` lacks a ``user_id`` or ``is_fraud`` column.
    """
    users = labels["user_id"].astype(str).to_numpy()
    marks = labels["is_fraud"].astype("int64").to_numpy()
    lines = sorted(f"{u}\t{int(y)}\n" for u, y in zip(users, marks, strict=True))
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
    return digest.hexdigest()


def event_log_hash(table: pa.Table) -> str:
    """The SHA-256 of a clean event table (``pipelines.event_log.EventLog.clean``) as Arrow IPC:
    what a decision-point model was trained on, as the snapshot hash is for a graph model."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue()).hexdigest()


def feature_row_hash(row: np.ndarray | Sequence[float], names: Sequence[str]) -> str:
    """The SHA-256 of one feature row and its column names.

    Raises:
        ValueError: the row and the names differ in length.
    """
    x = np.asarray(row, dtype=np.float64).reshape(-1)
    if len(x) != len(names):
        raise ValueError(f"a row of {len(x)} values with {len(names)} column names")
    x = np.where(np.isnan(x), _NAN, x) + 0.0  # + 0.0 turns -0.0 into 0.0
    digest = hashlib.sha256(_names_digest(tuple(names)))
    digest.update(x.astype("<f8").tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _names_digest(names: tuple[Any, ...]) -> bytes:
    # Online scoring hashes one row per request over the same ~1,000 names: their JSON is
    # hashed once per column list.
    return hashlib.sha256(json.dumps([str(n) for n in names], separators=(",", ":")).encode()).digest()


def model_thresholds(meta: Any) -> dict[str, dict[str, float]]:
    """``{decision point: {"review": t, "block": t}}`` a registered version serves with.

    Decision-point versions (``gnn.decision_training``) keep one pair per point in
    ``notes.moments``; entity-graph versions (``gnn.training``) one pair for every score
    (``users``), the block threshold in ``threshold`` and the review one in the notes.
    """
    notes = getattr(meta, "notes", None) or {}
    moments = notes.get("moments")
    if isinstance(moments, dict) and moments:
        return {
            str(point): {k: float(v[k]) for k in ("review", "block") if v.get(k) is not None}
            for point, v in moments.items()
            if isinstance(v, dict)
        }
    out: dict[str, float] = {}
    if notes.get("review_threshold") is not None:
        out["review"] = float(notes["review_threshold"])
    if getattr(meta, "threshold", None) is not None:
        out["block"] = float(meta.threshold)
    return {"users": out} if out else {}
