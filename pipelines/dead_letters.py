"""The dead-letter sink: every rejected record, with its origin and reason, as JSONL."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam

from pipelines import uris
from pipelines.gather import GatherAll
from pipelines.records import DeadLetter


class _WriteFileFn(beam.DoFn):
    def __init__(self, location: str) -> None:
        self._location = location

    def process(self, _once: None, letters: list[DeadLetter]) -> Iterable[tuple[str, int]]:
        letters = sorted(letters, key=lambda d: (d.source, d.line, d.stage))
        # Through FileSystems: on a cluster the location is a gs://, s3:// or hdfs:// URI.
        uris.write_atomically(self._location, "".join(d.to_json() + "\n" for d in letters).encode())
        yield "rejected", len(letters)


class WriteDeadLetters(beam.PTransform):
    """Writes all dead letters of a batch to one JSONL file (re-runs replace it), sorted by origin."""

    def __init__(self, location: str | Path) -> None:
        super().__init__()
        self.location = uris.as_uri(location)

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        # One writer sees every letter, and writes the file (and counts 0) when there are none.
        return letters | "WriteJsonl" >> GatherAll(_WriteFileFn(self.location))
