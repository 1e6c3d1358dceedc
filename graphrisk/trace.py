"""``graphrisk trace SEQ``: from a served score's audit entry to everything behind it.

The entry (``score`` or ``read_score``, written by ``api/routes/score.py``) carries a
``lineage`` block (``api/lineage.py``). Tracing checks the entry's place in the chain (its HMAC
and links, and the whole chain's verification), reads the model version's metadata from the
registry (training snapshot hash, label set hash, code version, thresholds) and compares it with
what the API recorded, and for a batch score fetches the published feature row, when that
publication is still the current one, and recomputes its hash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from api.audit import AuditLog
from gnn.lineage import feature_row_hash, model_thresholds
from gnn.registry import ModelRegistry, RegistryError
from graphrisk.config import Settings
from graphrisk.errors import GraphRiskError

SCORE_ACTIONS = ("score", "read_score")


class TraceError(GraphRiskError):
    """The audit entry cannot be traced: no such seq, or not a served score."""


def trace_score(settings: Settings, seq: int, audit: AuditLog | None = None) -> dict[str, Any]:
    """The lineage of the score audited at ``seq``, with a ``checks`` map of what verified.

    ``audit`` defaults to the configured log (opened and closed here).

    Raises:
        TraceError: no entry has that seq (never written, or pruned), or it is not a score.
    """
    own = audit is None
    log = audit or AuditLog.from_settings(settings, background=False)
    try:
        return _trace(settings, log, seq)
    finally:
        if own:
            log.close()


def _trace(settings: Settings, log: AuditLog, seq: int) -> dict[str, Any]:
    log.flush()
    entry = log.entry(seq)
    if entry is None:
        raise TraceError(f"no audit entry with seq {seq} (never written, or pruned by retention)")
    if entry["action"] not in SCORE_ACTIONS:
        raise TraceError(f"audit entry {seq} is a {entry['action']!r}, not a served score")
    position = log.verify_entry(seq)
    chain = log.check(full=True)
    detail = json.loads(entry["detail"])
    lineage: dict[str, Any] = detail.get("lineage") or {}
    version = str(lineage.get("model_version") or detail.get("model_version"))
    checks: dict[str, bool | None] = {
        "entry_hmac": position["hmac_ok"],
        "entry_links_to_previous": position["prev_ok"],
        "next_entry_links_to_it": position["next_ok"],
        "chain_verifies": chain.ok,
        "lineage_recorded": bool(lineage),
    }
    report: dict[str, Any] = {
        "entry": {k: entry[k] for k in ("seq", "at_ms", "actor", "role", "action", "target", "hash")},
        "served": {k: detail.get(k) for k in ("score", "band", "known_user", "request_hash")},
        "chain": {"position": position, "verification": chain.as_dict()},
        "model": _model(settings, version, lineage, checks),
        "code": {
            "model_code_version": None,
            "serving_code_version": lineage.get("serving_code_version"),
        },
        "thresholds": lineage.get("thresholds"),
        "feature_row": _feature_row(settings, lineage, str(entry["target"]), checks),
        "checks": checks,
    }
    report["code"]["model_code_version"] = report["model"].get("code_version")
    report["ok"] = all(v is not False for v in checks.values())
    return report


def _model(settings: Settings, version: str, lineage: dict[str, Any], checks: dict[str, bool | None]) -> dict[str, Any]:  # fmt: skip
    """The registry's record of ``version``, compared with what the API recorded."""
    try:
        meta = ModelRegistry(settings.data_dir / "models").meta(version)
    except RegistryError as exc:
        checks["model_in_registry"] = False
        return {"version": version, "error": str(exc)}
    checks["model_in_registry"] = True
    out = {
        "version": meta.version,
        "model_name": meta.model_name,
        "created_at": meta.created_at,
        "snapshot_hash": meta.snapshot_hash,
        "label_set_hash": meta.label_set_hash,
        "code_version": meta.code_version,
        "dataset": meta.dataset,
        "thresholds": model_thresholds(meta),
    }
    # The API recorded these as it served; the registry must still say the same (a version's
    # folder is written once: a difference means it was edited).
    for key, value in (
        ("snapshot_hash", meta.snapshot_hash),
        ("label_set_hash", meta.label_set_hash),
        ("model_code_version", meta.code_version),
    ):
        if lineage.get(key) is not None:
            checks[f"{key}_matches_registry"] = lineage[key] == value
    served = lineage.get("thresholds")
    if served and lineage.get("source") == "batch":
        registered = out["thresholds"].get("refresh") or out["thresholds"].get("users") or {}
        checks["thresholds_match_registry"] = all(
            abs(float(served[k]) - float(registered.get(k, float("nan")))) < 1e-12 for k in served
        )
    elif served and lineage.get("source") == "online":
        registered = out["thresholds"].get("onboarding") or out["thresholds"].get("users") or {}
        checks["thresholds_match_registry"] = all(
            abs(float(served[k]) - float(registered.get(k, float("nan")))) < 1e-12 for k in served
        )
    return out


def _feature_row(
    settings: Settings, lineage: dict[str, Any], user_id: str, checks: dict[str, bool | None]
) -> dict[str, Any] | None:
    """The row the score came from: fetched and re-hashed for a batch score whose publication
    is still current; the recorded hash (and when to rebuild it) for an online score."""
    row = lineage.get("feature_row")
    if not row:
        return None
    out: dict[str, Any] = dict(row)
    if lineage.get("source") == "online":
        out["note"] = (
            "online rows are not kept (they derive from the applicant's data); rebuild it with "
            "gnn.online.ApplicantScorer.row as of scored_at_ms and compare gnn.lineage.feature_row_hash"
        )
        out["scored_at_ms"] = lineage.get("scored_at_ms")
        return out
    path = settings.data_dir / "scores" / str(row["file"])
    out["path"] = str(path)
    if not _current(path, row.get("stamp")):
        out["available"] = False
        out["note"] = "the publication this score came from has been replaced; only the row hash remains"
        return out
    values, names, row_user = _read_row(path, int(row["row"]), str(row["kind"]))
    out["available"] = True
    out["user_id"] = row_user
    out["values"] = dict(zip(names, (None if np.isnan(v) else float(v) for v in values), strict=True))
    out["recomputed_hash"] = feature_row_hash(values, names)
    checks["feature_row_hash"] = out["recomputed_hash"] == row["hash"]
    checks["feature_row_user"] = row_user == user_id
    return out


def _current(path: Path, stamp: list[int] | None) -> bool:
    """Whether ``path`` is still the file the API served from (same mtime and size)."""
    if stamp is None:
        return False
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return [st.st_mtime_ns, st.st_size] == list(stamp)


def _read_row(path: Path, row: int, kind: str) -> tuple[np.ndarray, list[str], str]:
    """One row of a published file: its values, column names and user id.

    ``user_inputs.parquet`` has ``id, model_version`` before the model's columns,
    ``user_features.parquet`` only ``id``.
    """
    table = pq.read_table(path).slice(row, 1).to_pandas()
    skip = 2 if kind == "model_inputs" else 1
    names = [str(c) for c in table.columns[skip:]]
    return table[names].to_numpy(np.float64)[0], names, str(table["id"].iloc[0])
