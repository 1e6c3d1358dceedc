"""Event ids counted by earlier batches: what makes an event replayed in a later file count once.

Within a batch, :func:`pipelines.dedupe.dedupe_table` keeps the first copy of each event. Across
batches, each batch records the ids it accepted, with a hash of their clean content, as Parquet::

    <data_dir>/seen_ids/day=YYYY-MM-DD/batch=NNNNNN-bucket=KK-of-BB.parquet

bucketed by the event's UTC day and by the dedupe bucket of its id (the shuffle key of
:class:`pipelines.dedupe.DedupeEvents`), so each dedupe worker reads only its bucket of only the
days its events fall on. A later batch's event whose id is recorded for its day is a replay
(counted as a duplicate) when the content hash matches, and a conflict (dead-lettered, as within
a batch) when it does not.

Only files of batches with a *lower* sequence number count: a batch re-run after a crash first
forgets its own files and writes them again, so it never takes its own events for replays.

The record is kept for a replay horizon (``GRAPHRISK_REPLAY_HORIZON_DAYS``) counted back from the
newest day recorded by an earlier batch, not from the wall clock, so a first load of old history
is taken whole and a re-run decides exactly as its first run did. Days before the horizon are
deleted, and an event dated before it is dead-lettered (stage ``dedupe``, field ``time``): its
id can no longer be checked, and accepting it could count it twice.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from graphrisk.arrow import arrow_to_pandas
from pipelines.records import STAGE_DEDUPE, DeadLetter

DAY_MS = 86_400_000
_ORIGIN = ("source", "line")
_EPOCH = date(1970, 1, 1)
_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
_FILE = re.compile(r"^batch=(\d+)-bucket=(\d+)-of-(\d+)\.parquet$")
SEEN_SCHEMA = pa.schema([("event_id", pa.string()), ("content", pa.uint64())])


@dataclass(frozen=True)
class ReplayGuard:
    """What one batch checks its events against: the record under ``root``, older batches only.

    ``oldest_day`` (days since 1970-01-01, UTC) is the first day within the replay horizon;
    ``None`` while nothing is recorded.
    """

    root: Path
    batch_seq: int
    horizon_days: int
    oldest_day: int | None

    def reason(self, time_ms: int) -> str:
        """The dead-letter reason for an event dated before the horizon."""
        assert self.oldest_day is not None
        return (
            f"time {_iso_day(time_ms // DAY_MS)} is older than the replay horizon: events before"
            f" {_iso_day(self.oldest_day)} ({self.horizon_days} days before the newest day already"
            " ingested) can no longer be checked for replays; raise GRAPHRISK_REPLAY_HORIZON_DAYS"
            " before ingesting history this old"
        )


def _iso_day(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()


def _day_of(name: str) -> int | None:
    m = _DAY_DIR.match(name)
    return (date.fromisoformat(m.group(1)) - _EPOCH).days if m else None


def _files(root: Path) -> list[tuple[int, int, int, int, Path]]:
    """``(day, batch, bucket, buckets, path)`` of every recorded file."""
    out = []
    if not root.is_dir():
        return out
    for day_dir in root.iterdir():
        day = _day_of(day_dir.name)
        if day is None or not day_dir.is_dir():
            continue
        for f in day_dir.iterdir():
            m = _FILE.match(f.name)
            if m:
                out.append((day, int(m.group(1)), int(m.group(2)), int(m.group(3)), f))
    return out


def forget_batch(root: Path, batch_seq: int) -> int:
    """Delete the ids recorded by one batch; the number of files deleted.

    A batch calls this before it runs (a re-run writes its files again); an operator abandoning
    a batch must call it too, or the abandoned batch's ids would count as seen.
    """
    gone = 0
    for _, seq, _, _, path in _files(root):
        if seq == batch_seq:
            path.unlink(missing_ok=True)
            gone += 1
    # Temporary files a crash left mid-write (never read: their names match no record).
    for tmp in root.glob(f"day=*/.batch={batch_seq:06d}-*.tmp") if root.is_dir() else []:
        tmp.unlink(missing_ok=True)
    return gone


def prepare_guard(root: Path, batch_seq: int, horizon_days: int) -> ReplayGuard:
    """The guard of batch ``batch_seq``: its own stale files forgotten, days past the horizon pruned."""
    forget_batch(root, batch_seq)
    days = {day for day, seq, *_ in _files(root) if seq < batch_seq}
    if not days:
        return ReplayGuard(root, batch_seq, horizon_days, None)
    oldest = max(days) - horizon_days
    for day_dir in root.iterdir():
        day = _day_of(day_dir.name)
        if day is not None and day < oldest:
            shutil.rmtree(day_dir, ignore_errors=True)
    return ReplayGuard(root, batch_seq, horizon_days, oldest)


def content_hash(clean: pa.Table) -> np.ndarray:
    """A 64-bit hash per row of a clean event table, over every column but its origin.

    pandas' row hash: vectorised, and the same in every process (a fixed key).
    """
    content = clean.drop_columns([c for c in _ORIGIN if c in clean.column_names])
    return pd.util.hash_pandas_object(arrow_to_pandas(content), index=False).to_numpy(dtype=np.uint64)


def _seen(guard: ReplayGuard, day: int, bucket: int, buckets: int) -> tuple[pa.Table, np.ndarray]:
    """Ids and content hashes recorded for ``day`` and ``bucket`` by earlier batches, and their batch."""
    from pipelines.dedupe import bucket_of  # dedupe builds on this module: import late

    parts, batches = [], []
    day_dir = guard.root / f"day={_iso_day(day)}"
    for f in sorted(day_dir.glob("batch=*.parquet")) if day_dir.is_dir() else []:
        m = _FILE.match(f.name)
        if not m or int(m.group(1)) >= guard.batch_seq:
            continue
        seq, k, of = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if of == buckets and k != bucket:
            continue
        table = pq.read_table(f, schema=SEEN_SCHEMA)
        if of != buckets:  # recorded with another bucket count: keep this bucket's ids
            table = table.filter(pa.array(bucket_of(table.column("event_id").to_pylist(), buckets) == bucket))
        parts.append(table)
        batches.append(np.full(len(table), seq, dtype=np.int64))
    if not parts:
        return SEEN_SCHEMA.empty_table(), np.zeros(0, dtype=np.int64)
    return pa.concat_tables(parts), np.concatenate(batches)


def drop_replays(
    unique: pa.Table, guard: ReplayGuard, bucket: int, buckets: int
) -> tuple[pa.Table, int, list[DeadLetter]]:
    """``unique`` (one dedupe bucket, no id twice) without what earlier batches counted.

    Returns the new events, the number of replays (duplicates), and dead letters for events
    older than the horizon and for ids recorded with other content.
    """
    if not len(unique):
        return unique, 0, []
    dead: list[DeadLetter] = []
    days = unique.column("time").to_numpy() // DAY_MS
    if guard.oldest_day is not None:
        old = days < guard.oldest_day
        if old.any():
            for row in np.flatnonzero(old).tolist():
                r = _row(unique, row)
                dead.append(DeadLetter(r["source"], r["line"], STAGE_DEDUPE, "time", guard.reason(r["time"]),
                                       _without_origin(r)))  # fmt: skip
            unique, days = unique.filter(pa.array(~old)), days[~old]
    keep = np.ones(len(unique), dtype=bool)
    replays = 0
    hashes: np.ndarray | None = None
    for day in np.unique(days).tolist():
        seen, seen_batch = _seen(guard, day, bucket, buckets)
        if not len(seen):
            continue
        on_day = np.flatnonzero(days == day)
        ids = unique.column("event_id").take(pa.array(on_day))
        index = pc.index_in(ids, value_set=seen.column("event_id"))
        hit = index.is_valid().to_numpy(zero_copy_only=False)
        if not hit.any():
            continue
        if hashes is None:
            hashes = content_hash(unique)
        seen_hash = seen.column("content").to_numpy()
        at = pc.fill_null(index, -1).to_numpy()
        for i, pos in zip(on_day[hit].tolist(), at[hit].tolist(), strict=True):
            keep[i] = False
            if hashes[i] == seen_hash[pos]:
                replays += 1
                continue
            r = _row(unique, i)
            dead.append(DeadLetter(
                r["source"], r["line"], STAGE_DEDUPE, "event_id",
                f"same event_id as an event accepted by batch {int(seen_batch[pos])} with different content",
                _without_origin(r),
            ))  # fmt: skip
    return (unique if keep.all() else unique.filter(pa.array(keep))), replays, dead


def record_ids(guard: ReplayGuard, bucket: int, buckets: int, fresh: pa.Table) -> list[Path]:
    """Write the ids of ``fresh`` (this batch's new events in one bucket), one file per day.

    Each file is written whole under a temporary name and renamed, so a crash leaves either
    nothing or the complete file, and a retried bundle or a re-run rewrites the same file.
    """
    if not len(fresh):
        return []
    days = fresh.column("time").to_numpy() // DAY_MS
    table = pa.table({"event_id": fresh.column("event_id"), "content": pa.array(content_hash(fresh))},
                     schema=SEEN_SCHEMA)  # fmt: skip
    written = []
    for day in np.unique(days).tolist():
        rows = table.filter(pa.array(days == day)).sort_by("event_id")
        name = f"batch={guard.batch_seq:06d}-bucket={bucket:02d}-of-{buckets:02d}.parquet"
        path = guard.root / f"day={_iso_day(day)}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(rows, tmp)
        tmp.replace(path)
        written.append(path)
    return written


def _row(table: pa.Table, row: int) -> dict[str, Any]:
    return table.slice(row, 1).to_pylist()[0]


def _without_origin(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _ORIGIN and v is not None}
