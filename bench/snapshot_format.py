"""Snapshot compaction: Parquet + hand-made manifest (``pipelines.snapshot``) versus Delta Lake.

Issue 12 asked to move the snapshot to Delta Lake (``deltalake``, delta-rs) unless it measures
slower on the 1M-event build. Both formats fold the same batch deltas with the same rules
(:func:`pipelines.snapshot._fold_nodes` / ``_fold_edges``), so what differs is only how the 18
tables are written, committed and read back:

* manifest: :func:`pipelines.snapshot.compact_snapshot` as the refresh runs it (verify the current
  version against its manifest, fold, write Parquet, hash, publish a new version by a symlink
  swap) and :func:`pipelines.snapshot.load_snapshot` (verifies the hashes, then reads);
* delta: one Delta table per node label and relationship type; compaction reads each table, folds,
  and commits it with ``write_deltalake(mode="overwrite")`` (the compacted batch in the commit's
  metadata); loading reads the latest version of each.

The deltas are synthetic but in the snapshot's exact schemas, sized like the graph build of
``--events`` events split in ``--batches`` hourly batches (keys repeat across batches, so folding
really aggregates). Measured, each ``--repeat`` times, each step of one format next to the same step of the other
(the order alternating):

1. full: fold every delta into an empty snapshot (the first build / a rebuild);
2. hourly: fold one more batch into that snapshot (what each refresh does);
3. load: read all tables back (what training does).

Machines here are shared and noisy: quote the ratios (delta ÷ manifest, >1: Delta Lake slower),
both measured in the same run, medians of the repeats.

    python bench/snapshot_format.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake

from graphrisk.arrow import arrow_to_pandas
from graphrisk.graph_schema import EDGE_TYPES, NODE_PROPERTIES, NodeLabel
from pipelines.snapshot import (
    _fold_edges,
    _fold_nodes,
    compact_snapshot,
    delta_dir,
    edge_schema,
    load_snapshot,
    node_schema,
)

# Rows per event a batch's delta gets in each table, and the key pool per event (how often keys
# repeat across batches); roughly the shape of the synthetic population's graph.
_NODE_SHARE = {NodeLabel.USER: (0.5, 0.1), NodeLabel.MERCHANT: (0.2, 0.002)}
_DEFAULT_NODE_SHARE = (0.15, 0.08)
_EDGE_SHARE = (0.25, 0.15)
_START_MS = 1_767_571_200_000


def _node_delta(label: NodeLabel, rows: int, pool: int, rng: np.random.Generator, t0: int) -> pa.Table:
    keys = np.unique(rng.integers(0, pool, rows))
    n = len(keys)
    schema = node_schema(label)
    cols: dict[str, Any] = {
        "id": [f"{label.value[:2]}{k:09d}" for k in keys],
        "first_seen": t0 + rng.integers(0, 3_600_000, n),
        "event_count": rng.integers(1, 5, n),
    }
    cols["last_seen"] = cols["first_seen"] + rng.integers(0, 60_000, n)
    for prop in NODE_PROPERTIES[label]:
        field = schema.field(prop)
        if pa.types.is_integer(field.type):
            cols[prop] = rng.integers(0, 10**6, n)
        else:
            cols[prop] = [f"{prop[:3]}-{v}" for v in rng.integers(0, 5000, n)]
    return pa.Table.from_pandas(pd.DataFrame(cols)[schema.names], schema=schema, preserve_index=False)


def _edge_delta(rows: int, pool: int, rng: np.random.Generator, t0: int) -> pa.Table:
    pairs = np.unique(rng.integers(0, pool, rows))
    n = len(pairs)
    first = t0 + rng.integers(0, 3_600_000, n)
    amounts = np.round(rng.gamma(2.0, 40.0, n), 2)
    df = pd.DataFrame({
        "src": [f"Us{p % (pool // 2 + 1):09d}" for p in pairs], "dst": [f"X{p:09d}" for p in pairs],
        "count": rng.integers(1, 4, n), "first_seen": first, "last_seen": first + rng.integers(0, 60_000, n),
        "amount_total": amounts, "amount_max": amounts,
    })  # fmt: skip
    return pa.Table.from_pandas(df.sort_values(["src", "dst"]), schema=edge_schema(), preserve_index=False)


def make_deltas(snapshot_dir: Path, events: int, batches: int, seed: int) -> int:
    """Write ``batches`` synthetic batch deltas; returns the total rows written."""
    rng = np.random.default_rng(seed)
    per_batch = events // batches
    total = 0
    for seq in range(1, batches + 1):
        out = delta_dir(snapshot_dir, seq)
        t0 = _START_MS + seq * 3_600_000
        for label in NodeLabel:
            share, pool = _NODE_SHARE.get(label, _DEFAULT_NODE_SHARE)
            table = _node_delta(label, int(per_batch * share), max(10, int(events * pool)), rng, t0)
            (out / "nodes").mkdir(parents=True, exist_ok=True)
            pq.write_table(table, out / "nodes" / f"{label.value}.parquet")
            total += table.num_rows
        for rel in EDGE_TYPES:
            share, pool = _EDGE_SHARE
            table = _edge_delta(int(per_batch * share), max(10, int(events * pool)), rng, t0)
            (out / "edges").mkdir(parents=True, exist_ok=True)
            pq.write_table(table, out / "edges" / f"{rel.value}.parquet")
            total += table.num_rows
    return total


def _tables() -> list[tuple[str, pa.Schema, NodeLabel | None]]:
    out: list[tuple[str, pa.Schema, NodeLabel | None]] = [
        (f"nodes/{lab.value}", node_schema(lab), lab) for lab in NodeLabel
    ]
    return out + [(f"edges/{rel.value}", edge_schema(), None) for rel in EDGE_TYPES]


def delta_compact(snapshot_dir: Path, lake: Path, seqs: list[int]) -> None:
    """Fold the deltas ``seqs`` into the Delta tables under ``lake``, one commit per table."""
    for name, schema, label in _tables():
        path = lake / name
        frames = [arrow_to_pandas(DeltaTable(str(path)).to_pyarrow_table())] if path.exists() else []
        for seq in seqs:
            f = delta_dir(snapshot_dir, seq) / f"{name}.parquet"
            frames.append(
                arrow_to_pandas(pq.read_table(f)) if f.exists() else arrow_to_pandas(schema.empty_table())
            )
        df = _fold_nodes(frames, label) if label is not None else _fold_edges(frames)
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
        props = CommitProperties(custom_metadata={"compacted_through": str(max(seqs))})
        write_deltalake(str(path), table, mode="overwrite", commit_properties=props)


def delta_load(lake: Path) -> dict[str, pd.DataFrame]:
    """Every table's latest version."""
    return {
        name: arrow_to_pandas(DeltaTable(str(lake / name)).to_pyarrow_table()) for name, _, _ in _tables()
    }


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(events: int, batches: int, repeat: int, seed: int) -> dict[str, Any]:
    """Measure both formats in one run; returns the figures and the ratios."""
    root = Path(tempfile.mkdtemp(prefix="graphrisk-snapfmt-"))
    try:
        deltas = root / "deltas-src"
        rows = make_deltas(deltas, events, batches + 1, seed)
        full, last = list(range(1, batches + 1)), batches + 1
        times: dict[str, list[float]] = {k: [] for k in
                                         ("manifest_full", "manifest_hourly", "manifest_load",
                                          "delta_full", "delta_hourly", "delta_load")}  # fmt: skip
        size: dict[str, int] = {}
        ops: dict[str, dict[str, Callable[[Path], object]]] = {
            "manifest": {
                "full": lambda w: compact_snapshot(w, through_seq=batches),
                "hourly": lambda w: compact_snapshot(w, through_seq=last),
                "load": load_snapshot,
            },
            "delta": {
                "full": lambda w: delta_compact(w, w / "lake", full),
                "hourly": lambda w: delta_compact(w, w / "lake", [last]),
                "load": lambda w: delta_load(w / "lake"),
            },
        }
        for r in range(repeat):
            work = {fmt: root / f"{fmt}-{r}" for fmt in ops}
            for w in work.values():
                shutil.copytree(deltas, w)
            # Each step of one format right after the same step of the other, the order
            # alternating, so a change in the machine's load hits both alike.
            for i, op in enumerate(("full", "hourly", "load")):
                order = ("manifest", "delta") if (r + i) % 2 == 0 else ("delta", "manifest")
                for fmt in order:
                    times[f"{fmt}_{op}"].append(_timed(lambda f=fmt, o=op, w=work[fmt]: ops[f][o](w)))
            size["manifest"] = sum(
                f.stat().st_size for f in (work["manifest"] / "current").resolve().rglob("*.parquet")
            )
            size["delta"] = sum(
                f.stat().st_size for f in (work["delta"] / "lake").rglob("*.parquet")
            )  # keeps old versions
            for w in work.values():
                shutil.rmtree(w)
        med = {k: round(statistics.median(v), 3) for k, v in times.items()}
        ratio = {
            op: round(med[f"delta_{op}"] / med[f"manifest_{op}"], 2) for op in ("full", "hourly", "load")
        }
        return {"events": events, "batches": batches, "delta_rows": rows, "repeat": repeat,
                "median_s": med, "delta_over_manifest": ratio, "bytes_on_disk": size,
                "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()}}  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    """Parse arguments, run, print the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=24, help="hourly batches in the full build")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.batches, args.repeat, args.seed), indent=2))


if __name__ == "__main__":
    main()
