"""The dead-letter sink: every rejected record, with its origin and reason, as JSONL."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.records import DeadLetter

NAMESPACE = "graphrisk"


class _WriteFileFn(beam.DoFn):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._rejected = Metrics.counter(NAMESPACE, "rejected")

    def process(self, element: tuple[None, Iterable[DeadLetter]]) -> Iterable[int]:
        letters = sorted(element[1], key=lambda d: (d.source, d.line, d.stage))
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            for d in letters:
                fh.write(d.to_json() + "\n")
        tmp.replace(self._path)
        self._rejected.inc(len(letters))
        yield len(letters)


class WriteDeadLetters(beam.PTransform):
    """Writes all dead letters of a batch to one JSONL file (re-runs replace it), sorted by origin."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        # A keyed singleton group makes exactly one writer see every letter, even when empty.
        return (
            letters
            | "OneKey" >> beam.Map(lambda d: (None, d))
            | "Gather" >> beam.GroupByKey()
            | "WriteJsonl" >> beam.ParDo(_WriteFileFn(self.path))
        )
