"""Raw event files on disk: flat v1 columns in hourly partitions.

Layout::

    out_dir/events/dt=YYYY-MM-DD/hr=HH/part-00000.<parquet|jsonl|csv>

One file per hour holding that hour's events sorted by time. Columns are the flat (dotted)
names of ``graphrisk.events``; a column that does not apply to an event type is null (empty in
CSV), which ``parse_event`` reads as absent. Both the synthetic generator and the public data
converters write through ``write_partitioned`` so that the pipeline sees one layout.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from graphrisk.arrow import arrow_to_pandas

Fmt = Literal["parquet", "jsonl", "csv"]
FORMATS: tuple[Fmt, ...] = ("parquet", "jsonl", "csv")
HOUR_MS = 3_600_000

_STRING = pa.string()
EVENT_SCHEMA = pa.schema(
    [
        ("event_id", _STRING),
        ("event_type", _STRING),
        ("schema_version", pa.int64()),
        ("user_id", _STRING),
        ("time", pa.int64()),
        ("document.type", _STRING),
        ("document.number", _STRING),
        ("document.issuing_country", _STRING),
        ("device.id", _STRING),
        ("device.fingerprint", _STRING),
        ("email", _STRING),
        ("phone", _STRING),
        ("ip", _STRING),
        ("address.line1", _STRING),
        ("address.city", _STRING),
        ("address.postcode", _STRING),
        ("address.country", _STRING),
        ("amount", pa.float64()),
        ("currency", _STRING),
        ("merchant_id", _STRING),
        ("counterparty_id", _STRING),
        ("card_number", _STRING),
        ("merchant_category", _STRING),
    ]
)
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)


def conform(events: pa.Table | pd.DataFrame) -> pa.Table:
    """The events as a table with exactly ``EVENT_COLUMNS`` in order; missing columns are null.

    Raises:
        ValueError: if ``events`` has columns outside the v1 schema.
    """
    table = events if isinstance(events, pa.Table) else pa.Table.from_pandas(events, preserve_index=False)
    extra = set(table.column_names) - set(EVENT_COLUMNS)
    if extra:
        raise ValueError(f"columns outside the v1 event schema: {sorted(extra)}")
    arrays = []
    for f in EVENT_SCHEMA:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def partition_path(out_dir: Path, hour_start_ms: int, fmt: Fmt) -> Path:
    """The file holding the events of the hour that starts at ``hour_start_ms``."""
    hour = datetime.fromtimestamp(hour_start_ms / 1000, tz=UTC)
    return Path(out_dir) / "events" / f"dt={hour:%Y-%m-%d}" / f"hr={hour:%H}" / f"part-00000.{fmt}"


def write_partitioned(
    events: pa.Table | pd.DataFrame,
    out_dir: Path,
    fmt: Fmt = "parquet",
    *,
    partition_time: np.ndarray | None = None,
) -> list[Path]:
    """Write events into hourly partition files, each sorted by time; returns the files written.

    ``partition_time`` (epoch ms per row) is when each event arrived, for rows whose own
    ``time`` field is deliberately broken (it defaults to ``time``). Each call replaces the files
    of the hours it covers, so callers pass whole hours.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    table = conform(events)
    if partition_time is None:
        partition_time = table.column("time").to_numpy(zero_copy_only=False)
    partition_time = np.asarray(partition_time, dtype=np.int64)
    if len(partition_time) != table.num_rows:
        raise ValueError("partition_time must have one value per row")
    order = np.argsort(partition_time, kind="stable")
    hours = partition_time[order] // HOUR_MS
    bounds = np.flatnonzero(np.diff(hours)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(order)]])
    written: list[Path] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if a == b:
            continue
        path = partition_path(out_dir, int(hours[a]) * HOUR_MS, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(table.take(pa.array(order[a:b])), path, fmt)
        written.append(path)
    return written


def _write_file(table: pa.Table, path: Path, fmt: Fmt) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    if fmt == "parquet":
        pq.write_table(table, tmp, compression="zstd")
    elif fmt == "csv":
        pacsv.write_csv(table, tmp)
    else:
        with tmp.open("w", encoding="utf-8") as fh:
            for record in table.to_pylist():
                # Absent fields are left out, as a JSON producer would.
                fh.write(json.dumps({k: v for k, v in record.items() if v is not None}, ensure_ascii=False))
                fh.write("\n")
    # Rename last, so a reader never sees half a partition.
    tmp.replace(path)


def partition_files(out_dir: Path) -> list[Path]:
    """All event partition files under ``out_dir``, in time order."""
    return sorted(
        p for p in (Path(out_dir) / "events").glob("dt=*/hr=*/part-*") if not p.name.endswith(".tmp")
    )


def read_event_file(path: Path) -> pa.Table:
    """One partition file of any format, with the v1 column types (CSV digits stay strings)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return conform(pq.read_table(path))
    if path.suffix == ".csv":
        types = {f.name: f.type for f in EVENT_SCHEMA}
        opts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
        return conform(pacsv.read_csv(path, convert_options=opts))
    if path.suffix == ".jsonl":
        opts = pajson.ParseOptions(explicit_schema=EVENT_SCHEMA, unexpected_field_behavior="error")
        return conform(pajson.read_json(path, parse_options=opts))
    raise ValueError(f"not an event file: {path}")


def read_partitioned(out_dir: Path) -> pd.DataFrame:
    """Every event under ``out_dir`` as one DataFrame (for tests and small data sets)."""
    files = partition_files(out_dir)
    if not files:
        return arrow_to_pandas(conform(pa.table({})))
    return arrow_to_pandas(pa.concat_tables([read_event_file(p) for p in files]))
