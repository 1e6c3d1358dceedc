"""Issue 12, item 2: an event replayed in a later hourly file counts once.

An already processed partition copied under a new path is read again by the next refresh: its
events must be counted as duplicates (``read = accepted + rejected + duplicates``), and the
store and the snapshot must not change. A replayed id with other content is a conflict, dead-
lettered as it is within a batch. A batch that crashes after writing its record of seen ids and
is resumed must not take its own ids for replays.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from graphrisk.config import Settings
from graphrisk.graph_schema import NodeLabel, RelType
from graphrisk.store import GraphStore
from pipelines.refresh import abandon_batch, refresh
from pipelines.snapshot import load_snapshot
from tests.factories import make_events
from tests.faults.refresh_helpers import crash_before_done
from tests.test_refresh import graph_state

DAY = "dt=2026-01-05"


def _snapshot(settings: Settings) -> tuple[dict[Any, pd.DataFrame], dict[Any, pd.DataFrame]]:
    return load_snapshot(settings.snapshot_dir)


def _assert_same_snapshot(
    a: tuple[dict[Any, Any], dict[Any, Any]], b: tuple[dict[Any, Any], dict[Any, Any]]
) -> None:
    for label in NodeLabel:
        pd.testing.assert_frame_equal(a[0][label], b[0][label], obj=label)
    for rel in RelType:
        pd.testing.assert_frame_equal(a[1][rel], b[1][rel], obj=rel)


def _letters(settings: Settings, seq: int) -> list[dict[str, Any]]:
    path = settings.dead_letter_dir / f"batch-{seq:06d}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_partition_copied_under_a_new_path_is_counted_as_duplicates(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(users=30, hours=2)
    events.write(tmp_path / "in")
    refresh(settings, store, tmp_path / "in")
    state, snapshot = graph_state(store), _snapshot(settings)

    original = tmp_path / "in" / DAY / "hr=01" / "part-00000.jsonl"
    lines = original.read_text().splitlines()
    # The same hour again under a new name; one event altered: a conflict, not a replay.
    altered = json.loads(lines[2])
    assert altered["event_type"] == "payment"
    altered["amount"] = altered["amount"] + 1
    copy = tmp_path / "in" / DAY / "hr=01" / "part-00001.jsonl"
    copy.write_text("\n".join([*lines[:2], json.dumps(altered), *lines[3:]]) + "\n")

    report = refresh(settings, store, tmp_path / "in")
    [batch] = report.batches
    t = report.totals()
    assert (t["read"], t["accepted"], t["rejected"], t["duplicates"]) == (len(lines), 0, 1, len(lines) - 1)
    assert t["read"] == t["accepted"] + t["rejected"] + t["duplicates"]
    assert graph_state(store) == state
    _assert_same_snapshot(_snapshot(settings), snapshot)
    [letter] = _letters(settings, batch.seq)
    assert (letter["source"], letter["line"], letter["stage"], letter["field"]) == (
        f"{DAY}/hr=01/part-00001.jsonl", 3, "dedupe", "event_id",
    )  # fmt: skip
    assert "batch 1" in letter["reason"] and "different content" in letter["reason"]


def test_a_resumed_replaying_batch_does_not_take_its_own_ids_for_replays(
    store: GraphStore, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's pipeline completes (store, snapshot delta and seen ids written) but the process
    dies before the batch is marked done; the resumed run must count exactly what a clean run does."""
    events = make_events(users=30, hours=3)
    events.write(tmp_path / "in", hours=[0])
    refresh(settings, store, tmp_path / "in")
    # Batch 2: one replayed hour (under a new path) and one new hour.
    shutil.copy(
        tmp_path / "in" / DAY / "hr=00" / "part-00000.jsonl", tmp_path / "in" / DAY / "hr=00" / "replay.jsonl"
    )
    events.write(tmp_path / "in", hours=[1])
    new_events = len(events.hours[1])

    crash_before_done(settings, store, tmp_path / "in", monkeypatch)
    assert store.read("ledger/unfinished_batch")

    resumed = refresh(settings, store, tmp_path / "in")
    [batch] = resumed.batches
    assert batch.resumed
    c = batch.counts
    assert (c["accepted"], c["duplicates"], c["rejected"]) == (new_events, len(events.hours[0]), 0)

    # The same as one clean run over hours 0 and 1.
    resumed_state, resumed_snapshot = graph_state(store), _snapshot(settings)
    store.delete_all()
    clean = settings.model_copy(update={"data_dir": tmp_path / "clean"})
    events.write(tmp_path / "clean_in", hours=[0, 1])
    refresh(clean, store, tmp_path / "clean_in")
    assert resumed_state == graph_state(store)
    _assert_same_snapshot(resumed_snapshot, _snapshot(clean))


def test_an_abandoned_batch_leaves_no_seen_ids_behind(
    store: GraphStore, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its partitions are taken again by a new batch: its ids must not make them replays."""
    events = make_events(users=10, hours=1)
    events.write(tmp_path / "in")
    crash_before_done(settings, store, tmp_path / "in", monkeypatch)
    assert list(settings.seen_ids_dir.rglob("batch=000001-*.parquet"))

    abandon_batch(settings, store, 1, "test: abandoned on purpose", force=True)
    assert not list(settings.seen_ids_dir.rglob("batch=000001-*.parquet"))
    again = refresh(settings, store, tmp_path / "in")
    [batch] = again.batches
    assert (batch.counts["accepted"], batch.counts["duplicates"]) == (len(events.hours[0]), 0)
