"""Benchmarks' and tests' graphs are the pipeline's: :mod:`pipelines.event_tables` adds nothing to
:mod:`pipelines.event_log` (held equal to the Beam snapshot by ``tests/test_event_log.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from graphrisk.config import Settings, load_settings
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel
from graphrisk.synthetic import generate
from pipelines.event_log import FactLog, read_event_log, tables_as_of
from pipelines.event_tables import build_snapshot, read_events, snapshot_tables
from pipelines.refresh import discover_partitions
from pipelines.snapshot import load_snapshot

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(out, users=300, seed=11, days=2)
    return out / "events"


@pytest.fixture(scope="module")
def conf() -> Settings:
    return load_settings(environment="test")


def test_tables_are_the_event_logs_fold(events: Path, conf: Settings) -> None:
    log = read_event_log(events, [p.path for p in discover_partitions(events)], conf)
    end = int(log.clean.column("time")[-1].as_py()) + 1
    want_nodes, want_edges = tables_as_of(FactLog.of(log.clean), end)
    nodes, edges = snapshot_tables(events, conf)
    for label in NodeLabel:
        pd.testing.assert_frame_equal(nodes[label], want_nodes[label], obj=label)
    for rel in EDGE_TYPES:
        pd.testing.assert_frame_equal(edges[rel], want_edges[rel], obj=rel)
    # Every event counted once: users' events are the clean log's (pipeline-validated) events,
    # plus the transfers they received.
    assert read_events(events, conf).accepted == log.accepted
    assert nodes[NodeLabel.USER]["event_count"].sum() == log.accepted + len(
        log.clean.filter(log.clean.column("counterparty_id").is_valid())
    )


def test_as_of_keeps_only_earlier_events(events: Path, conf: Settings) -> None:
    log = read_events(events, conf)
    cut = (int(log.clean.column("time")[0].as_py()) // HOUR_MS + 20) * HOUR_MS
    nodes, edges = snapshot_tables(events, conf, as_of_ms=cut)
    want_nodes, want_edges = tables_as_of(FactLog.of(log.clean), cut)
    for label in NodeLabel:
        pd.testing.assert_frame_equal(nodes[label], want_nodes[label], obj=label)
        assert (nodes[label]["last_seen"] < cut).all()
    for rel in EDGE_TYPES:
        pd.testing.assert_frame_equal(edges[rel], want_edges[rel], obj=rel)
    full_users = snapshot_tables(events, conf)[0][NodeLabel.USER]
    assert 0 < len(nodes[NodeLabel.USER]) < len(full_users)


def test_written_snapshot_loads_back_unchanged(events: Path, conf: Settings, tmp_path: Path) -> None:
    nodes, edges = build_snapshot(events, tmp_path / "snap", conf)
    got_nodes, got_edges = load_snapshot(tmp_path / "snap")
    for label in NodeLabel:
        pd.testing.assert_frame_equal(got_nodes[label], nodes[label], check_dtype=False, obj=label)
    for rel in EDGE_TYPES:
        pd.testing.assert_frame_equal(got_edges[rel], edges[rel], check_dtype=False, obj=rel)
    manifest = json.loads((tmp_path / "snap" / "current" / "manifest.json").read_text())
    assert len(manifest["snapshot_hash"]) == 64 and len(manifest["files"]) == len(NodeLabel) + len(EDGE_TYPES)
