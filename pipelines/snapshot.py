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
import logging
import shutil
import time
import uuid
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from graphrisk.arrow import arrow_to_pandas
from graphrisk.errors import GraphRiskError
from graphrisk.graph_schema import EDGE_TYPES, NODE_PROPERTIES, PAYMENT_RELS, NodeLabel, RelType
from pipelines import uris
from pipelines.locks import FileLock

log = logging.getLogger(__name__)

NODE_BASE_COLUMNS = ("id", "first_seen", "last_seen", "event_count")
EDGE_COLUMNS = ("src", "dst", "count", "first_seen", "last_seen", "amount_total", "amount_max")
_PROP_TYPES: dict[str, pa.DataType] = {
    "onboarded_at": pa.int64(),
    "version": pa.int64(),
    "country_code": pa.int64(),
}


class SnapshotCorruptError(GraphRiskError):
    """The snapshot does not match its manifest and cannot be rebuilt where it was noticed."""


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
    def __init__(self, out_dir: str, kind: str) -> None:
        self._out = out_dir
        self._kind = kind

    def process(self, element: tuple[str, pa.Table]) -> Iterable[str]:
        key, table = element  # sorted by key already, in the snapshot's columns
        schema = node_schema(NodeLabel(key)) if self._kind == "nodes" else edge_schema()
        location = uris.join(self._out, f"{self._kind}/{key}.parquet")
        buf = pa.BufferOutputStream()
        pq.write_table(table.select(schema.names).cast(schema), buf)
        # Through FileSystems: on a cluster the delta is staged on gs://, s3:// or hdfs://.
        uris.write_atomically(location, buf.getvalue().to_pybytes())
        yield location


