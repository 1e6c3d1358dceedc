"""The Parquet snapshot of the graph: what training reads.

Each batch writes a *delta* (its own aggregates, one table per label and relationship type)
under ``deltas/batch=NNNNNN/``; re-running a batch rewrites the same files. Compaction folds
deltas newer than the current snapshot into it with the same rules the store applies
(min first_seen, max last_seen, summed counts and amounts, latest properties), so the
snapshot and the store agree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from graphrisk.graph_schema import EDGE_TYPES, NODE_PROPERTIES, PAYMENT_RELS, NodeLabel, RelType

NODE_BASE_COLUMNS = ("id", "first_seen", "last_seen", "event_count")
EDGE_COLUMNS = ("src", "dst", "count", "first_seen", "last_seen", "amount_total", "amount_max")
_PROP_TYPES: dict[str, pa.DataType] = {
    "onboarded_at": pa.int64(),
    "version": pa.int64(),
    "country_code": pa.int64(),
}


def node_schema(label: NodeLabel) -> pa.Schema:
    """Arrow schema of a node table."""
    fields = [pa.field("id", pa.string()), pa.field("first_seen", pa.int64()), pa.field("last_seen", pa.int64()),
              pa.field("event_count", pa.int64())]  # fmt: skip
    fields += [pa.field(p, _PROP_TYPES.get(p, pa.string())) for p in NODE_PROPERTIES[label]]
    return pa.schema(fields)


def edge_schema() -> pa.Schema:
    """Arrow schema of a relationship table."""
    return pa.schema([
        pa.field("src", pa.string()), pa.field("dst", pa.string()), pa.field("count", pa.int64()),
        pa.field("first_seen", pa.int64()), pa.field("last_seen", pa.int64()),
        pa.field("amount_total", pa.float64()), pa.field("amount_max", pa.float64()),
    ])  # fmt: skip


def delta_dir(snapshot_dir: Path, batch_seq: int) -> Path:
    """Where one batch's delta lives."""
    return snapshot_dir / "deltas" / f"batch={batch_seq:06d}"


def current_dir(snapshot_dir: Path) -> Path:
    """Where the compacted snapshot lives."""
    return snapshot_dir / "current"


def _write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)  # a crash never leaves a half-written table behind


class _WriteTableFn(beam.DoFn):
    def __init__(self, out_dir: Path, kind: str) -> None:
        self._out = out_dir
        self._kind = kind

    def process(self, element: tuple[str, pa.Table]) -> Iterable[str]:
        key, table = element  # sorted by key already, in the snapshot's columns
        schema = node_schema(NodeLabel(key)) if self._kind == "nodes" else edge_schema()
        path = self._out / self._kind / f"{key}.parquet"
        _write_table(path, table.select(schema.names).cast(schema))
        yield str(path)


class WriteSnapshotDelta(beam.PTransform):
    """Writes one batch's ``(label, table)`` node tables and ``(rel, table)`` relationship tables as Parquet."""

    def __init__(self, snapshot_dir: Path, batch_seq: int) -> None:
        super().__init__()
        self.out = delta_dir(snapshot_dir, batch_seq)

    def expand(self, pcolls: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        nodes, edges = pcolls
        n = nodes | "NodeParquet" >> beam.ParDo(_WriteTableFn(self.out, "nodes"))
        e = edges | "RelParquet" >> beam.ParDo(_WriteTableFn(self.out, "edges"))
        return (n, e) | "SnapshotFiles" >> beam.Flatten()


def _read(path: Path, schema: pa.Schema) -> pd.DataFrame:
    if path.exists():
        return pq.read_table(path).to_pandas()
    return schema.empty_table().to_pandas()


def _fold_nodes(frames: list[pd.DataFrame], label: NodeLabel) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True)  # frames are in batch order: last wins for properties
    agg: dict[str, Any] = {"first_seen": "min", "last_seen": "max", "event_count": "sum"}
    agg |= {p: "last" for p in NODE_PROPERTIES[label]}  # "last" skips nulls
    return df.groupby("id", sort=True, as_index=False).agg(agg)[[f.name for f in node_schema(label)]]


