"""Elements passed between pipeline stages, and the dead-letter record.

Stages exchange *chunks* of records as Arrow tables rather than one element per record: the
per-element cost of a Beam step (and of encoding at a shuffle) is paid once per few thousand
records, and the work inside a stage runs column by column.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from graphrisk.errors import GraphRiskError


@dataclass(frozen=True)
class RawRecord:
    """One input record and where it came from (``line`` is 1-based; a row number for Parquet).

    A line that could not be read as a record has ``record=None`` and an ``error``.
    """

    source: str
    line: int
    record: dict[str, Any] | None
    error: str | None = None
    # For an unreadable record: the field at fault where there is one, and the raw line as text.
    field: str = "record"
    raw: str | None = None


@dataclass(frozen=True)
class RawChunk:
    """Consecutive records of one file: flat columns for the fast path, raw records for the rest.

    ``table`` holds one row per readable record, with nested objects flattened to dotted
    columns (``document.number``), or is ``None`` when the records do not fit one Arrow table
    (mixed types in a column): validation then takes the per-record path for all of them.
    ``records`` are the records as read (what dead letters carry); for columnar files they are
    ``None`` and derived from ``table`` on demand, since only rejected rows ever need them.
    Unreadable lines are in ``unreadable``, as records with an error and no record.

    ``len`` counts the readable records only; :attr:`read_count` is what the chunk adds to ``read``.
    """

    source: str
    lines: list[int]
    table: pa.Table | None
    records: list[dict[str, Any]] | None = None
    unreadable: list[RawRecord] = field(default_factory=list)
    # The file could not be read from this line (row) on: (line, reason). One dead letter stands
    # for the rest of the file, which counts as one record read and rejected.
    broken: tuple[int, str] | None = None

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def read_count(self) -> int:
        """Records this chunk accounts for: readable, unreadable, and one for a broken file's rest."""
        return len(self.lines) + len(self.unreadable) + (self.broken is not None)

    def record(self, row: int) -> dict[str, Any]:
        """The raw record of one row, as read."""
        if self.records is not None:
            return self.records[row]
        assert self.table is not None
        return self.table.slice(row, 1).to_pylist()[0]

    @staticmethod
    def of(records: list[RawRecord]) -> list[RawChunk]:
        """Chunks (one per source) holding ``records``; for tests and small inputs."""
        from pipelines.read import chunk_of_records  # read builds on this module: import late

        by_source: dict[str, list[RawRecord]] = {}
        for r in records:
            by_source.setdefault(r.source, []).append(r)
        return [chunk_of_records(src, rs) for src, rs in by_source.items()]


# Dead letters keep raw text up to this many characters per value: enough to find and fix a record,
# while a 1 MB field or line does not make a 1 MB dead letter.
MAX_RAW_CHARS = 4096


def truncate(text: str, limit: int = MAX_RAW_CHARS) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and a note of its length,
    ``limit`` characters in all (so truncating again changes nothing)."""
    if len(text) <= limit:
        return text
    note = f"...[truncated: {len(text):,} characters]"
    return text[: limit - len(note)] + note


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return truncate(value)
    if depth > 16:
        return truncate(repr(value))
    if isinstance(value, dict):
        return {str(k): _bounded(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v, depth + 1) for v in value]
    return value


@dataclass(frozen=True)
class DeadLetter:
    """A rejected record with the reason, enough to find, fix and replay it.

    Dead letters keep the raw record (that is what makes a replay possible), or, for a line that
    could not be read as a record, the raw line (``raw``), so the dead-letter directory holds
    personal data: keep it under the same access control as the input files. Text values are
    kept up to :data:`MAX_RAW_CHARS` characters each.
    """

    source: str
    line: int
    stage: str
    field: str
    reason: str
    record: dict[str, Any] | None
    raw: str | None = None

    def to_json(self) -> str:
        """One JSONL line, every text value bounded."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return json.dumps(_bounded(fields), default=str, sort_keys=True)


def to_ipc(table: pa.Table) -> bytes:
    """A table as Arrow IPC bytes, the form tables take to cross a shuffle.

    Beam pickles objects it has no coder for; pickling a table made of many small chunks cost
    ~50 ms per 1,000 events, the IPC stream of its combined chunks a small fraction of that.
    """
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    """The table :func:`to_ipc` encoded."""
    return pa.ipc.open_stream(data).read_all()


# Stage names used in dead letters and run reports.
STAGE_READ = "read"
STAGE_PARSE = "parse"
STAGE_PSEUDONYMISE = "pseudonymise"
STAGE_DEDUPE = "dedupe"

# The tagged output on which stages count what they saw, as ``(name, n)`` pairs. The counts
# travel as data, not Beam metrics: Spark's portable job server reports no metrics, and a batch
# whose counts read 0 would reconcile and pass unnoticed.
TALLY = "tally"


class StageError(GraphRiskError):
    """A stage failed on input it should have dead-lettered (a bug): names the file and lines."""


def where(chunk: RawChunk) -> str:
    """``source, lines a-b`` of a chunk, for error messages."""
    lines = [*chunk.lines, *(r.line for r in chunk.unreadable)]
    return f"{chunk.source}, lines {min(lines)}-{max(lines)}" if lines else chunk.source
