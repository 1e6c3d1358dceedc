"""Reading event files (JSONL, CSV, Parquet) into :class:`RawChunk` elements."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from graphrisk.errors import UnsupportedInputError
from pipelines.records import RawChunk, RawRecord

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")
CHUNK_ROWS = 20_000
# A column no event has: a record that cannot be flattened carries it, which sends the record
# to the per-record validation (unknown fields are never taken by the fast path).
UNFLATTENABLE = "__unflattenable__"


def read_records(root: Path, relpath: str) -> Iterator[RawRecord]:
    """Every record of one file, numbered; unreadable lines become records with an error.

    Raises:
        UnsupportedInputError: the file's suffix is none of :data:`SUPPORTED_SUFFIXES`.
    """
    for chunk in read_chunks(root, relpath):
        unreadable = dict(chunk.unreadable)
        rows = iter(range(len(chunk)))
        for line in sorted([*chunk.lines, *unreadable]):
            if line in unreadable:
                yield RawRecord(chunk.source, line, None, unreadable[line])
            else:
                yield RawRecord(chunk.source, line, chunk.record(next(rows)))


def read_chunks(root: Path, relpath: str) -> Iterator[RawChunk]:
    """One file as chunks of at most :data:`CHUNK_ROWS` records.

    Raises:
        UnsupportedInputError: the file's suffix is none of :data:`SUPPORTED_SUFFIXES`.
    """
    path = root / relpath
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        records = _read_jsonl(path, relpath)
    elif suffix == ".csv":
        records = _read_csv(path, relpath)
    elif suffix == ".parquet":
        yield from _read_parquet(path, relpath)
        return
    else:
        raise UnsupportedInputError(f"{relpath}: unsupported input format {suffix!r}")
    batch: list[RawRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= CHUNK_ROWS:
            yield chunk_of_records(relpath, batch)
            batch = []
    if batch:
        yield chunk_of_records(relpath, batch)


def chunk_of_records(source: str, records: list[RawRecord]) -> RawChunk:
    """A chunk of row-wise records (JSONL, CSV), flattened into one table where they fit one."""
    readable = [r for r in records if r.record is not None]
    unreadable = [(r.line, r.error or "") for r in records if r.record is None]
    raw = [r.record for r in readable if r.record is not None]
    flat = [flatten(r) for r in raw]
    # Every key of every record becomes a column (from_pylist would keep only the first record's).
    keys = list(dict.fromkeys(k for r in flat for k in r))
    try:
        table: pa.Table | None = pa.Table.from_pydict(
            {k: [r.get(k) for r in flat] for k in keys or [UNFLATTENABLE]}
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        table = None  # mixed types in a column: every record takes the per-record path
    return RawChunk(source, [r.line for r in readable], table, raw, unreadable)


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Nested objects one level deep become dotted keys, the form columnar files have.

    A record whose shape has no flat equivalent (deeper nesting, a key given both nested and
    dotted) is marked with :data:`UNFLATTENABLE` and left to per-record validation.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                name = f"{key}.{sub}"
                if isinstance(v, dict | list) or name in out:
                    return {UNFLATTENABLE: True}
                out[name] = v
        elif isinstance(value, list) or key in out:
            return {UNFLATTENABLE: True}
        else:
            out[key] = value
    return out


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


def _read_parquet(path: Path, source: str) -> Iterator[RawChunk]:
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
        table = pa.Table.from_batches([batch])
        lines = list(range(n + 1, n + len(table) + 1))
        n += len(table)
        if any(pa.types.is_struct(f.type) for f in table.schema):
            # Nested columns: dead letters keep the records as read, validation sees them flat.
            yield RawChunk(source, lines, table.flatten(), table.to_pylist())
        else:
            yield RawChunk(source, lines, table)


class ReadEvents(beam.PTransform):
    """Reads the given files under ``root``; one :class:`RawChunk` element per chunk of records.

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
            | "ReadFile" >> beam.FlatMap(lambda rel: read_chunks(root, rel))
        )
