"""Counting each event once: records sharing an ``event_id`` collapse to the first seen.

A replayed record (same id, same content) is a duplicate and is counted as such. Two records
with the same id but different content are a producer bug: the first (by file, then line) is
kept and the other goes to the dead letters, so nothing disappears silently. The same holds
across batches, against the ids earlier batches recorded (:mod:`pipelines.seen_ids`).

Clean tables are split into buckets by a stable hash of the event id, so every copy of an
event meets the others in one bucket; each bucket is then deduplicated as one sorted table.
Only rows whose id repeats are compared field by field.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.records import STAGE_DEDUPE, TALLY, DeadLetter, from_ipc, to_ipc
from pipelines.seen_ids import ReplayGuard, drop_replays, record_ids

DEAD = "dead"
# Buckets of event ids; the record of seen ids is split the same way (a change is handled, at a cost).
BUCKETS = 8
_ORIGIN = ("source", "line")


def bucket_of(event_ids: list[str], buckets: int) -> np.ndarray:
    """A bucket per event id, the same in every process (``hash()`` of a str is salted per process)."""
    return (
        np.fromiter((zlib.crc32(e.encode()) for e in event_ids), dtype=np.int64, count=len(event_ids))
        % buckets
    )


def split_by_bucket(clean: pa.Table, buckets: int) -> Iterator[tuple[int, pa.Table]]:
    """``(bucket, rows of clean)`` for every non-empty bucket."""
    of_row = bucket_of(clean.column("event_id").to_pylist(), buckets)
    for b in np.unique(of_row).tolist():
        yield b, clean.filter(pa.array(of_row == b))


def dedupe_table(rows: pa.Table) -> tuple[pa.Table, int, list[DeadLetter]]:
    """The first copy of each event, the number of exact replays, and conflicts as dead letters."""
    if not len(rows):
        return rows, 0, []
    ordered = rows.sort_by([("event_id", "ascending"), ("source", "ascending"), ("line", "ascending")])
    ids = ordered.column("event_id").combine_chunks()
    first = np.ones(len(ordered), dtype=bool)
    if len(ordered) > 1:
        first[1:] = ~pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1)).to_numpy(zero_copy_only=False)
    duplicates = 0
    dead: list[DeadLetter] = []
    copies = np.flatnonzero(~first)
    if len(copies):
        # Index of the kept row of each row's run: the last run start at or before it.
        kept_of = np.maximum.accumulate(np.where(first, np.arange(len(ordered)), 0))
        for i in copies.tolist():
            kept = _content(ordered, int(kept_of[i]))
            other = _content(ordered, i)
            if _without_origin(other) == _without_origin(kept):
                duplicates += 1
            else:
                src, ln = kept["source"], kept["line"]
                dead.append(
                    DeadLetter(other["source"], other["line"], STAGE_DEDUPE, "event_id",
                               f"same event_id as {src}:{ln} with different content",
                               {k: v for k, v in _without_origin(other).items() if v is not None})
                )  # fmt: skip
    return ordered.filter(pa.array(first)), duplicates, dead


def _content(table: pa.Table, row: int) -> dict[str, Any]:
    return table.slice(row, 1).to_pylist()[0]


def _without_origin(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _ORIGIN}


class _SplitFn(beam.DoFn):
    """Routes clean rows to buckets, gathered over the bundle: one element per bucket, not per file.

    Each element crossing the shuffle costs an encode and a decode, so a bundle's rows for a
    bucket travel as one table.
    """

    def __init__(self, buckets: int) -> None:
        self._buckets = buckets

    def start_bundle(self) -> None:
        self._parts: dict[int, list[pa.Table]] = {}

    def process(self, clean: pa.Table) -> Iterator[Any]:
        for bucket, rows in split_by_bucket(clean, self._buckets):
            self._parts.setdefault(bucket, []).append(rows)
        return iter(())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        window = GlobalWindow()
        for bucket, parts in sorted(self._parts.items()):
            yield WindowedValue((bucket, to_ipc(pa.concat_tables(parts))), window.max_timestamp(), [window])
        self._parts = {}


class _KeepFirstFn(beam.DoFn):
    def __init__(self, guard: ReplayGuard | None, buckets: int) -> None:
        self._guard = guard
        self._buckets = buckets

    def process(self, element: tuple[int, Iterable[bytes]]) -> Iterator[Any]:
        bucket, parts = element
        unique, duplicates, dead = dedupe_table(pa.concat_tables([from_ipc(p) for p in parts]))
        if self._guard is not None:
            # Then across batches: what earlier batches counted is a replay (or a conflict).
            unique, replays, late = drop_replays(unique, self._guard, bucket, self._buckets)
            record_ids(self._guard, bucket, self._buckets, unique)
            duplicates += replays
            dead += late
        yield pvalue.TaggedOutput(TALLY, ("accepted", len(unique)))
        yield pvalue.TaggedOutput(TALLY, ("duplicates", duplicates))
        for letter in dead:
            yield pvalue.TaggedOutput(DEAD, letter)
        yield unique


class DedupeEvents(beam.PTransform):
    """Clean event tables → one table of unique events per bucket; conflicts → ``dead``.

    With a ``guard`` (:mod:`pipelines.seen_ids`), events earlier batches counted are dropped too
    (replays are duplicates, other content or a time past the replay horizon a dead letter), and
    the batch records the ids it keeps. Without one, as in the in-process event log, which reads
    all its files as one batch, dedupe is within the batch.
    """

    def __init__(self, buckets: int = BUCKETS, guard: ReplayGuard | None = None) -> None:
        super().__init__()
        self.buckets = buckets
        self.guard = guard

    def expand(self, events: beam.PCollection) -> pvalue.DoOutputsTuple:
        keep_first = _KeepFirstFn(self.guard, self.buckets)
        return (
            events
            | "SplitByEventId" >> beam.ParDo(_SplitFn(self.buckets))
            | "GroupBucket" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(keep_first).with_outputs(DEAD, TALLY, main="events")
        )
