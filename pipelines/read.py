"""Reading event files (JSONL, CSV, Parquet) into :class:`RawRecord` elements."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq

from graphrisk.errors import UnsupportedInputError
from pipelines.records import RawRecord

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")


def read_records(root: Path, relpath: str) -> Iterator[RawRecord]:
    """Every record of one file, numbered; unreadable lines become records with an error.

    Raises:
        UnsupportedInputError: the file's suffix is none of :data:`SUPPORTED_SUFFIXES`.
    """
    path = root / relpath
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        yield from _read_jsonl(path, relpath)
    elif suffix == ".csv":
        yield from _read_csv(path, relpath)
    elif suffix == ".parquet":
        yield from _read_parquet(path, relpath)
    else:
        raise UnsupportedInputError(f"{relpath}: unsupported input format {suffix!r}")


def _read_jsonl(path: Path, source: str) -> Iterator[RawRecord]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield RawRecord(source, n, None, f"invalid JSON: {exc}")
                continue
            if isinstance(obj, dict):
                yield RawRecord(source, n, obj)
            else:
                yield RawRecord(source, n, None, f"expected a JSON object, got {type(obj).__name__}")


def _read_csv(path: Path, source: str) -> Iterator[RawRecord]:
    # Every value stays a string: a document "00123" must not become the integer 123.
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            line = reader.line_num
            if None in row:
                yield RawRecord(source, line, None, "more values than header columns")
            else:
                yield RawRecord(source, line, dict(row))


def _read_parquet(path: Path, source: str) -> Iterator[RawRecord]:
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=20_000):
        for row in batch.to_pylist():
            n += 1
            yield RawRecord(source, n, row)


class ReadEvents(beam.PTransform):
    """Reads the given files under ``root``; one element per record.

    Files are the unit of parallelism (hourly partitions are many small files), so the file
    list is reshuffled before reading to spread it over workers.
    """

    def __init__(self, root: Path, relpaths: list[str]) -> None:
        super().__init__()
        self.root = root
        self.relpaths = relpaths

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        root = self.root
        return (
            pbegin
            | "ListFiles" >> beam.Create(sorted(self.relpaths))
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFile" >> beam.FlatMap(lambda rel: read_records(root, rel))
        )
