"""Reading event files (JSONL, CSV, Parquet) into :class:`RawChunk` elements."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from graphrisk.errors import UnsupportedInputError
from pipelines import uris
from pipelines.records import RawChunk, RawRecord, StageError, truncate

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")
CHUNK_ROWS = 20_000
# A column no event has: a record that cannot be flattened carries it, which sends the record
# to the per-record validation (unknown fields are never taken by the fast path).
UNFLATTENABLE = "__unflattenable__"
# Events nest two levels (an event, its document); deeper records are rejected as they are read,
# before anything recursive (flattening, encoding, the dead-letter writer) meets them.
MAX_DEPTH = 32


def read_records(root: str | Path, relpath: str) -> Iterator[RawRecord]:
    """Every record of one file, numbered; unreadable lines become records with an error.

    A file unreadable from some line on ends with one record with an error (field ``file``).

    Raises:
        UnsupportedInputError: the file's suffix is none of :data:`SUPPORTED_SUFFIXES`.
    """
    for chunk in read_chunks(root, relpath):
        unreadable = {r.line: r for r in chunk.unreadable}
        rows = iter(range(len(chunk)))
        for line in sorted([*chunk.lines, *unreadable]):
            if line in unreadable:
                yield unreadable[line]
            else:
                yield RawRecord(chunk.source, line, chunk.record(next(rows)))
        if chunk.broken is not None:
            line, reason = chunk.broken
            yield RawRecord(chunk.source, line, None, reason, field="file")


def read_chunks(root: str | Path, relpath: str) -> Iterator[RawChunk]:
    """One file as chunks of at most :data:`CHUNK_ROWS` records.

    A file that cannot be read on (a truncated Parquet file, a CSV field over the csv module's
    limit, an I/O error) ends with a chunk whose ``broken`` names the line and the reason: what
    was read before that line is kept, the rest becomes one dead letter.

    Raises:
        UnsupportedInputError: the file's suffix is none of :data:`SUPPORTED_SUFFIXES`.
    """
    path = uris.join(root, relpath)  # a local path or a URI: workers read through FileSystems
    suffix = uris.suffix(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        records: Iterator[RawRecord | _Broken] = _read_jsonl(path, relpath)
    elif suffix == ".csv":
        records = _read_csv(path, relpath)
    elif suffix == ".parquet":
        yield from _read_parquet(path, relpath)
        return
    else:
        raise UnsupportedInputError(f"{relpath}: unsupported input format {suffix!r}")
    batch: list[RawRecord] = []
    next_line = 1
    try:
        for record in records:
            if isinstance(record, _Broken):
                yield chunk_of_records(relpath, batch, broken=_broken(relpath, record.line, record.reason))
                return
            batch.append(record)
            next_line = record.line + 1
            if len(batch) >= CHUNK_ROWS:
                yield chunk_of_records(relpath, batch)
                batch = []
    except UNREADABLE as exc:  # raised opening or reading the file, outside any one record
        yield chunk_of_records(relpath, batch, broken=_broken(relpath, next_line, _describe(exc)))
        return
    if batch:
        yield chunk_of_records(relpath, batch)


# What reading a file can raise besides a bad record: I/O errors (a file gone or unreadable),
# the csv module's errors, Arrow's (a truncated or corrupt Parquet file), decoding errors.
UNREADABLE = (OSError, ValueError, EOFError, csv.Error, pa.ArrowException)


@dataclass(frozen=True)
class _Broken:
    """The file cannot be read on from ``line``."""

    line: int
    reason: str


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _broken(source: str, line: int, reason: str) -> tuple[int, str]:
    if line <= 1:
        return 1, f"{source} cannot be read ({reason}); the whole file counts as one record read and rejected"
    return line, (
        f"{source} cannot be read from line {line} on ({reason}); lines before it were read, the rest"
        " counts as one record read and rejected"
    )


def chunk_of_records(
    source: str, records: list[RawRecord], broken: tuple[int, str] | None = None
) -> RawChunk:
    """A chunk of row-wise records (JSONL, CSV), flattened into one table where they fit one."""
    readable = [r for r in records if r.record is not None]
    unreadable = [r for r in records if r.record is None]
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
    return RawChunk(source, [r.line for r in readable], table, raw, unreadable, broken)


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


def _raw_text(raw: bytes | str) -> str:
    """A line as text for a dead letter: undecodable bytes escaped, bounded."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")
    if isinstance(raw, str):  # CSV text read with surrogateescape: show the bytes it stands for
        text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return truncate(text.rstrip("\r\n"))


