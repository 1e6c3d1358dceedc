"""Issue 12, item 3 (operator part): ``graphrisk refresh --abandon-batch N --reason ...``.

An unfinished batch that cannot complete (a file it cannot read) used to block every later
refresh. An operator can now abandon it: the ledger records who, when and why, the report shows
it, and its partitions are taken again by the refresh (the fixed ones, or, with unreadable files
sent to dead letters, all of them). A batch that already wrote to the store is refused unless
forced, since those writes cannot be undone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphrisk.cli import app
from graphrisk.config import Settings
from graphrisk.store import GraphStore
from pipelines.refresh import AbandonRefusedError, abandon_batch, discover_partitions, refresh
from pipelines.snapshot import delta_dir
from tests.factories import make_events
from tests.faults.refresh_helpers import assert_same_snapshot, cli_env, crash_after_build, reference_run


def test_abandon_a_batch_that_wrote_nothing_then_its_partitions_are_taken_again(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    make_events(users=15, hours=2).write(tmp_path / "in")
    parts = discover_partitions(tmp_path / "in")
    store.write("ledger/start_batch", seq=1, partitions=[p.path for p in parts],
                fingerprints=[p.fingerprint for p in parts], now=int(time.time() * 1000))  # fmt: skip
    runner, env = CliRunner(), cli_env(settings, settings.data_dir)
    args = ["refresh", "--input", str(tmp_path / "in"), "--no-score", "--abandon-batch", "1"]

    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 2 and "--reason" in res.stderr

    reason = "hr=01 unreadable [bad UTF-8], ticket OPS-7"
    res = runner.invoke(app, [*args, "--reason", reason], env=env)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[res.stdout.index("{") :])
    abandoned = report["abandoned"]
    assert (abandoned["seq"], abandoned["reason"], abandoned["partitions"]) == (
        1,
        reason,
        [p.path for p in parts],
    )
    assert abandoned["partial_writes"] == {"nodes": 0, "relationships": 0} and not abandoned["forced"]
    assert "pid" in abandoned["abandoned_by"]
    assert [(b["seq"], b["resumed"], b["partitions"]) for b in report["batches"]] == [(2, False, 2)]

    ledger = store.read("ledger/batch", seq=1)[0]
    assert (ledger["status"], ledger["abandon_reason"]) == ("abandoned", reason)
    assert ledger["abandoned_by"] == abandoned["abandoned_by"] and ledger["abandoned_at"]
    assert store.read("ledger/unfinished_batch") == []
    assert {r["batch_seq"] for r in store.read("ledger/processed_partitions")} == {2}


def test_abandon_refuses_what_it_cannot_undo_and_never_folds_an_abandoned_delta(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(users=15, hours=2)
    events.write(tmp_path / "in")
    reference_run(settings, store, tmp_path / "in", tmp_path / "ref")

    crash_after_build(settings, store, tmp_path / "in")  # batch 1 wrote the store and its delta
    with pytest.raises(AbandonRefusedError, match=r"batch 1 already wrote \d+ nodes and \d+ relationships"):
        abandon_batch(settings, store, 1, "operator test")
    with pytest.raises(AbandonRefusedError, match="needs a reason"):
        abandon_batch(settings, store, 1, " ")
    with pytest.raises(AbandonRefusedError, match="no batch 9"):
        abandon_batch(settings, store, 9, "operator test")

    record = abandon_batch(settings, store, 1, "operator test", force=True)
    assert record["forced"] and record["partial_writes"]["nodes"] > 0
    assert not delta_dir(settings.snapshot_dir, 1).exists() and Path(record["delta_moved_to"]).is_dir()
    with pytest.raises(AbandonRefusedError, match="'abandoned'"):
        abandon_batch(settings, store, 1, "again")

    # The partitions are taken again as batch 2; the snapshot folds batch 2 only, so it equals a
    # clean run's (the store, as the refusal said, now counts batch 1's writes twice).
    report = refresh(settings, store, tmp_path / "in")
    assert [(b.seq, b.resumed) for b in report.batches] == [(2, False)]
    assert report.snapshot["batches"] == [2]
    assert_same_snapshot(settings.snapshot_dir, tmp_path / "ref" / "snapshot")
