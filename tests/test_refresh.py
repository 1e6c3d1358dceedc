"""The graph build and hourly refresh against a live Bolt server.

Idempotency, incremental refresh, crash-and-rerun, dead letters with reasons, reconciled
counts, and no raw sensitive value in the store or the snapshot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from graphrisk.config import Settings
from graphrisk.graph_schema import NodeLabel, RelType
from graphrisk.store import GraphStore
from pipelines.refresh import refresh
from pipelines.snapshot import load_snapshot
from tests.factories import add_bad_records, make_events


def graph_state(store: GraphStore) -> dict[str, Any]:
    """Everything a double count or a loss would change."""
    nodes = {k: v for k, v in store.node_counts().items() if not k.startswith("Ingest")}
    totals = {
        r["label"]: (r["events"], r["first_seen"], r["last_seen"])
        for r in store.read("stats/node_event_totals")
    }
    totals = {k: v for k, v in totals.items() if not k.startswith("Ingest")}
    # Amount totals are summed by the server in traversal order, which may differ between two
    # databases; each relationship's own amount is exact, so compare the sum to 1e-4.
    rels = {k: v | {"amount": round(v["amount"], 4)} for k, v in store.rel_counts().items()}
    return {"nodes": nodes, "rels": rels, "node_events": totals}


def test_build_counts_reconcile_and_dead_letters_name_fields(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(users=30, hours=2)
    expected_bad = add_bad_records(events, hour=1)
    events.write(tmp_path / "in")
    report = refresh(settings, store, tmp_path / "in")
    totals = report.totals()
    assert totals["read"] == events.count
    assert totals["rejected"] == len(expected_bad)
    assert totals["duplicates"] == 1
    assert totals["read"] == totals["accepted"] + totals["rejected"] + totals["duplicates"]
    letters = [
        json.loads(line)
        for line in (settings.dead_letter_dir / "batch-000001.jsonl").read_text().splitlines()
    ]
    got = {d["record"]["event_id"]: d for d in letters}
    assert {k: got[k]["field"] for k in expected_bad} == expected_bad
    for d in letters:
        assert d["source"] == "dt=2026-01-05/hr=01/part-00000.jsonl"
        assert d["line"] > 0 and d["reason"]
    # Each of 30 users onboarded, logged in and paid once; 29 transferred.
    rels = store.rel_counts()
    assert rels[RelType.HAS_EMAIL]["events"] == 30
    assert rels[RelType.TRANSFERRED_TO]["events"] == 29
    assert rels[RelType.USED_DEVICE]["events"] == 60
    # Users 0, 5, ..., 25 share one phone; the other 24 have their own: 25 phones.
    assert store.node_counts()[NodeLabel.PHONE] == 25


def test_rerun_changes_nothing(store: GraphStore, settings: Settings, tmp_path: Path) -> None:
    make_events(users=20, hours=2).write(tmp_path / "in")
    first = refresh(settings, store, tmp_path / "in")
    state = graph_state(store)
    again = refresh(settings, store, tmp_path / "in")
    assert again.batches == [] and again.skipped_partitions == 2
    assert graph_state(store) == state
    assert first.snapshot["snapshot_hash"] == again.snapshot["snapshot_hash"]


def test_incremental_equals_all_at_once(store: GraphStore, settings: Settings, tmp_path: Path) -> None:
    events = make_events(users=30, hours=3)
    events.write(tmp_path / "all")
    refresh(settings, store, tmp_path / "all")
    at_once = graph_state(store)
    nodes_once, edges_once = load_snapshot(settings.snapshot_dir)

    store.delete_all()
    settings2 = settings.model_copy(update={"data_dir": tmp_path / "var2"})
    for hour in range(3):
        events.write(tmp_path / "hourly", hours=[hour])
        report = refresh(settings2, store, tmp_path / "hourly")
        assert [b.partitions for b in report.batches] == [1]
    assert graph_state(store) == at_once
    nodes_inc, edges_inc = load_snapshot(settings2.snapshot_dir)
    for label in NodeLabel:
        pd.testing.assert_frame_equal(nodes_inc[label], nodes_once[label])
    for rel in RelType:
        pd.testing.assert_frame_equal(edges_inc[rel], edges_once[rel])


def test_snapshot_agrees_with_store(store: GraphStore, settings: Settings, tmp_path: Path) -> None:
    make_events(users=25, hours=2).write(tmp_path / "in")
    refresh(settings, store, tmp_path / "in")
    nodes, edges = load_snapshot(settings.snapshot_dir)
    assert {lab.value: len(df) for lab, df in nodes.items() if len(df)} == {
        k: v for k, v in store.node_counts().items() if not k.startswith("Ingest")
    }
    rels = store.rel_counts()
    for rel, df in edges.items():
        if len(df):
            assert (len(df), int(df["count"].sum())) == (rels[rel]["rels"], rels[rel]["events"])
            assert df["amount_total"].sum() == pytest.approx(rels[rel]["amount"])


def test_no_raw_sensitive_value_in_store_or_snapshot(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(users=25, hours=1)
    events.write(tmp_path / "in")
    refresh(settings, store, tmp_path / "in")
    stored: list[str] = []
    for name in ("stats/all_node_properties", "stats/all_rel_properties"):
        rows = store.read(name, skip=0, limit=100_000)
        stored += [str(v) for r in rows for v in r["props"].values()]
    assert len(stored) > 500
    for path in settings.snapshot_dir.rglob("*.parquet"):
        df = pd.read_parquet(path)
        stored += [str(v) for col in df.columns for v in df[col].tolist()]
    blob = "\n".join(stored).lower()
    leaked = sorted(v for v in events.sensitive if v.lower() in blob)
    assert leaked == []
    # Investigator-facing masks are there instead.
    emails = store.read("stats/all_node_properties", skip=0, limit=100_000)
    masks = [r["props"]["masked"] for r in emails if r["label"] == "Email"]
    assert masks and all("***@example.org" in m for m in masks)


@pytest.mark.slow
def test_crash_mid_write_then_rerun_neither_loses_nor_doubles(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    """Kill -9 a refresh while it writes, re-run it, and compare with an uninterrupted run."""
    events = make_events(users=120, hours=2)
    events.write(tmp_path / "in")
    refresh(settings.model_copy(update={"data_dir": tmp_path / "clean"}), store, tmp_path / "in")
    expected = graph_state(store)
    store.delete_all()

    env = {
        **os.environ,
        "GRAPHRISK_ENVIRONMENT": "test",
        "GRAPHRISK_STORE_URI": settings.store_uri,
        "GRAPHRISK_STORE_PASSWORD": settings.store_password.get_secret_value(),
        "GRAPHRISK_STORE_DATABASE": settings.store_database,
        "GRAPHRISK_DATA_DIR": str(tmp_path / "var"),
        "GRAPHRISK_WRITE_BATCH_SIZE": "10",  # many small transactions: a wide window to crash in
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphrisk.cli", "refresh", "--input", str(tmp_path / "in")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        users = store.node_counts().get(NodeLabel.USER, 0)
        if users >= 30:  # some, not all, of the batch is in
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, "the refresh finished before it could be interrupted"
    assert store.read("ledger/unfinished_batch"), "the crash should leave the batch unfinished"
    assert graph_state(store) != expected

    s = settings.model_copy(update={"data_dir": tmp_path / "var"})
    report = refresh(s, store, tmp_path / "in")
    assert report.batches[0].resumed
    assert graph_state(store) == expected
    assert store.read("ledger/unfinished_batch") == []
