"""Validation of raw records against the v1 event schema, a chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from graphrisk.events import FieldError, parse_event
from pipelines.records import STAGE_PARSE, STAGE_READ, DeadLetter, RawChunk
from pipelines.validate import EVENT_SCHEMA, event_columns, fast_rows, surely_valid, typed_view

DEAD = "dead"
# EVENT_SCHEMA plus each row's line in its file and its row in the chunk (to find the raw record).
BATCH_SCHEMA = EVENT_SCHEMA.append(pa.field("line", pa.int64())).append(pa.field("row", pa.int64()))


@dataclass(frozen=True)
class EventBatch:
    """Valid events of one chunk as :data:`BATCH_SCHEMA` columns, and the chunk they came from."""

    source: str
    table: pa.Table
    chunk: RawChunk


def parse_chunk(chunk: RawChunk) -> tuple[EventBatch, list[DeadLetter]]:
    """The valid events of a chunk, and dead letters for the others.

    Rows the vectorised check accepts are taken as they are; the rest go through
    :func:`parse_event` one by one, which accepts them or names the offending field.
    """
    dead = [
        DeadLetter(chunk.source, line, STAGE_READ, "record", error, None) for line, error in chunk.unreadable
    ]
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
    return EventBatch(chunk.source, pa.concat_tables(parts), chunk), dead


class _ParseFn(beam.DoFn):
    def __init__(self) -> None:
        self._read = Metrics.counter("graphrisk", "read")

    def process(self, chunk: RawChunk) -> Iterator[Any]:
        self._read.inc(len(chunk) + len(chunk.unreadable))
        batch, dead = parse_chunk(chunk)
        for letter in dead:
            yield pvalue.TaggedOutput(DEAD, letter)
        if len(batch.table):
            yield batch


class ParseEvents(beam.PTransform):
    """:class:`RawChunk` → :class:`EventBatch` on ``events``; invalid records → ``dead``."""

    def expand(self, chunks: beam.PCollection) -> pvalue.DoOutputsTuple:
        return chunks | "Validate" >> beam.ParDo(_ParseFn()).with_outputs(DEAD, main="events")
