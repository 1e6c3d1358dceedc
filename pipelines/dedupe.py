"""Counting each event once: records sharing an ``event_id`` collapse to the first seen.

A replayed record (same id, same content) is a duplicate and is counted as such. Two records
with the same id but different content are a producer bug: the first (by file, then line) is
kept and the other goes to the dead letters, so nothing disappears silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.records import STAGE_DEDUPE, DeadLetter

DEAD = "dead"
NAMESPACE = "graphrisk"


class _KeepFirstFn(beam.DoFn):
    def __init__(self) -> None:
        self.duplicates = Metrics.counter(NAMESPACE, "duplicates")
        self.accepted = Metrics.counter(NAMESPACE, "accepted")

    def process(self, element: tuple[str, Iterable[tuple[str, int, dict[str, Any]]]]) -> Iterator[Any]:
        _, copies = element
        ordered = sorted(copies, key=lambda c: (c[0], c[1]))
        source, line, first = ordered[0]
        self.accepted.inc()
        yield first
        for src, ln, other in ordered[1:]:
            if other == first:
                self.duplicates.inc()
            else:
                yield pvalue.TaggedOutput(
                    DEAD,
                    DeadLetter(src, ln, STAGE_DEDUPE, "event_id",
                               f"same event_id as {source}:{line} with different content", other),
                )  # fmt: skip


class DedupeEvents(beam.PTransform):
    """``(source, line, clean_event)`` → one clean event per ``event_id``; conflicts → ``dead``."""

    def expand(self, events: beam.PCollection) -> pvalue.DoOutputsTuple:
        return (
            events
            | "KeyByEventId" >> beam.Map(lambda e: (e[2]["event_id"], e))
            | "GroupCopies" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(_KeepFirstFn()).with_outputs(DEAD, main="events")
        )