def _depth(obj: Any) -> int:
    """How deeply ``obj`` nests lists and objects (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _read_jsonl(path: str, source: str) -> Iterator[RawRecord | _Broken]:
    with uris.open_read(path) as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            error = None
            try:
                obj = json.loads(raw)
            except RecursionError:
                error = "invalid JSON: nested deeper than the JSON parser's recursion limit"
            except ValueError as exc:  # a decode error, invalid UTF-8, an integer over 4,300 digits
                error = f"invalid JSON: {exc}"
            else:
                if not isinstance(obj, dict):
                    error = f"expected a JSON object, got {type(obj).__name__}"
                elif raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth(obj) > MAX_DEPTH:
                    error = f"invalid record: nested deeper than {MAX_DEPTH} levels"
            if error is None:
                yield RawRecord(source, n, obj)
            else:
                yield RawRecord(source, n, None, error, raw=_raw_text(raw))


_SURROGATE = re.compile("[\udc80-\udcff]")


def _read_csv(path: str, source: str) -> Iterator[RawRecord | _Broken]:
    """Rows as dicts of text, like ``csv.DictReader``, with the raw text of each row at hand.

    Every value stays a string: a document "00123" must not become the integer 123. Bytes that
    are not UTF-8 are kept as surrogates, so one bad row is a dead letter naming its field, not a
    decode error that ends the file.
    """
    with uris.open_text(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        consumed: list[str] = []

        def lines() -> Iterator[str]:
            for text in fh:
                consumed.append(text)
                yield text

        reader = csv.reader(lines())
        try:
            header = next(reader, None)
            if header is None:
                return
            if _SURROGATE.search("".join(header)):
                yield _Broken(1, "invalid UTF-8 in the header line")
                return
            for row in reader:
                raw, line = "".join(consumed), reader.line_num
                consumed.clear()
                if not row:
                    continue  # a blank line, as DictReader skips it
                if len(row) > len(header):
                    yield RawRecord(source, line, None, "more values than header columns", raw=_raw_text(raw))
                    continue
                bad = next((c for c, v in zip(header, row, strict=False) if _SURROGATE.search(v)), None)
                if bad is not None:
                    yield RawRecord(source, line, None, f"invalid UTF-8 in field {bad!r}", field=bad,
                                    raw=_raw_text(raw))  # fmt: skip
                    continue
                record: dict[str, Any] = dict.fromkeys(header)  # missing trailing values are None
                record.update(zip(header, row, strict=False))
                yield RawRecord(source, line, record)
        except csv.Error as exc:  # a field over the csv module's limit: the reader cannot resync
            yield _Broken(reader.line_num, f"csv: {exc}")


def _read_parquet(path: str, source: str) -> Iterator[RawChunk]:
    n = 0
    try:
        with uris.open_read(path) as fh:
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=CHUNK_ROWS):
                table = pa.Table.from_batches([batch])
                lines = list(range(n + 1, n + len(table) + 1))
                n += len(table)
                if any(pa.types.is_struct(f.type) for f in table.schema):
                    # Nested columns: dead letters keep the records as read, validation sees them flat.
                    yield RawChunk(source, lines, table.flatten(), table.to_pylist())
                else:
                    yield RawChunk(source, lines, table)
    except UNREADABLE as exc:  # not Parquet, truncated, a corrupt page
        yield RawChunk(source, [], None, broken=_broken(source, n + 1, f"Parquet: {_describe(exc)}"))


def _read_file(root: str, relpath: str) -> Iterator[RawChunk]:
    """:func:`read_chunks`; an unexpected error (a bug: bad input is dead-lettered) names the file."""
    try:
        yield from read_chunks(root, relpath)
    except UnsupportedInputError:
        raise
    except Exception as exc:
        raise StageError(f"{relpath}: reading failed: {type(exc).__name__}: {exc}") from exc


class ReadEvents(beam.PTransform):
    """Reads the given files under ``root``; one :class:`RawChunk` element per chunk of records.

    Files are the unit of parallelism (hourly partitions are many small files), so the file
    list is reshuffled before reading to spread it over workers.
    """

    def __init__(self, root: str | Path, relpaths: list[str]) -> None:
        super().__init__()
        self.root = uris.as_uri(root)
        self.relpaths = relpaths

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        root = self.root
        return (
            pbegin
            | "ListFiles" >> beam.Create(sorted(self.relpaths))
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFile" >> beam.FlatMap(lambda rel: _read_file(root, rel))
        )