class WriteSnapshotDelta(beam.PTransform):
    """Writes one batch's ``(label, table)`` node tables and ``(rel, table)`` relationship tables as Parquet.

    ``out`` is the batch's delta folder (:func:`delta_dir`) or, on a cluster, its staging URI.
    """

    def __init__(self, out: str | Path) -> None:
        super().__init__()
        self.out = uris.as_uri(out)

    def expand(self, pcolls: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        nodes, edges = pcolls
        n = nodes | "NodeParquet" >> beam.ParDo(_WriteTableFn(self.out, "nodes"))
        e = edges | "RelParquet" >> beam.ParDo(_WriteTableFn(self.out, "edges"))
        return (n, e) | "SnapshotFiles" >> beam.Flatten()


def _read(path: Path, schema: pa.Schema) -> pd.DataFrame:
    if path.exists():
        return arrow_to_pandas(pq.read_table(path))
    return arrow_to_pandas(schema.empty_table())


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


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _verify_dir(cur: Path) -> list[str]:
    """What is wrong with the snapshot version in ``cur`` (empty: it matches its manifest)."""
    if not cur.exists():
        return ["current/ points at a version that is gone"] if cur.is_symlink() else []
    path = cur / "manifest.json"
    if not path.is_file():
        return ["manifest.json is missing"]
    try:
        files = dict(json.loads(path.read_text())["files"])
    except (ValueError, KeyError, TypeError) as exc:
        return [f"manifest.json is unreadable: {exc}"]
    problems = []
    for name, digest in sorted(files.items()):
        if not (cur / name).is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(cur / name) != digest:
            problems.append(f"{name} does not match its hash in the manifest")
    return problems


def verify_snapshot(snapshot_dir: Path) -> list[str]:
    """Problems of the compacted snapshot: files missing or not matching the manifest's hashes.

    Empty when it is intact, or when there is no snapshot yet.
    """
    return _verify_dir(current_dir(snapshot_dir))


def _snapshot_lock(snapshot_dir: Path) -> FileLock:
    return FileLock(snapshot_dir / ".lock", "the snapshot", "A refresh or a repair is writing it.")


def _delta_seqs(snapshot_dir: Path) -> dict[int, Path]:
    found = ((p.name.split("=")[1], p) for p in (snapshot_dir / "deltas").glob("batch=*") if p.is_dir())
    return {int(seq): p for seq, p in found if seq.isdigit()}


def _folded(manifest: dict[str, Any], deltas: dict[int, Path]) -> set[int]:
    """Batches folded into the snapshot: the manifest says, or (older manifests) every delta up to
    its ``compacted_through``."""
    if "batches" in manifest:
        return {int(s) for s in manifest["batches"]}
    return {s for s in deltas if s <= int(manifest.get("compacted_through", 0))}


def compact_snapshot(
    snapshot_dir: Path, through_seq: int, done: Collection[int] | None = None
) -> dict[str, Any]:
    """Fold deltas of finished batches into ``current/``. Idempotent; returns the manifest.

    Only deltas with ``seq <= through_seq`` and, when ``done`` is given, ``seq in done`` are
    folded: any other delta belongs to a batch that has not finished or was abandoned (it may
    be half written). A current snapshot that does not match its manifest (a file missing or
    changed) is rebuilt from all those deltas instead; the manifest then says why
    (``rebuilt_because``).
    """
    lock = _snapshot_lock(snapshot_dir)
    lock.acquire(wait_s=600.0)  # a reader may be repairing it: that takes seconds
    try:
        deltas = _delta_seqs(snapshot_dir)
        eligible = sorted(s for s in deltas if s <= through_seq and (done is None or s in done))
        problems = verify_snapshot(snapshot_dir)
        if problems:
            manifest = _build_version(snapshot_dir, None, [(s, deltas[s]) for s in eligible], [])
            return manifest | {"rebuilt_because": problems}
        manifest = read_manifest(snapshot_dir)
        folded = _folded(manifest, deltas)
        pending = [(s, deltas[s]) for s in eligible if s not in folded]
        if not pending:
            return manifest
        return _build_version(snapshot_dir, current_dir(snapshot_dir).resolve(), pending, sorted(folded))
    finally:
        lock.release()


def rebuild_snapshot(snapshot_dir: Path, wait_s: float = 600.0) -> dict[str, Any]:
    """Rebuild a snapshot that does not match its manifest from the deltas its manifest lists.

    ``graphrisk refresh`` repairs too, from the ledger's finished batches; this is for readers
    (:func:`load_snapshot`), which have no store.

    Raises:
        SnapshotCorruptError: the manifest is gone or unreadable, lists deltas that are gone, or
            the snapshot was not built from deltas.
    """
    lock = _snapshot_lock(snapshot_dir)
    lock.acquire(wait_s)
    try:
        problems = verify_snapshot(snapshot_dir)
        if not problems:  # repaired meanwhile (by a refresh)
            return read_manifest(snapshot_dir)
        what = f"the snapshot in {current_dir(snapshot_dir)} is damaged ({'; '.join(problems)})"
        todo = "run `graphrisk refresh`, which rebuilds it from the finished batches in the ledger"
        try:
            manifest = read_manifest(snapshot_dir)
        except (OSError, ValueError) as exc:
            raise SnapshotCorruptError(f"{what}, and its manifest is unreadable ({exc}): {todo}") from None
        deltas = _delta_seqs(snapshot_dir)
        if "batches" not in manifest and int(manifest.get("compacted_through", 0)) == 0:
            raise SnapshotCorruptError(
                f"{what}, and it was not built from batch deltas: rebuild it as before"
            )
        wanted = sorted(_folded(manifest, deltas))
        missing = [s for s in wanted if s not in deltas]
        if missing:
            raise SnapshotCorruptError(f"{what}, and the deltas of batches {missing} are gone: {todo}")
        built = _build_version(snapshot_dir, None, [(s, deltas[s]) for s in wanted], [])
        return built | {"rebuilt_because": problems}
    finally:
        lock.release()


def _build_version(
    snapshot_dir: Path, base: Path | None, pending: list[tuple[int, Path]], folded: list[int]
) -> dict[str, Any]:
    """Fold ``pending`` deltas into the version in ``base`` (``None``: from nothing) as a new
    version, published as ``current/``. The caller holds the snapshot lock."""
    staging = snapshot_dir / "versions" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
    files: dict[str, str] = {}
    tables = [(f"nodes/{lab.value}.parquet", node_schema(lab), lab) for lab in NodeLabel]
    tables += [(f"edges/{rel.value}.parquet", edge_schema(), None) for rel in EDGE_TYPES]
    for name, schema, label in tables:
        table = _only_delta(base, name, [p / name for _, p in pending], schema)
        if table is None:
            frames = [_read(base / name, schema)] if base is not None else []
            frames += [_read(p / name, schema) for _, p in pending]
            folded_df = _fold_nodes(frames, label) if label is not None else _fold_edges(frames)
            table = pa.Table.from_pandas(folded_df, schema=schema, preserve_index=False)
        files[name] = _write_and_hash(staging / name, table)
    digest = hashlib.sha256("".join(f"{k}={v}" for k, v in sorted(files.items())).encode()).hexdigest()
    batches = sorted(set(folded) | {s for s, _ in pending})
    manifest = {"compacted_through": max(batches, default=0), "batches": batches, "files": files,
                "snapshot_hash": digest, "payment_relationships": sorted(r.value for r in PAYMENT_RELS)}  # fmt: skip
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    _publish(snapshot_dir, staging)
    return manifest


def _publish(snapshot_dir: Path, version: Path) -> None:
    """Point ``current`` at ``version`` in one atomic step (a symlink replaced by rename), so a
    reader sees the old snapshot or the new one, never a half of each or none.

    The version it replaces is kept, for readers still in it; older ones are deleted.
    """
    cur = current_dir(snapshot_dir)
    versions = snapshot_dir / "versions"
    previous = cur.resolve() if cur.is_symlink() else None
    if cur.is_dir() and not cur.is_symlink():  # a snapshot from before versions: becomes one
        previous = versions / f"legacy-{uuid.uuid4().hex[:12]}"
        cur.rename(previous)
    link = snapshot_dir / f".current-{uuid.uuid4().hex}"
    link.symlink_to(Path("versions") / version.name)
    link.replace(cur)
    for old in versions.iterdir():
        if old.resolve() not in (version.resolve(), previous):
            shutil.rmtree(old, ignore_errors=True)


def _only_delta(base: Path | None, name: str, deltas: list[Path], schema: pa.Schema) -> pa.Table | None:
    """The table as it is when there is nothing to fold it with (no snapshot yet, one delta).

    A delta is already one row per key, sorted, amounts rounded: folding it alone changes
    nothing, so the first build skips a pandas round trip of every row. ``None``: fold.
    """
    if (base is not None and (base / name).exists()) or len(deltas) != 1:
        return None
    return pq.read_table(deltas[0]).cast(schema) if deltas[0].exists() else schema.empty_table()


def _write_and_hash(path: Path, table: pa.Table) -> str:
    _write_table(path, table)
    return file_sha256(path)


def load_snapshot(snapshot_dir: Path) -> tuple[dict[NodeLabel, pd.DataFrame], dict[RelType, pd.DataFrame]]:
    """The compacted node and relationship tables.

    A snapshot that does not match its manifest is rebuilt from its deltas first (with a
    warning), never read as it is.

    Raises:
        SnapshotCorruptError: it is damaged and cannot be rebuilt here (the error says what to do).
    """
    cur = current_dir(snapshot_dir).resolve()  # one version throughout, even if a refresh swaps
    problems = _verify_dir(cur)
    if problems:
        log.warning("snapshot %s does not match its manifest (%s): rebuilding it from its deltas",
                    cur, "; ".join(problems))  # fmt: skip
        rebuild_snapshot(snapshot_dir)
        cur = current_dir(snapshot_dir).resolve()
    nodes = {lab: _read(cur / "nodes" / f"{lab.value}.parquet", node_schema(lab)) for lab in NodeLabel}
    edges = {rel: _read(cur / "edges" / f"{rel.value}.parquet", edge_schema()) for rel in EDGE_TYPES}
    return nodes, edges
