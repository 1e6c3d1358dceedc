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
doubled. Only then are new partitions taken, as a new batch. The resume checks first that the
batch's files are the ones it started with (their fingerprints): a file changed or removed in
between stops it (:class:`ChangedPartitionsError`), since its committed part used the old content.

One refresh runs at a time (:mod:`pipelines.locks`: a file lock in the data directory and a lock
in the ledger); a second one waits ``refresh_lock_wait_s`` and then fails with who holds it.

An operator can abandon an unfinished batch (:func:`abandon_batch`, ``graphrisk refresh
--abandon-batch N --reason ...``): the ledger records who, when and why; its partitions are not
marked processed, so the next refresh takes them again as a new batch; its snapshot delta is
moved aside and never folded, and its record of seen event ids is forgotten. Only a batch that
has written nothing to the store can be abandoned without ``force``: the store keeps no pre-image
to undo a partial write, and its events would count twice once their partitions are taken again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graphrisk.config import Settings
from graphrisk.errors import GraphRiskError
from graphrisk.store import GraphStore
from pipelines import uris
from pipelines.graph_build import BuildCounts, run_graph_build
from pipelines.locks import StoreLock, holder_name, now_ms, refresh_lock
from pipelines.read import SUPPORTED_SUFFIXES
from pipelines.seen_ids import forget_batch
from pipelines.snapshot import compact_snapshot, delta_dir


class LedgerError(GraphRiskError):
    """The ingest ledger in the store lacks what a refresh needs to resume."""


class ChangedPartitionsError(LedgerError):
    """An unfinished batch's input files changed or vanished since the batch started."""

    def __init__(self, seq: int, changed: list[str], missing: list[str], input_root: str | Path) -> None:
        files = [f"{p} (content changed)" for p in changed] + [f"{p} (gone)" for p in missing]
        super().__init__(
            f"cannot resume interrupted batch {seq}: {len(files)} of its input files under {input_root}"
            f" differ from when it started: {', '.join(files)}. Part of the batch is already in the"
            " store with the old content, so resuming would mix old and new. Restore those files as"
            " they were and run again; or, if the batch wrote nothing yet, abandon it with"
            f" `graphrisk refresh --abandon-batch {seq} --reason ...` so the files are taken again."
        )
        self.seq = seq
        self.changed = changed
        self.missing = missing


