"""The ``lineage`` block of a served score's audit entry: enough to trace the score to its model,
training data, code, input row and thresholds (``graphrisk trace``, :mod:`graphrisk.trace`).

No personal data goes in: a known user's input row is named by file and row (the published
files are access-controlled like the store), a new applicant's only by hash (it is derived from
what the applicant sent).
"""

from __future__ import annotations

import functools
from typing import Any

from api.state import CachedScore, Snapshot
from gnn.lineage import feature_row_hash, model_thresholds
from gnn.online import ApplicantScore
from gnn.registry import code_version
from gnn.scoring import INPUTS_FILE

SCORES_FILE = "user_scores.parquet"
FEATURES_FILE = "user_features.parquet"


@functools.cache
def serving_code_version() -> str:
    """The API's own code version (git commit), read once per process."""
    return code_version()


def _stamp(snap: Snapshot, name: str) -> list[int] | None:
    """``[mtime_ns, size]`` of a published file when the snapshot was built (``None``: absent)."""
    for file, mtime_ns, size in snap.stamps:
        if file == name and mtime_ns >= 0:
            return [mtime_ns, size]
    return None


def _common(snap: Snapshot, model_version: str) -> dict[str, Any]:
    meta = snap.model_meta
    same = meta is not None and meta.version == model_version
    return {
        "model_version": model_version,
        # What the registry says of the version, as the API had it: trace re-reads the registry
        # and checks these.
        "snapshot_hash": meta.snapshot_hash if same and meta else None,
        "label_set_hash": meta.label_set_hash if same and meta else None,
        "model_code_version": meta.code_version if same and meta else None,
        "serving_code_version": serving_code_version(),
    }


def batch_lineage(snap: Snapshot, user_id: str, cached: CachedScore) -> dict[str, Any]:
    """Lineage of a published (batch) score of a known user.

    The feature row is the exact model input row the batch kept for users in the review and
    block bands (``INPUTS_FILE``), else the user's own published features row; both are named by
    file, row and the file's stamp, with the row's hash, so that trace can fetch and check it
    while that publication is current.
    """
    out = _common(snap, cached.model_version)
    meta = snap.model_meta
    thresholds = model_thresholds(meta) if meta is not None and meta.version == cached.model_version else {}
    # The batch scores users with the behaviour model: its point ("refresh"), or the one pair.
    out["thresholds"] = thresholds.get("refresh") or thresholds.get("users")
    out["source"] = "batch"
    out["scores_snapshot"] = snap.scores_snapshot
    out["scores_file"] = {"name": SCORES_FILE, "stamp": _stamp(snap, SCORES_FILE)}
    row: dict[str, Any] | None = None
    i = snap.input_row.get(user_id)
    if i is not None and meta is not None and snap.inputs_version == cached.model_version:
        row = {"kind": "model_inputs", "file": INPUTS_FILE, "row": i,
               "hash": feature_row_hash(snap.inputs[i], meta.feature_names)}  # fmt: skip
    elif snap.applicant_scorer is not None:
        star = snap.applicant_scorer.star
        pos = star.position(user_id)
        if pos is not None:
            row = {"kind": "user_features", "file": FEATURES_FILE, "row": pos,
                   "hash": feature_row_hash(star.features_of(user_id), star.own_names)}  # fmt: skip
    if row is not None:
        row["stamp"] = _stamp(snap, row["file"])
    out["feature_row"] = row
    return out


def online_lineage(snap: Snapshot, result: ApplicantScore, now_ms: int) -> dict[str, Any]:
    """Lineage of a new applicant's online score: the row's hash only, and the time it was
    scored at (the row is rebuilt from the store as of then to check it)."""
    assert snap.model_meta is not None and snap.applicant_scorer is not None
    out = _common(snap, snap.model_meta.version)
    model = snap.applicant_scorer.model
    # The thresholds the applicant model banded with: the ones in force, whatever the notes say.
    out["thresholds"] = {"review": float(model.review_threshold), "block": float(model.block_threshold)}
    out["source"] = "online"
    out["scored_at_ms"] = now_ms
    out["feature_row"] = {"kind": result.input_row_kind, "hash": result.input_row_hash}
    return out
