"""Snapshot tables of a folder of event files, built by the pipeline's own code, without a store.

Benchmarks and tests that need a graph but not a graph store read it here. The tables come from
:func:`pipelines.event_log.read_event_log` (the stage functions the Beam transforms call: read,
parse and validate, clean and pseudonymise, deduplicate) folded with the pipeline's merges
(:func:`pipelines.event_log.tables_as_of`). ``tests/test_event_log.py`` holds that fold equal to
the snapshot the Beam pipeline writes, so a figure measured on these tables is measured on the
production graph: identifiers are the pipeline's keyed pseudonyms, invalid events are rejected
as the pipeline dead-letters them, amounts are in the base currency, node properties are set.

There is no second graph builder: the pandas builder that stood in for this path, with its own
identifier canonicalisation, is gone.
Cost: 0.35-0.6 s per 1,000 users (14 days of events) on a shared 2-core box, mostly phone-number
normalisation; the pandas builder took a quarter of that but did not build the same graph
(it kept events the pipeline rejects, counted users' events differently and set no properties).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from graphrisk.config import Settings, load_settings
from graphrisk.graph_schema import EDGE_TYPES, PAYMENT_RELS, NodeLabel
from pipelines.event_log import EdgeTables, EventLog, FactLog, NodeTables, read_event_log, tables_as_of
from pipelines.refresh import discover_partitions
from pipelines.snapshot import current_dir, edge_schema, node_schema


def read_events(events_dir: Path, settings: Settings | None = None) -> EventLog:
    """Every event file under ``events_dir`` through the pipeline's stages, as one batch.

    No future-event limit applies: these are files of past history (generated worlds, dumps),
    as :mod:`bench.backtest` reads them.
    """
    events_dir = Path(events_dir)
    settings = settings or load_settings()
    return read_event_log(events_dir, [p.path for p in discover_partitions(events_dir)], settings)


def tables_of(log: EventLog, as_of_ms: int | None = None) -> tuple[NodeTables, EdgeTables]:
    """The graph of a clean event log: every event before ``as_of_ms`` (``None``: all of them)."""
    if as_of_ms is None:
        times = log.clean.column("time")
        as_of_ms = int(times[-1].as_py()) + 1 if len(times) else 0
    return tables_as_of(FactLog.of(log.clean), as_of_ms)


def snapshot_tables(
    events_dir: Path, settings: Settings | None = None, as_of_ms: int | None = None
) -> tuple[NodeTables, EdgeTables]:
    """Node and relationship tables of the events under ``events_dir``, in
    :func:`~pipelines.snapshot.load_snapshot`'s columns, as the pipeline builds them.

    Args:
        events_dir: Folder of event files (searched recursively, as ``graphrisk refresh`` does).
        settings: Pseudonymisation key, exchange rates, phone region (default: :func:`load_settings`).
        as_of_ms: Only events strictly before this time (``None``: every event).
    """
    return tables_of(read_events(events_dir, settings), as_of_ms)


def write_snapshot(nodes: NodeTables, edges: EdgeTables, snapshot_dir: Path) -> dict[str, object]:
    """Write tables where :func:`~pipelines.snapshot.load_snapshot` finds them, with a manifest.

    The manifest has the fields :func:`pipelines.snapshot.compact_snapshot` writes (file hashes,
    ``snapshot_hash``), so a model trained on it records which graph it saw. Returns the manifest.
    """
    cur = current_dir(Path(snapshot_dir))
    files: dict[str, str] = {}
    tables = [(f"nodes/{lab.value}.parquet", nodes[lab], node_schema(lab)) for lab in NodeLabel]
    tables += [(f"edges/{rel.value}.parquet", edges[rel], edge_schema()) for rel in EDGE_TYPES]
    for name, df, schema in tables:
        path = cur / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False), path)
        files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256("".join(f"{k}={v}" for k, v in sorted(files.items())).encode()).hexdigest()
    manifest: dict[str, object] = {
        "compacted_through": 0, "files": files, "snapshot_hash": digest,
        "payment_relationships": sorted(r.value for r in PAYMENT_RELS), "built_by": __name__,
    }  # fmt: skip
    (cur / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def build_snapshot(
    events_dir: Path, snapshot_dir: Path, settings: Settings | None = None, as_of_ms: int | None = None
) -> tuple[NodeTables, EdgeTables]:
    """:func:`snapshot_tables` written under ``snapshot_dir``; returns the tables too."""
    nodes, edges = snapshot_tables(events_dir, settings, as_of_ms)
    write_snapshot(nodes, edges, snapshot_dir)
    return nodes, edges
