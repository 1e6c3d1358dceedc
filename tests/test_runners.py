"""The same small world built on every Beam runner gives the same graph.

Each portable runner builds the world of ``make_events`` (with invalid records and a replay)
into an emptied store, and its result is compared with the DirectRunner's: node and
relationship counts and every property in the store, the snapshot's content hash, and the
dead letters. Flink and Spark run embedded (``[local]``, ``local[2]``) with the SDK workers in
this process (LOOPBACK); their job servers are built by ``make beam-jars``, Prism by
``make prism``. A runner that is not built, or whose job server is of another Beam version
than the Python SDK, skips and says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from graphrisk.config import Settings
from graphrisk.store import GraphStore
from pipelines.options import (
    runner_missing,
)
from pipelines.refresh import refresh
from tests.factories import add_bad_records, make_events
from tests.test_refresh import graph_state

pytestmark = pytest.mark.slow

PORTABLE = ["PrismRunner", "FlinkRunner", "SparkRunner"]
# "engine/runner" → that runner's build of the world on that engine, computed once.
_built: dict[str, dict[str, Any]] = {}


def _props(store: GraphStore, name: str, key: str) -> list[str]:
    rows = store.read(name, skip=0, limit=1_000_000)
    out = [json.dumps({"k": r[key], **r["props"]}, sort_keys=True, default=str) for r in rows
           if not str(r[key]).startswith("Ingest")]  # fmt: skip
    return sorted(out)


def build(settings: Settings, store: GraphStore, input_root: Path, runner: str) -> dict[str, Any]:
    """Build the world on ``runner`` into an emptied store; everything the comparison needs."""
    store.delete_all()
    store.ensure_schema()
    s = settings.model_copy(update={"beam_runner": runner, "data_dir": settings.data_dir / runner})
    report = refresh(s, store, input_root)
    assert len(report.batches) == 1
    dead = sorted(
        line for f in sorted(s.dead_letter_dir.glob("*.jsonl")) for line in f.read_text().splitlines()
    )
    return {
        "state": graph_state(store),
        "nodes": _props(store, "stats/all_node_properties", "label"),
        "rels": _props(store, "stats/all_rel_properties", "type"),
        "snapshot_hash": report.snapshot["snapshot_hash"],
        "dead_letters": dead,
        "counts": {k: v for k, v in report.batches[0].counts.items() if "second" not in k},
    }


def _skip_reason(runner: str) -> str | None:
    missing = runner_missing(runner)
    if missing:
        return missing
    if runner != "PrismRunner" and shutil.which("java") is None:
        return f"{runner} needs a Java runtime (java on PATH)"
    return None


def _result(runner: str, store: GraphStore, settings: Settings, root: Path) -> dict[str, Any]:
    """``runner``'s build of the world, once per engine (the two tests share it)."""
    reason = _skip_reason(runner)
    if reason:
        pytest.skip(reason)
    if not root.exists():
        events = make_events(users=40, hours=3, seed=7)
        add_bad_records(events, hour=2)
        events.write(root)
    key = f"{settings.store_engine}/{runner}"
    if key not in _built:
        _built[key] = build(settings, store, root, runner)
    return _built[key]


@pytest.fixture
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "runners_world"


@pytest.mark.parametrize("runner", PORTABLE)
def test_runner_builds_the_same_graph_as_the_direct_runner(
    runner: str, store: GraphStore, settings: Settings, world_root: Path
) -> None:
    got = _result(runner, store, settings, world_root)
    expected = _result("DirectRunner", store, settings, world_root)
    assert expected["dead_letters"] and expected["nodes"] and expected["rels"]
    assert got["state"] == expected["state"]
    assert got["nodes"] == expected["nodes"]
    assert got["rels"] == expected["rels"]
    assert got["snapshot_hash"] == expected["snapshot_hash"]
    assert got["dead_letters"] == expected["dead_letters"]


# Counts travel as data (pipelines.graph_build.WriteCounts), not Beam metrics: Spark's portable
# job server reports no metrics, and its counts read 0 when they came from there.
@pytest.mark.parametrize("runner", PORTABLE)
def test_runner_reports_the_same_counts_as_the_direct_runner(
    runner: str, store: GraphStore, settings: Settings, world_root: Path
) -> None:
    got = _result(runner, store, settings, world_root)
    expected = _result("DirectRunner", store, settings, world_root)
    assert got["counts"] == expected["counts"]
