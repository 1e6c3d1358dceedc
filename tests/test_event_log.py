"""The in-process event log folds to exactly the snapshot the Beam pipeline writes.

Replays and as-of features read graphs through :mod:`pipelines.event_log`; these tests hold
that path to the production graph build, so no second graph builder can drift from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrisk.config import Settings
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel
from graphrisk.store import GraphStore
from graphrisk.synthetic.generator import generate
from pipelines.event_log import FactLog, GraphTimeline, read_event_log, tables_as_of
from pipelines.refresh import discover_partitions, refresh
from pipelines.snapshot import load_snapshot

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(out, users=400, seed=3, days=2)
    return out / "events"


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys).reset_index(drop=True)


def test_event_log_folds_to_the_beam_snapshot(world: Path, store: GraphStore, settings: Settings) -> None:
    report = refresh(settings, store, world)
    totals = report.totals()
    log = read_event_log(world, [p.path for p in discover_partitions(world)], settings)
    assert (log.read, log.accepted, log.rejected, log.duplicates) == (
        totals["read"], totals["accepted"], totals["rejected"], totals["duplicates"],
    )  # fmt: skip
    end = int(log.clean.column("time")[-1].as_py()) + 1
    nodes, edges = tables_as_of(FactLog.of(log.clean), end)
    snap_nodes, snap_edges = load_snapshot(settings.snapshot_dir)
    for label in NodeLabel:
        pd.testing.assert_frame_equal(
            _sorted(nodes[label], ["id"]), _sorted(snap_nodes[label], ["id"]), check_dtype=False, obj=label
        )
    for rel in EDGE_TYPES:
        pd.testing.assert_frame_equal(
            _sorted(edges[rel], ["src", "dst"]), _sorted(snap_edges[rel], ["src", "dst"]),
            check_dtype=False, obj=rel,
        )  # fmt: skip


def test_an_hourly_timeline_equals_one_fold_and_holds_only_the_past(world: Path, settings: Settings) -> None:
    log = read_event_log(world, [p.path for p in discover_partitions(world)], settings)
    facts = FactLog.of(log.clean)
    times = log.clean.column("time").to_numpy()
    start = (int(times.min()) // HOUR_MS + 1) * HOUR_MS
    cut = start + 17 * HOUR_MS + 123
    timeline = GraphTimeline(facts)
    for t in range(start, cut, HOUR_MS):
        timeline.advance(t)
    timeline.advance(cut)
    stepped_nodes, stepped_edges = timeline.tables()
    once_nodes, once_edges = tables_as_of(facts, cut)
    for label in NodeLabel:
        pd.testing.assert_frame_equal(stepped_nodes[label], once_nodes[label], obj=label)
        assert (stepped_nodes[label]["last_seen"] < cut).all()
    for rel in EDGE_TYPES:
        pd.testing.assert_frame_equal(stepped_edges[rel], once_edges[rel], obj=rel)
        assert (stepped_edges[rel]["last_seen"] < cut).all()
    # Exactly the events before the cut are counted.
    users = once_nodes[NodeLabel.USER]
    before = log.clean.filter(log.clean.column("time").to_numpy() < cut)
    user_events = pd.Series(before.column("user_id").to_numpy(zero_copy_only=False)).value_counts()
    got = users.set_index("id")["event_count"]
    # Counterparties of transfers are users too; compare on the events' own users only.
    own = got.reindex(user_events.index)
    assert (own.to_numpy() >= user_events.to_numpy()).all()
    assert int(np.sum(got)) >= int(user_events.sum())
    with pytest.raises(ValueError, match="cannot go back"):
        timeline.advance(cut - 1)
