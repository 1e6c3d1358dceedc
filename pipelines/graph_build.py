"""The graph build: event files → validated, pseudonymised, aggregated graph in the store + snapshot delta.

``BuildEntityGraph`` chains one composite per job; ``run_graph_build`` wires the I/O, runs
one batch on the chosen runner and returns its counts, reconciled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam

from graphrisk.config import Settings
from pipelines import uris
from pipelines.aggregate import AggregateEdges, AggregateNodes
from pipelines.dead_letters import WriteDeadLetters
from pipelines.dedupe import DedupeEvents
from pipelines.extract import EDGES, NODES, ExtractGraph
from pipelines.gather import GatherAll
from pipelines.options import pipeline_options
from pipelines.parse import FutureEventLimit, ParseEvents
from pipelines.pseudonymise import PseudonymiseEvents
from pipelines.read import ReadEvents
from pipelines.records import TALLY
from pipelines.seen_ids import ReplayGuard, prepare_guard
from pipelines.snapshot import WriteSnapshotDelta, delta_dir
from pipelines.worker_secrets import WorkerSecrets, exported, worker_settings
from pipelines.write_store import WriteGraphToStore


class ReconciliationError(RuntimeError):
    """Counts do not add up: records were lost or double counted."""


@dataclass
class BuildCounts:
    """What one batch read, kept, rejected and wrote."""

    read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    node_rows: int = 0
    rel_rows: int = 0
    node_rows_applied: int = 0
    rel_rows_applied: int = 0
    seconds: float = 0.0
    store_write_seconds: float = 0.0
    rejected_by_stage: dict[str, int] = field(default_factory=dict)

    def reconcile(self) -> None:
        """Check read = accepted + rejected + duplicates.

        Raises:
            ReconciliationError: it does not hold.
        """
        if self.read != self.accepted + self.rejected + self.duplicates:
            raise ReconciliationError(
                f"read {self.read} != accepted {self.accepted} + rejected {self.rejected}"
                f" + duplicates {self.duplicates}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the JSON report."""
        return asdict(self)


class BuildEntityGraph(beam.PTransform):
    """Record chunks → (graph writes, snapshot files, dead-letter count).

    read → parse/validate → normalise/pseudonymise → dedupe → extract → aggregate → write.
    Events dated after ``ingested_at_ms`` plus ``settings.future_event_tolerance_s`` are
    dead-lettered; ``ingested_at_ms`` is the batch's recorded start, the same on every run of it.
    With a ``replay_guard``, events counted by earlier batches are duplicates (see
    :mod:`pipelines.seen_ids`).
    """

    def __init__(
        self,
        settings: Settings,
        secrets: WorkerSecrets,
        batch_seq: int,
        outputs: BatchOutputs,
        ingested_at_ms: int,
        replay_guard: ReplayGuard | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.secrets = secrets
        self.batch_seq = batch_seq
        self.outputs = outputs
        self.future = FutureEventLimit(ingested_at_ms, settings.future_event_tolerance_s)
        self.replay_guard = replay_guard

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        s = self.settings
        parsed = records | "Parse" >> ParseEvents(self.future)
        clean = parsed.events | "Pseudonymise" >> PseudonymiseEvents(
            self.secrets.pseudonymisation_key, s.fx_rates, s.default_phone_region
        )
        unique = clean.events | "Dedupe" >> DedupeEvents(guard=self.replay_guard)
        facts = unique.events | "Extract" >> ExtractGraph()
        nodes = facts[NODES] | "AggregateNodes" >> AggregateNodes()
        edges = facts[EDGES] | "AggregateEdges" >> AggregateEdges()
        written = (nodes, edges) | "WriteStore" >> WriteGraphToStore(
            s, self.secrets.store_password, self.batch_seq
        )
        snapshot = (nodes, edges) | "WriteSnapshot" >> WriteSnapshotDelta(self.outputs.delta)
        dead = (
            (parsed.dead, clean.dead, unique.dead)
            | "AllDeadLetters" >> beam.Flatten()
            | "WriteDeadLetters" >> WriteDeadLetters(self.outputs.dead_letters)
        )
        tallies = (
            (parsed[TALLY], unique[TALLY], written, dead)
            | "AllTallies" >> beam.Flatten()
            | "WriteCounts" >> WriteCounts(self.outputs.counts)
        )
        return {"written": written, "snapshot": snapshot, "dead": dead, "counts": tallies}


def dead_letter_path(settings: Settings, batch_seq: int) -> Path:
    """Dead-letter file of one batch."""
    return settings.dead_letter_dir / f"batch-{batch_seq:06d}.jsonl"


@dataclass(frozen=True)
class BatchOutputs:
    """Where a batch's workers write its snapshot delta (a folder) and dead letters (a file): URIs."""

    delta: str
    dead_letters: str
    counts: str
    staged: bool = False

    @classmethod
    def of(cls, settings: Settings, batch_seq: int) -> BatchOutputs:
        """In data_dir, or under ``settings.staging_uri`` when the workers do not share its disk."""
        if settings.staging_uri is None:
            return cls(
                uris.as_uri(delta_dir(settings.snapshot_dir, batch_seq)),
                uris.as_uri(dead_letter_path(settings, batch_seq)),
                uris.as_uri(settings.data_dir / "batch-counts" / f"batch-{batch_seq:06d}.json"),
            )
        root = uris.join(settings.staging_uri, f"batch-{batch_seq:06d}")
        return cls(
            uris.join(root, "delta"),
            uris.join(root, "dead-letters.jsonl"),
            uris.join(root, "counts.json"),
            staged=True,
        )

    def fetch(self, settings: Settings, batch_seq: int) -> None:
        """Copy staged outputs into data_dir, where compaction and the report read them."""
        if not self.staged:
            return
        uris.copy_tree(self.delta, delta_dir(settings.snapshot_dir, batch_seq))
        with uris.open_read(self.dead_letters) as fh:
            uris.write_atomically(dead_letter_path(settings, batch_seq), fh.read())


def run_graph_build(
    settings: Settings,
    input_root: str | Path,
    relpaths: list[str],
    batch_seq: int,
    beam_args: list[str] | None = None,
    *,
    ingested_at_ms: int,
) -> BuildCounts:
    """Run one batch over ``relpaths`` (relative to ``input_root``) and return reconciled counts.

    ``ingested_at_ms`` is the batch's ingestion time (epoch ms): events dated after it plus
    ``settings.future_event_tolerance_s`` are dead-lettered. Pass the time the ledger recorded
    when the batch started, not the clock now, so that a re-run rejects exactly the same events.

    Raises:
        ReconciliationError: counts do not add up.
    """
    dl_path = dead_letter_path(settings, batch_seq)
    dl_path.unlink(missing_ok=True)
    outputs = BatchOutputs.of(settings, batch_seq)
    uris.delete_if_exists(outputs.counts)  # a failed earlier run's counts must not be read as this one's
    # Only batches before this one count as seen; this batch's own record is rewritten.
    guard = prepare_guard(settings.seen_ids_dir, batch_seq, settings.replay_horizon_days)
    opts = pipeline_options(settings.beam_runner, settings.beam_workers, beam_args)
    worker_view, secrets, exports = worker_settings(settings, opts)
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=opts)
    records = pipeline | "Read" >> ReadEvents(input_root, relpaths)
    _ = records | "Build" >> BuildEntityGraph(worker_view, secrets, batch_seq, outputs, ingested_at_ms, guard)
    with exported(exports):
        result = pipeline.run()
        result.wait_until_finish()
    counts = _counts_from_file(outputs.counts)
    outputs.fetch(settings, batch_seq)
    counts.seconds = round(time.perf_counter() - started, 3)
    counts.rejected_by_stage = _rejected_by_stage(dl_path)
    counts.reconcile()
    return counts


