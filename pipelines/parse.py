"""Validation of raw records against the v1 event schema, a chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam import pvalue

from graphrisk.events import FieldError, parse_event
from pipelines.records import STAGE_PARSE, STAGE_READ, TALLY, DeadLetter, RawChunk, StageError, where
from pipelines.validate import EVENT_SCHEMA, event_columns, fast_rows, surely_valid, typed_view

DEAD = "dead"
# EVENT_SCHEMA plus each row's line in its file and its row in the chunk (to find the raw record).
BATCH_SCHEMA = EVENT_SCHEMA.append(pa.field("line", pa.int64())).append(pa.field("row", pa.int64()))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds (``2099-01-01T00:00:00.000Z``)."""
    # timedelta is exact in milliseconds; fromtimestamp(ms / 1000) can round 0.999 s the wrong way.
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class FutureEventLimit:
    """Events dated after ``ingested_at_ms`` + ``tolerance_s`` are rejected.

    ``ingested_at_ms`` is the batch's ingestion time as the ledger recorded it when the batch
    started, not the clock when a stage runs: a resumed batch must reject exactly what its first
    run rejected.
    """

    ingested_at_ms: int
    tolerance_s: int

    @property
    def latest_ms(self) -> int:
        """The latest event time accepted (inclusive)."""
        return self.ingested_at_ms + self.tolerance_s * 1000

    def reason(self, time_ms: int) -> str:
        """The dead-letter reason for an event dated ``time_ms`` (after :attr:`latest_ms`)."""
        return (
            f"time {iso_utc(time_ms)} is after the latest accepted {iso_utc(self.latest_ms)} (ingestion"
            f" time {iso_utc(self.ingested_at_ms)} plus {self.tolerance_s} s tolerance): fix the producer's"
            " clock, or raise GRAPHRISK_FUTURE_EVENT_TOLERANCE_S if its clock skew is expected"
        )


@dataclass(frozen=True)
class EventBatch:
    """Valid events of one chunk as :data:`BATCH_SCHEMA` columns, and the chunk they came from."""

    source: str
    table: pa.Table
    chunk: RawChunk


def parse_chunk(
    chunk: RawChunk, future: FutureEventLimit | None = None
) -> tuple[EventBatch, list[DeadLetter]]:
    """The valid events of a chunk, and dead letters for the others.

    Rows the vectorised check accepts are taken as they are; the rest go through
    :func:`parse_event` one by one, which accepts them or names the offending field. Events
    valid by the schema but dated after ``future``'s limit are then rejected on field ``time``,
    whichever path took them. ``future=None`` checks no limit: for callers replaying history
    they know is past (the in-process event log, tests); the graph build always passes one.
    """
    dead = [
        DeadLetter(chunk.source, r.line, STAGE_READ, r.field, r.error or "unreadable", None, r.raw)
        for r in chunk.unreadable
    ]
    if chunk.broken is not None:
        dead.append(DeadLetter(chunk.source, chunk.broken[0], STAGE_READ, "file", chunk.broken[1], None))
    lines = np.asarray(chunk.lines, dtype=np.int64)
    rows = np.arange(len(chunk), dtype=np.int64)
    view: pa.Table | None = None
    fast = np.zeros(len(chunk), dtype=bool)
    if chunk.table is not None:
        view, unsure = typed_view(chunk.table)
        fast = surely_valid(view) & ~unsure
    parts = []
    if view is not None and fast.any():
        part = fast_rows(view, fast)
        parts.append(
            part.append_column("line", pa.array(lines[fast])).append_column("row", pa.array(rows[fast]))
        )
    slow: list[dict[str, Any]] = []
    for row in np.flatnonzero(~fast).tolist():
        record = chunk.record(row)
        try:
            event = parse_event(record)
        except FieldError as exc:
            dead.append(DeadLetter(chunk.source, int(lines[row]), STAGE_PARSE, exc.field, exc.reason, record))
            continue
        slow.append(event_columns(event) | {"line": int(lines[row]), "row": row})
    if slow or not parts:
        parts.append(pa.Table.from_pylist(slow, schema=BATCH_SCHEMA))
    table = pa.concat_tables(parts)
    if future is not None and len(table):
        table = _reject_future(chunk, table, future, dead)
    return EventBatch(chunk.source, table, chunk), dead


def _reject_future(
    chunk: RawChunk, table: pa.Table, future: FutureEventLimit, dead: list[DeadLetter]
) -> pa.Table:
    """``table`` without the events dated after the limit; a dead letter for each appended to ``dead``.

    Checked on the canonical columns both paths produce, so fast and per-record rows are judged alike.
    """
    times = table.column("time").to_numpy()
    late = times > future.latest_ms
    if not late.any():
        return table
    lines = table.column("line").to_numpy()
    rows = table.column("row").to_numpy()
    for i in np.flatnonzero(late).tolist():
        dead.append(
            DeadLetter(chunk.source, int(lines[i]), STAGE_PARSE, "time", future.reason(int(times[i])),
                       chunk.record(int(rows[i])))
        )  # fmt: skip
    return table.filter(pa.array(~late))


class _ParseFn(beam.DoFn):
    def __init__(self, future: FutureEventLimit | None) -> None:
        self._future = future

    def process(self, chunk: RawChunk) -> Iterator[Any]:
        yield pvalue.TaggedOutput(TALLY, ("read", chunk.read_count))
        try:
            batch, dead = parse_chunk(chunk, self._future)
        except Exception as exc:  # not a bad record (those are dead letters): name the input, keep the cause
            raise StageError(f"{where(chunk)}: parsing failed: {type(exc).__name__}: {exc}") from exc
        for letter in dead:
            yield pvalue.TaggedOutput(DEAD, letter)
        if len(batch.table):
            yield batch


class ParseEvents(beam.PTransform):
    """:class:`RawChunk` → :class:`EventBatch` on ``events``; invalid records → ``dead``; ``tally``: records read.

    ``future`` is the limit on event times (see :func:`parse_chunk`); ``None`` checks none, which
    only tests of the transform want: :class:`pipelines.graph_build.BuildEntityGraph` always passes one.
    """

    def __init__(self, future: FutureEventLimit | None = None) -> None:
        super().__init__()
        self.future = future

    def expand(self, chunks: beam.PCollection) -> pvalue.DoOutputsTuple:
        return chunks | "Validate" >> beam.ParDo(_ParseFn(self.future)).with_outputs(
            DEAD, TALLY, main="events"
        )
