"""GDPR erasure in the training snapshot: a user's rows, and identifiers only it used, removed everywhere.

``graphrisk erase --links`` deletes the user from the graph store; the snapshot would otherwise
keep them, and the next scoring run would publish them again. The compacted version is replaced
by a new one without them, and every batch delta is rewritten the same way, so a rebuild from
the deltas cannot bring them back. Relationships are deleted where the user is either end
(transfers to the user included); identifier nodes are deleted when no other user links to them,
as in the store (``cypher/admin/erase_user_identifiers.cypher``). Merchants are businesses, not
personal data, and stay.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from graphrisk.graph_schema import EDGE_TYPES, NodeLabel
from pipelines.snapshot import (
    _build_version,
    _delta_seqs,
    _snapshot_lock,
    current_dir,
    edge_schema,
    node_schema,
    read_manifest,
)

_KEPT_LABELS = (NodeLabel.MERCHANT,)


def _tables(root: Path) -> Iterable[Path]:
    for kind in ("nodes", "edges"):
        yield from sorted((root / kind).glob("*.parquet"))


def _sole_identifiers(current: Path, user_id: str) -> dict[NodeLabel, set[str]]:
    """Per label, the identifier nodes the user links to and no other user does (in the compacted snapshot)."""
    out: dict[NodeLabel, set[str]] = {}
    for rel, et in EDGE_TYPES.items():
        if et.src != NodeLabel.USER or et.dst in (NodeLabel.USER, *_KEPT_LABELS):
            continue
        path = current / "edges" / f"{rel.value}.parquet"
        if not path.exists():
            continue
        edges = pq.read_table(path, columns=["src", "dst"])
        mine = set(pc.filter(edges["dst"], pc.equal(edges["src"], user_id)).to_pylist())
        if not mine:
            continue
        linked = edges.filter(pc.is_in(edges["dst"], pa.array(sorted(mine))))
        others = set(pc.filter(linked["dst"], pc.not_equal(linked["src"], user_id)).to_pylist())
        out.setdefault(et.dst, set()).update(mine - others)
    return out


def _without(path: Path, user_id: str, sole: dict[NodeLabel, set[str]]) -> tuple[pa.Table, int] | None:
    """The table without the user's rows; None when it holds none."""
    table = pq.read_table(path)
    if path.parent.name == "edges":
        drop = pc.or_(pc.equal(table["src"], user_id), pc.equal(table["dst"], user_id))
        schema = edge_schema()
    else:
        label = NodeLabel(path.stem)
        gone = ({user_id} if label == NodeLabel.USER else set()) | sole.get(label, set())
        if not gone:
            return None
        drop = pc.is_in(table["id"], pa.array(sorted(gone)))
        schema = node_schema(label)
    n = int(pc.sum(drop).as_py() or 0)
    if n == 0:
        return None
    return table.filter(pc.invert(drop)).cast(schema), n


def erase_user_from_snapshot(snapshot_dir: Path, user_id: str) -> dict[str, Any]:
    """Remove a user, its relationships and its sole identifiers from the snapshot and its deltas.

    Returns the rows removed from the compacted snapshot and from the deltas, and the new
    snapshot hash. Idempotent: a second run removes nothing and publishes nothing.
    """
    report: dict[str, Any] = {"snapshot_rows": 0, "delta_rows": 0, "delta_files": 0, "snapshot_hash": None}
    if not (snapshot_dir / "deltas").exists() and not current_dir(snapshot_dir).exists():
        return report
    lock = _snapshot_lock(snapshot_dir)
    lock.acquire(wait_s=600.0)
    try:
        cur = current_dir(snapshot_dir).resolve() if current_dir(snapshot_dir).exists() else None
        sole = _sole_identifiers(cur, user_id) if cur is not None else {}
        # Deltas first: if this is interrupted, the next run still finds the user in the snapshot.
        deltas = list(_delta_seqs(snapshot_dir).values())
        deltas += [p for p in (snapshot_dir / "deltas" / "abandoned").glob("batch=*") if p.is_dir()]
        for delta in deltas:
            for path in _tables(delta):
                cut = _without(path, user_id, sole)
                if cut is not None:
                    tmp = path.with_suffix(".parquet.tmp")
                    pq.write_table(cut[0], tmp)
                    tmp.replace(path)
                    report["delta_rows"] += cut[1]
                    report["delta_files"] += 1
        if cur is not None:
            cuts = {path: _without(path, user_id, sole) for path in _tables(cur)}
            removed = sum(c[1] for c in cuts.values() if c is not None)
            if removed:
                # A new version made of the current one's tables, the user's rows dropped, published
                # like any other (manifest hashes, atomic swap); its batch list is unchanged.
                batches = [int(s) for s in read_manifest(snapshot_dir).get("batches", [])]
                staged = snapshot_dir / f".erase-{uuid.uuid4().hex[:12]}"
                try:
                    for path, cut in cuts.items():
                        (staged / path.parent.name).mkdir(parents=True, exist_ok=True)
                        pq.write_table(cut[0] if cut is not None else pq.read_table(path),
                                       staged / path.parent.name / path.name)  # fmt: skip
                    built = _build_version(snapshot_dir, None, [(max(batches, default=0), staged)], batches)
                finally:
                    shutil.rmtree(staged, ignore_errors=True)
                report["snapshot_hash"] = built["snapshot_hash"]
                report["snapshot_rows"] = removed
    finally:
        lock.release()
    return report
