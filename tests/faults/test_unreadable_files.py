"""Issue 12, item 3: a malformed file is a dead letter, never a refresh stuck on its batch.

Each kind of file that used to abort the run (and, its batch left ``running``, every later
refresh): the refresh finishes, the bad file or record is a dead letter naming the file and the
reason, the valid records of the same batch are taken, counts reconcile, and the next batch runs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from graphrisk.config import Settings
from graphrisk.store import GraphStore
from pipelines.refresh import refresh
from tests.factories import START_MS, make_events

DAY = "dt=2026-01-05"
_LOGIN_COLUMNS = ["event_id", "event_type", "user_id", "time", "device.id", "ip", "merchant_category"]


def _login(n: int) -> dict[str, Any]:
    return {"event_id": f"bad-file-{n}", "event_type": "login", "user_id": f"user{n}", "time": START_MS + n,
            "device.id": f"dev{n}", "ip": "192.0.2.7", "merchant_category": ""}  # fmt: skip


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=_LOGIN_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def csv_field_over_limit(path: Path) -> int:
    """A valid row, then a field over csv's 131,072-byte limit: 1 valid record."""
    _csv(path, [_login(1), _login(2) | {"ip": "x" * 140_000}])
    return 1


def csv_invalid_utf8(path: Path) -> int:
    _csv(path, [_login(1), _login(2) | {"device.id": "DEVMARK"}, _login(3)])
    path.write_bytes(path.read_bytes().replace(b"DEVMARK", b"dev\xff\xfe"))
    return 2


def _jsonl(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def _nested(n: int) -> str:
    r = _login(n)
    return json.dumps({k: v for k, v in r.items() if "." not in k and v} | {"device": {"id": r["device.id"]}})


def json_huge_integer(path: Path) -> int:
    _jsonl(
        path,
        [_nested(1), _nested(2).replace(f'"time": {START_MS + 2}', '"time": 1' + "0" * 5000), _nested(3)],
    )
    return 2


def json_nested_deep(path: Path) -> int:
    _jsonl(path, [_nested(1), "[" * 100_000 + "]" * 100_000, _nested(3)])
    return 2


def parquet_truncated(path: Path) -> int:
    pq.write_table(pa.Table.from_pylist([_login(n) for n in range(1, 40)]), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return 0


KINDS: dict[str, tuple[Callable[[Path], int], str, str]] = {
    # kind: (writer, file suffix, what the reason must say)
    "csv-field-over-limit": (csv_field_over_limit, "csv", "field larger than field limit"),
    "csv-invalid-utf8": (csv_invalid_utf8, "csv", "invalid UTF-8"),
    "json-integer-over-4300-digits": (json_huge_integer, "jsonl", "4300 digits"),
    "json-nested-100000-deep": (json_nested_deep, "jsonl", "nested deeper"),
    "parquet-truncated": (parquet_truncated, "parquet", "Parquet"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_unreadable_file_is_a_dead_letter_and_blocks_nothing(
    kind: str, store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    write_bad, suffix, says = KINDS[kind]
    events = make_events(users=10, hours=3)
    root = tmp_path / "in"
    events.write(root, hours=[0])
    bad_rel = f"{DAY}/hr=00/part-00001.{suffix}"
    good_in_bad = write_bad(root / bad_rel)

    first = refresh(settings, store, root)
    [batch] = first.batches
    c = batch.counts
    assert c["read"] == c["accepted"] + c["rejected"] + c["duplicates"]
    assert c["accepted"] == len(events.hours[0]) + good_in_bad
    assert c["rejected"] >= 1
    letters = [
        json.loads(line)
        for line in (settings.dead_letter_dir / f"batch-{batch.seq:06d}.jsonl").read_text().splitlines()
    ]
    assert letters and all(d["source"] == bad_rel for d in letters)
    assert any(says in d["reason"] for d in letters), letters
    assert all(d["stage"] == "read" and d["field"] and d["line"] >= 1 for d in letters)
    assert store.read("ledger/unfinished_batch") == []

    # Later partitions are processed by the next refresh.
    events.write(root, hours=[1, 2])
    second = refresh(settings, store, root)
    assert [b.partitions for b in second.batches] == [2]
    assert second.totals()["accepted"] == len(events.hours[1]) + len(events.hours[2])
    assert store.read("ledger/unfinished_batch") == []
