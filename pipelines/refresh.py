"""Hourly incremental refresh: process only the input partitions not processed before.

Progress lives in the store, beside the graph it describes (a ledger of ``IngestBatch`` and
``IngestPartition`` nodes):

1. A batch is recorded (``running``, with its sequence number and partitions) *before* any of
   its data is written.
2. The graph build writes with every statement guarded by that sequence number.
3. The batch is marked ``done`` and its partitions processed, in one transaction.

If the process dies between 1 and 3, the next refresh finds the ``running`` batch and runs it
again with the same number, partitions and ingestion time (its ``started_at``, which bounds the
event times accepted): what was committed is skipped, the rest applied, so no count is lost or
doubled. Only then are new partitions taken, as a new batch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graphrisk.config import Settings
from graphrisk.errors import GraphRiskError
from graphrisk.store import GraphStore
from pipelines.graph_build import BuildCounts, run_graph_build
from pipelines.read import SUPPORTED_SUFFIXES
from pipelines.snapshot import compact_snapshot


class LedgerError(GraphRiskError):
    """The ingest ledger in the store lacks what a refresh needs to resume."""


@dataclass(frozen=True)
class Partition:
    """One input file, by path relative to the input root, and a hash of its content."""

    path: str
    fingerprint: str


@dataclass
class BatchReport:
    """One batch of a refresh."""

    seq: int
    resumed: bool
    partitions: int
    counts: dict[str, Any]


@dataclass
class RefreshReport:
    """What a refresh did; written as JSON at the end of the run."""

    input_root: str
    batches: list[BatchReport] = field(default_factory=list)
    skipped_partitions: int = 0
    changed_after_processing: list[str] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        """Counts summed over batches."""
        keys = ("read", "accepted", "rejected", "duplicates", "node_rows", "rel_rows")
        return {k: sum(int(b.counts.get(k, 0)) for b in self.batches) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the JSON report."""
        return asdict(self) | {"totals": self.totals()}


def _fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def discover_partitions(input_root: Path) -> list[Partition]:
    """Every event file under ``input_root``, sorted by path (hourly names sort by time)."""
    files = sorted(p for p in input_root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    return [Partition(p.relative_to(input_root).as_posix(), _fingerprint(p)) for p in files]


def refresh(
    settings: Settings,
    store: GraphStore,
    input_root: Path,
    beam_args: list[str] | None = None,
    on_batch: Callable[[int, int, bool], None] | None = None,
) -> RefreshReport:
    """Resume any unfinished batch, then process new partitions as one new batch.

    ``on_batch(seq, partitions, resumed)`` is called before each batch runs (for progress).
    """
    started = time.perf_counter()
    report = RefreshReport(input_root=str(input_root))
    store.ensure_schema()
    found = {p.path: p for p in discover_partitions(input_root)}
    processed = {r["path"]: r["fingerprint"] for r in store.read("ledger/processed_partitions")}
    report.changed_after_processing = sorted(
        path for path, fp in processed.items() if path in found and found[path].fingerprint != fp
    )

    # (seq, partitions, resumed, ingestion time in epoch ms)
    plan: list[tuple[int, list[str], bool, int]] = []
    unfinished = store.read("ledger/unfinished_batch")
    in_flight: set[str] = set()
    if unfinished:
        row = unfinished[0]
        plan.append((int(row["seq"]), list(row["partitions"]), True, _started_at(row)))
        in_flight = set(row["partitions"])
    new = [p for path, p in found.items() if path not in processed and path not in in_flight]
    report.skipped_partitions = len(found) - len(new) - len(in_flight & found.keys())
    if new:
        seq = max([int(store.read("ledger/last_batch_seq")[0]["seq"])] + [s for s, *_ in plan]) + 1
        ingested_at = _now_ms()
        store.write(
            "ledger/start_batch",
            seq=seq,
            partitions=[p.path for p in new],
            fingerprints=[p.fingerprint for p in new],
            now=ingested_at,
        )
        plan.append((seq, [p.path for p in new], False, ingested_at))

    for seq, paths, resumed, ingested_at in plan:
        if on_batch is not None:
            on_batch(seq, len(paths), resumed)
        counts: BuildCounts = run_graph_build(
            settings, input_root, paths, seq, beam_args, ingested_at_ms=ingested_at
        )
        store.write(
            "ledger/finish_batch",
            seq=seq,
            now=_now_ms(),
            read=counts.read,
            accepted=counts.accepted,
            rejected=counts.rejected,
            duplicates=counts.duplicates,
        )
        report.batches.append(BatchReport(seq, resumed, len(paths), counts.to_dict()))

    last_done = int(store.read("ledger/last_batch_seq")[0]["seq"])
    report.snapshot = compact_snapshot(settings.snapshot_dir, through_seq=last_done)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _now_ms() -> int:
    return int(time.time() * 1000)


def _started_at(row: dict[str, Any]) -> int:
    """The recorded ingestion time of an unfinished batch.

    Raises:
        LedgerError: the batch has none (the ledger was edited by hand); the clock now is no
            substitute, since it would accept events the first run rejected.
    """
    started_at = row.get("started_at")
    if started_at is None:
        raise LedgerError(
            f"unfinished batch {row['seq']} has no started_at: set it on its IngestBatch node to the"
            " time (epoch ms) the batch first ran, then refresh again"
        )
    return int(started_at)
