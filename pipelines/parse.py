"""Validation of raw records against the v1 event schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from graphrisk.events import FieldError, parse_event
from pipelines.records import STAGE_PARSE, STAGE_READ, DeadLetter, RawRecord

DEAD = "dead"


class _ParseFn(beam.DoFn):
    def __init__(self) -> None:
        self._read = Metrics.counter("graphrisk", "read")

    def process(self, raw: RawRecord) -> Iterator[Any]:
        self._read.inc()
        if raw.record is None:
            yield pvalue.TaggedOutput(
                DEAD, DeadLetter(raw.source, raw.line, STAGE_READ, "record", raw.error or "", None)
            )
            return
        try:
            event = parse_event(raw.record)
        except FieldError as exc:
            yield pvalue.TaggedOutput(
                DEAD, DeadLetter(raw.source, raw.line, STAGE_PARSE, exc.field, exc.reason, raw.record)
            )
            return
        yield (raw.source, raw.line, event, raw.record)


class ParseEvents(beam.PTransform):
    """RawRecord → ``(source, line, event, raw)`` on ``events``; invalid ones → ``dead``."""

    def expand(self, records: beam.PCollection) -> pvalue.DoOutputsTuple:
        return records | "Validate" >> beam.ParDo(_ParseFn()).with_outputs(DEAD, main="events")