def _fold_edges(frames: list[pd.DataFrame]) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True)
    out = df.groupby(["src", "dst"], sort=True, as_index=False).agg(
        count=("count", "sum"), first_seen=("first_seen", "min"), last_seen=("last_seen", "max"),
        amount_total=("amount_total", "sum"), amount_max=("amount_max", "max"),
    )  # fmt: skip
    out["amount_total"] = out["amount_total"].round(4)
    return out[list(EDGE_COLUMNS)]


def read_manifest(snapshot_dir: Path) -> dict[str, Any]:
    """The compacted snapshot's manifest (empty when there is none yet)."""
    path = current_dir(snapshot_dir) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"compacted_through": 0, "files": {}}


def compact_snapshot(snapshot_dir: Path, through_seq: int) -> dict[str, Any]:
    """Fold deltas of finished batches (``seq <= through_seq``) into ``current/``. Idempotent.

    A delta newer than ``through_seq`` belongs to a batch that has not finished (it may be
    half written) and is left for the run that finishes it.
    """
    manifest = read_manifest(snapshot_dir)
    done = int(manifest["compacted_through"])
    pending = sorted(
        (int(p.name.split("=")[1]), p) for p in (snapshot_dir / "deltas").glob("batch=*") if p.is_dir()
    )
    pending = [(seq, p) for seq, p in pending if done < seq <= through_seq]
    if not pending:
        return manifest
    cur = current_dir(snapshot_dir)
    staging = snapshot_dir / "current.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    files: dict[str, str] = {}
    for label in NodeLabel:
        schema = node_schema(label)
        name = f"nodes/{label.value}.parquet"
        table = _only_delta(cur / name, [p / name for _, p in pending], schema)
        if table is None:
            frames = [_read(cur / name, schema)] + [_read(p / name, schema) for _, p in pending]
            table = pa.Table.from_pandas(_fold_nodes(frames, label), schema=schema, preserve_index=False)
        files[f"nodes/{label.value}.parquet"] = _write_and_hash(
            staging / "nodes" / f"{label.value}.parquet", table
        )
    for rel in EDGE_TYPES:
        schema = edge_schema()
        name = f"edges/{rel.value}.parquet"
        table = _only_delta(cur / name, [p / name for _, p in pending], schema)
        if table is None:
            frames = [_read(cur / name, schema)] + [_read(p / name, schema) for _, p in pending]
            table = pa.Table.from_pandas(_fold_edges(frames), schema=schema, preserve_index=False)
        files[f"edges/{rel.value}.parquet"] = _write_and_hash(
            staging / "edges" / f"{rel.value}.parquet", table
        )
    digest = hashlib.sha256("".join(f"{k}={v}" for k, v in sorted(files.items())).encode()).hexdigest()
    manifest = {"compacted_through": pending[-1][0], "files": files, "snapshot_hash": digest,
                "payment_relationships": sorted(r.value for r in PAYMENT_RELS)}  # fmt: skip
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    # Swap directories so readers never see a half-compacted snapshot.
    old = snapshot_dir / "current.old"
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        cur.rename(old)
    staging.rename(cur)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def _only_delta(current: Path, deltas: list[Path], schema: pa.Schema) -> pa.Table | None:
    """The table as it is when there is nothing to fold it with (no snapshot yet, one delta).

    A delta is already one row per key, sorted, amounts rounded: folding it alone changes
    nothing, so the first build skips a pandas round trip of every row. ``None``: fold.
    """
    if current.exists() or len(deltas) != 1:
        return None
    return pq.read_table(deltas[0]).cast(schema) if deltas[0].exists() else schema.empty_table()


def _write_and_hash(path: Path, table: pa.Table) -> str:
    _write_table(path, table)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_snapshot(snapshot_dir: Path) -> tuple[dict[NodeLabel, pd.DataFrame], dict[RelType, pd.DataFrame]]:
    """The compacted node and relationship tables."""
    cur = current_dir(snapshot_dir)
    nodes = {lab: _read(cur / "nodes" / f"{lab.value}.parquet", node_schema(lab)) for lab in NodeLabel}
    edges = {rel: _read(cur / "edges" / f"{rel.value}.parquet", edge_schema()) for rel in EDGE_TYPES}
    return nodes, edges