class AbandonRefusedError(LedgerError):
    """A batch cannot be abandoned (not unfinished, or it already wrote to the store)."""


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
    # Processed partitions whose content changed since (not folded in again): the CLI exits
    # non-zero unless accepted; accepted ones are recorded in the ledger and listed here too.
    changed_after_processing: list[str] = field(default_factory=list)
    accepted_changes: list[str] = field(default_factory=list)
    abandoned: dict[str, Any] | None = None
    lock: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        """Counts summed over batches."""
        keys = ("read", "accepted", "rejected", "duplicates", "node_rows", "rel_rows")
        return {k: sum(int(b.counts.get(k, 0)) for b in self.batches) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the JSON report."""
        return asdict(self) | {"totals": self.totals()}


def discover_partitions(input_root: str | Path) -> list[Partition]:
    """Every event file under ``input_root`` (a folder or a URI), sorted by path (hourly names sort by time).

    Raises:
        InputLocationError: the root cannot be listed.
    """
    return [Partition(f.relpath, uris.sha256(f.uri)) for f in uris.list_files(input_root, SUPPORTED_SUFFIXES)]


def refresh(
    settings: Settings,
    store: GraphStore,
    input_root: str | Path,
    beam_args: list[str] | None = None,
    on_batch: Callable[[int, int, bool], None] | None = None,
    *,
    accept_changed: bool = False,
    lock_wait_s: float | None = None,
    warn: Callable[[str], None] | None = None,
) -> RefreshReport:
    """Resume any unfinished batch, then process new partitions as one new batch.

    ``on_batch(seq, partitions, resumed)`` is called before each batch runs (for progress).
    ``accept_changed`` records processed partitions whose content changed since as accepted
    (their new fingerprint), so later runs stop reporting them; they are not folded in again.

    Raises:
        RefreshLockedError: another refresh holds the lock (after ``lock_wait_s``).
        ChangedPartitionsError: the unfinished batch's files changed since it started.
    """
    with refresh_lock(settings, store, wait_s=lock_wait_s, warn=warn) as lock:
        report = _refresh_locked(settings, store, input_root, beam_args, on_batch, accept_changed, lock)
        report.lock = {"holder": lock.holder, "taken_over": lock.taken_over}
        return report


def _refresh_locked(
    settings: Settings,
    store: GraphStore,
    input_root: str | Path,
    beam_args: list[str] | None,
    on_batch: Callable[[int, int, bool], None] | None,
    accept_changed: bool,
    lock: StoreLock,
) -> RefreshReport:
    started = time.perf_counter()
    report = RefreshReport(input_root=str(input_root))  # the schema is ensured by refresh_lock
    found = {p.path: p for p in discover_partitions(input_root)}
    processed = {r["path"]: r["fingerprint"] for r in store.read("ledger/processed_partitions")}
    report.changed_after_processing = sorted(
        path for path, fp in processed.items() if path in found and found[path].fingerprint != fp
    )
    if accept_changed and report.changed_after_processing:
        changed = report.changed_after_processing
        store.write(
            "ledger/accept_changed_partitions", paths=changed,
            fingerprints=[found[p].fingerprint for p in changed], by=holder_name(), now=now_ms(),
        )  # fmt: skip
        report.accepted_changes = changed

    # (seq, partitions, resumed, ingestion time in epoch ms)
    plan: list[tuple[int, list[str], bool, int]] = []
    unfinished = store.read("ledger/unfinished_batch")
    in_flight: set[str] = set()
    if unfinished:
        row = unfinished[0]
        _check_unchanged(row, found, input_root)
        plan.append((int(row["seq"]), list(row["partitions"]), True, _started_at(row)))
        in_flight = set(row["partitions"])
    new = [p for path, p in found.items() if path not in processed and path not in in_flight]
    report.skipped_partitions = len(found) - len(new) - len(in_flight & found.keys())
    if new:
        seq = max([int(store.read("ledger/last_batch_seq")[0]["seq"])] + [s for s, *_ in plan]) + 1
        ingested_at = now_ms()
        lock.check()
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
        lock.check()
        store.write(
            "ledger/finish_batch",
            seq=seq,
            now=now_ms(),
            read=counts.read,
            accepted=counts.accepted,
            rejected=counts.rejected,
            duplicates=counts.duplicates,
        )
        report.batches.append(BatchReport(seq, resumed, len(paths), counts.to_dict()))

    last_done = int(store.read("ledger/last_batch_seq")[0]["seq"])
    done = {int(r["seq"]) for r in store.read("ledger/done_batch_seqs")}
    lock.check()
    # Also verifies the snapshot against its manifest, and rebuilds it from the deltas if not.
    report.snapshot = compact_snapshot(settings.snapshot_dir, through_seq=last_done, done=done)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _check_unchanged(row: dict[str, Any], found: dict[str, Partition], input_root: str | Path) -> None:
    """Stop a resume whose files are not the ones its batch started with.

    Raises:
        ChangedPartitionsError: naming each changed or missing file.
    """
    paths = list(row["partitions"])
    fingerprints = row.get("fingerprints")
    if not fingerprints or len(fingerprints) != len(paths):
        raise LedgerError(
            f"unfinished batch {row['seq']} has no fingerprints of its partitions in the ledger, so a"
            " resume cannot check they are unchanged: abandon it (`graphrisk refresh --abandon-batch"
            f" {row['seq']} --reason ...`) if it wrote nothing, or restore the ledger"
        )
    missing = [p for p in paths if p not in found]
    changed = [
        p for p, fp in zip(paths, fingerprints, strict=True) if p in found and found[p].fingerprint != fp
    ]
    if changed or missing:
        raise ChangedPartitionsError(int(row["seq"]), changed, missing, input_root)


def abandon_batch(
    settings: Settings,
    store: GraphStore,
    seq: int,
    reason: str,
    *,
    force: bool = False,
    lock_wait_s: float | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Mark unfinished batch ``seq`` abandoned, with who, when and why; returns the record.

    Its partitions stay unprocessed (the next refresh takes them again, as a new batch) and its
    snapshot delta is moved to ``deltas/abandoned/`` (never folded). A batch that already wrote to
    the store is refused unless ``force``: those writes cannot be undone, and its events would then
    count twice; the record says how many nodes and relationships it had written.

    Raises:
        AbandonRefusedError: no such batch, it is not unfinished, or it wrote to the store.
        RefreshLockedError: a refresh is running (it may be working on that batch).
    """
    if not reason.strip():
        raise AbandonRefusedError("abandoning a batch needs a reason (--reason), for the ledger")
    with refresh_lock(settings, store, wait_s=lock_wait_s, warn=warn):
        rows = store.read("ledger/batch", seq=seq)
        if not rows:
            raise AbandonRefusedError(f"there is no batch {seq} in the ledger (see `graphrisk summary`)")
        if rows[0]["status"] != "running":
            raise AbandonRefusedError(
                f"batch {seq} is {rows[0]['status']!r}: only an unfinished ('running') batch can be abandoned"
            )
        nodes = int(store.read("ledger/batch_node_writes", seq=seq)[0]["n"])
        rels = int(store.read("ledger/batch_rel_writes", seq=seq)[0]["n"])
        if (nodes or rels) and not force:
            raise AbandonRefusedError(
                f"batch {seq} already wrote {nodes} nodes and {rels} relationships to the store, which"
                " cannot be undone: if its partitions were taken again those events would count twice."
                " Resume it instead (fix or restore its files and run `graphrisk refresh`), or pass"
                " --force-abandon to abandon it anyway and accept the double count"
            )
        by, now = holder_name(), now_ms()
        store.write("ledger/abandon_batch", seq=seq, now=now, by=by, reason=reason,
                    partial_nodes=nodes, partial_rels=rels)  # fmt: skip
        # Its recorded event ids go too: else its events would count as replays when retaken.
        forgotten = forget_batch(settings.seen_ids_dir, seq)
        moved = None
        src = delta_dir(settings.snapshot_dir, seq)
        if src.is_dir():
            dest = settings.snapshot_dir / "deltas" / "abandoned" / f"{src.name}-{now}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dest)
            moved = str(dest)
        return {
            "seq": seq, "partitions": list(rows[0]["partitions"]), "abandoned_by": by,
            "abandoned_at": now, "reason": reason, "partial_writes": {"nodes": nodes, "relationships": rels},
            "forced": bool(nodes or rels), "delta_moved_to": moved, "seen_id_files_forgotten": forgotten,
            "next": "its partitions are not processed: the next refresh takes them again as a new batch",
        }  # fmt: skip


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
