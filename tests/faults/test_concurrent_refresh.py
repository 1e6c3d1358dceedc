"""Issue 12, item 1: overlapping refreshes, and a snapshot that no longer matches its manifest.

Two ``graphrisk refresh`` processes on one data directory and one store once left
``snapshot/current/`` with 3 of its 18 files under a manifest claiming 18, and exit 0. Now a
refresh holds a file lock and a store lock: a second run exits 75 naming the holder, or waits
with ``--lock-wait``; and a damaged snapshot is detected on load and by the refresh, and rebuilt
from the batch deltas.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from graphrisk.config import Settings
from graphrisk.graph_schema import NodeLabel
from graphrisk.store import GraphStore
from pipelines.locks import RefreshLockedError, RefreshLockLostError, StoreLock, refresh_lock
from pipelines.refresh import refresh
from pipelines.snapshot import current_dir, load_snapshot, verify_snapshot
from tests.factories import make_events
from tests.faults.refresh_helpers import assert_same_snapshot, cli_env, reference_run, start_refresh


@pytest.mark.slow
def test_overlapping_refreshes_one_runs_one_exits_one_waits(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(users=80, hours=3)
    events.write(tmp_path / "in")
    reference_run(settings, store, tmp_path / "in", tmp_path / "ref")

    env = cli_env(settings, tmp_path / "var", GRAPHRISK_WRITE_BATCH_SIZE="3")  # a slow first run
    first = start_refresh(env, tmp_path / "in")
    deadline = time.monotonic() + 120
    while first.poll() is None and not store.read("ledger/unfinished_batch") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first refresh finished before the others could overlap it"

    # In this process, at once: the data directory's file lock, then (another data directory,
    # same store) the store's lock, each naming the first run.
    s = settings.model_copy(update={"data_dir": tmp_path / "var"})
    with pytest.raises(RefreshLockedError, match=rf"pid {first.pid}\b.*file lock"):
        refresh(s, store, tmp_path / "in")
    other = settings.model_copy(update={"data_dir": tmp_path / "other"})
    with pytest.raises(RefreshLockedError, match=rf"store's refresh lock is held by .*pid {first.pid}\b"):
        refresh(other, store, tmp_path / "in")

    # Two more processes: one exits 75 with the message, one waits for the first to finish.
    # The first run is frozen (its locks held) until the second has given up: a new process takes
    # seconds to start, and on a loaded machine the first would otherwise finish before then.
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        second = start_refresh(env, tmp_path / "in")
        waiter = start_refresh(env, tmp_path / "in", "--lock-wait", "300")
        _, err2 = second.communicate(timeout=120)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    out1, err1 = first.communicate(timeout=300)
    out3, err3 = waiter.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 75, err2
    assert "locked by" in err2 and f"pid {first.pid}" in err2 and "--lock-wait" in err2
    assert waiter.returncode == 0, err3
    assert json.loads(out1[out1.index("{") :])["batches"]
    assert json.loads(out3[out3.index("{") :])["batches"] == []  # nothing left to do

    assert_same_snapshot(s.snapshot_dir, tmp_path / "ref" / "snapshot")
    assert store.read("ledger/unfinished_batch") == []


def test_stale_store_lock_is_taken_over_loudly(store: GraphStore, settings: Settings) -> None:
    now = int(time.time() * 1000)
    store.write(
        "ledger/acquire_refresh_lock", token="dead-run", holder="ops@elsewhere pid 4242", pid=4242,
        host="elsewhere", now=now - 60_000, stale_before=0, dead_token="",
    )  # fmt: skip
    with (
        pytest.raises(RefreshLockedError, match="held by ops@elsewhere pid 4242"),
        refresh_lock(settings, store),
    ):
        pass
    warnings: list[str] = []
    stale = settings.model_copy(update={"refresh_lock_stale_s": 30})
    with refresh_lock(stale, store, warn=warnings.append) as lock:
        assert lock.taken_over is not None and lock.taken_over["holder"] == "ops@elsewhere pid 4242"
    assert len(warnings) == 1 and "took over the refresh lock of ops@elsewhere pid 4242" in warnings[0]
    with refresh_lock(settings, store, warn=warnings.append) as lock:  # released: free again
        assert lock.taken_over is None


def test_a_run_whose_lock_was_taken_over_stops_before_committing(store: GraphStore) -> None:
    lock = StoreLock(store, stale_s=10, warn=lambda _: None)  # heartbeats every 2 s
    lock.acquire()
    try:
        now = int(time.time() * 1000)
        row = store.write(
            "ledger/acquire_refresh_lock", token="usurper", holder="ops@elsewhere pid 7", pid=7,
            host="elsewhere", now=now, stale_before=now + 1, dead_token="",
        )[0]  # fmt: skip
        assert row["acquired"] and row["taken_over"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                lock.check()
            except RefreshLockLostError as exc:
                assert "taken over by another run" in str(exc)
                break
            time.sleep(0.2)
        else:
            pytest.fail("the lost lock was not noticed")
    finally:
        lock.release()
    assert store.write("ledger/heartbeat_refresh_lock", token="usurper", now=now)  # not released by the loser
    store.write("ledger/release_refresh_lock", token="usurper", now=now)


def _two_batches(store: GraphStore, settings: Settings, tmp_path: Path) -> Path:
    """Refresh two hourly batches; return a copy of the resulting snapshot folder."""
    events = make_events(users=20, hours=2)
    for hour in range(2):
        events.write(tmp_path / "in", hours=[hour])
        refresh(settings, store, tmp_path / "in")
    shutil.copytree(settings.snapshot_dir, tmp_path / "expected", symlinks=True)
    return tmp_path / "expected"


def test_damaged_snapshot_is_rebuilt_on_load(store: GraphStore, settings: Settings, tmp_path: Path) -> None:
    expected = _two_batches(store, settings, tmp_path)
    cur = current_dir(settings.snapshot_dir)
    (cur / "nodes" / "User.parquet").unlink()  # what the overlapping runs left: files gone
    assert verify_snapshot(settings.snapshot_dir) == ["nodes/User.parquet is missing"]
    nodes, _ = load_snapshot(settings.snapshot_dir)  # rebuilt from the two deltas, then read
    pd.testing.assert_frame_equal(nodes[NodeLabel.USER], load_snapshot(expected)[0][NodeLabel.USER])
    assert len(nodes[NodeLabel.USER]) == 20
    assert_same_snapshot(settings.snapshot_dir, expected)


def test_damaged_snapshot_is_rebuilt_by_the_next_refresh(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    expected = _two_batches(store, settings, tmp_path)
    cur = current_dir(settings.snapshot_dir)
    shutil.copyfile(cur / "edges" / "PAID.parquet", cur / "edges" / "USED_DEVICE.parquet")  # wrong content
    (cur / "nodes" / "Device.parquet").unlink()
    report = refresh(settings, store, tmp_path / "in")
    assert report.batches == []
    assert report.snapshot["rebuilt_because"] == [
        "edges/USED_DEVICE.parquet does not match its hash in the manifest",
        "nodes/Device.parquet is missing",
    ]
    assert_same_snapshot(settings.snapshot_dir, expected)