def _counts_from_file(location: str) -> BuildCounts:
    """The batch's tallies as the pipeline wrote them (see :class:`WriteCounts`).

    Raises:
        ReconciliationError: the pipeline finished without writing them.
    """
    try:
        with uris.open_read(location) as fh:
            values = json.load(fh)
    except OSError as exc:  # FileSystems raises BeamIOError (an OSError) for a missing file
        raise ReconciliationError(f"the pipeline finished but wrote no counts at {location}: {exc}") from exc
    return BuildCounts(
        read=values.get("read", 0),
        accepted=values.get("accepted", 0),
        rejected=values.get("rejected", 0),
        duplicates=values.get("duplicates", 0),
        node_rows=values.get("node_rows", 0),
        rel_rows=values.get("rel_rows", 0),
        node_rows_applied=values.get("node_applied", 0),
        rel_rows_applied=values.get("rel_applied", 0),
        store_write_seconds=values.get("store_write_ms", 0) / 1000,
    )


class _WriteCountsFn(beam.DoFn):
    def __init__(self, location: str) -> None:
        self._location = location

    def process(self, _once: None, tallies: list[tuple[str, int]]) -> Iterator[dict[str, int]]:
        totals: dict[str, int] = {}
        for name, n in tallies:
            totals[name] = totals.get(name, 0) + int(n)
        uris.write_atomically(self._location, json.dumps(totals, sort_keys=True).encode())
        yield totals


class WriteCounts(beam.PTransform):
    """``(name, n)`` tallies → one JSON object of totals at ``location`` (re-runs replace it).

    The counts travel as data rather than Beam metrics, which not every runner reports (Spark's
    portable job server reports none): a missing count fails the batch instead of reading 0.
    """

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location

    def expand(self, tallies: beam.PCollection) -> beam.PCollection:
        # One writer sees every tally (a few hundred small pairs per batch), and writes zeros
        # for a batch of empty files.
        return tallies | "WriteJson" >> GatherAll(_WriteCountsFn(self.location))


def _rejected_by_stage(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    if path.exists():
        with path.open() as fh:
            for line in fh:
                stage = json.loads(line)["stage"]
                out[stage] = out.get(stage, 0) + 1
    return dict(sorted(out.items()))
