"""Issue 12, item 4: a resume over changed files, and processed files that change later.

A file edited between a crash and the resume once left the store with the old amounts and the
snapshot with the new ones, exit 0. The crash here is the last kill point before the ledger
commit: the batch's graph build ran (store and delta written) but ``finish_batch`` never did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphrisk.cli import app
from graphrisk.config import Settings
from graphrisk.store import GraphStore
from pipelines.refresh import ChangedPartitionsError, discover_partitions, refresh
from tests.factories import make_events
from tests.faults.refresh_helpers import cli_env, crash_after_build


def _edit_amounts(path: Path) -> None:
    """Double every amount in an event file (what the operator's edit did)."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for e in events:
        if "amount" in e:
            e["amount"] = str(float(e["amount"]) * 2)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def test_resume_over_changed_or_missing_files_stops_and_names_them(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(users=20, hours=3)
    events.write(tmp_path / "in")
    paths = crash_after_build(settings, store, tmp_path / "in")
    before = store.rel_counts()
    edited, removed = tmp_path / "in" / paths[1], tmp_path / "in" / paths[2]
    original = edited.read_text()
    _edit_amounts(edited)
    removed.unlink()

    with pytest.raises(ChangedPartitionsError) as err:
        refresh(settings, store, tmp_path / "in")
    message = str(err.value)
    assert f"{paths[1]} (content changed)" in message and f"{paths[2]} (gone)" in message
    assert "cannot resume interrupted batch 1" in message and "Restore those files" in message
    assert err.value.changed == [paths[1]] and err.value.missing == [paths[2]]
    assert store.rel_counts() == before  # nothing more was written
    assert [r["seq"] for r in store.read("ledger/unfinished_batch")] == [1]

    res = CliRunner().invoke(app, ["refresh", "--input", str(tmp_path / "in"), "--no-score"],
                             env=cli_env(settings, settings.data_dir))  # fmt: skip
    assert res.exit_code == 1
    assert f"{paths[1]} (content changed)" in " ".join(res.output.split())

    # Restored as they were, the resume goes on and finishes the batch.
    edited.write_text(original)
    events.write(tmp_path / "in", hours=[2])
    report = refresh(settings, store, tmp_path / "in")
    assert [(b.seq, b.resumed) for b in report.batches] == [(1, True)]
    assert store.read("ledger/unfinished_batch") == []


def test_processed_file_changed_later_fails_the_run_unless_accepted(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(users=15, hours=2)
    paths = events.write(tmp_path / "in")
    runner = CliRunner()
    env = cli_env(settings, settings.data_dir)
    args = ["refresh", "--input", str(tmp_path / "in"), "--no-score"]
    assert runner.invoke(app, args, env=env).exit_code == 0
    state = store.rel_counts()

    _edit_amounts(paths[0])
    changed = paths[0].relative_to(tmp_path / "in").as_posix()
    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 3
    assert "processed partitions changed since they were processed" in res.stderr
    assert changed in " ".join(res.stderr.split())
    assert json.loads(res.stdout[res.stdout.index("{") :])["changed_after_processing"] == [changed]
    assert store.rel_counts() == state  # not folded in again

    res = runner.invoke(app, [*args, "--accept-changed"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{") :])["accepted_changes"] == [changed]
    accepted = [r for r in store.read("ledger/processed_partitions") if r["path"] == changed]
    assert accepted[0]["fingerprint"] == discover_partitions(tmp_path / "in")[0].fingerprint
    res = runner.invoke(app, args, env=env)  # accepted once: later runs pass
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{") :])["changed_after_processing"] == []
