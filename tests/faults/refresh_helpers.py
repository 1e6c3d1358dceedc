"""Helpers of the refresh fault tests: ``graphrisk refresh`` as a real process, snapshot checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from graphrisk.config import Settings
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel
from graphrisk.store import GraphStore
from pipelines.graph_build import run_graph_build
from pipelines.refresh import discover_partitions, refresh
from pipelines.snapshot import load_snapshot, verify_snapshot


def cli_env(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``graphrisk`` subprocess on the test store, writing under ``data_dir``."""
    return {
        **os.environ,
        "GRAPHRISK_ENVIRONMENT": "test",
        "GRAPHRISK_STORE_URI": settings.store_uri,
        "GRAPHRISK_STORE_PASSWORD": settings.store_password.get_secret_value(),
        "GRAPHRISK_STORE_DATABASE": settings.store_database,
        "GRAPHRISK_DATA_DIR": str(data_dir),
        "COLUMNS": "200",  # rich wraps stderr at the terminal width: keep messages on one line
        **extra,
    }


def start_refresh(env: dict[str, str], input_root: Path, *args: str) -> subprocess.Popen[str]:
    """``graphrisk refresh --input input_root --no-score ARGS`` in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "graphrisk.cli", "refresh", "--input", str(input_root), "--no-score", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def assert_same_snapshot(snapshot_dir: Path, expected_dir: Path) -> None:
    """``snapshot_dir`` matches its manifest and holds the same tables as ``expected_dir``."""
    assert verify_snapshot(snapshot_dir) == []
    nodes, edges = load_snapshot(snapshot_dir)
    want_nodes, want_edges = load_snapshot(expected_dir)
    for label in NodeLabel:
        pd.testing.assert_frame_equal(nodes[label], want_nodes[label])
    for rel in EDGE_TYPES:
        pd.testing.assert_frame_equal(edges[rel], want_edges[rel])


def reference_run(settings: Settings, store: GraphStore, input_root: Path, data_dir: Path) -> None:
    """Refresh ``input_root`` uninterrupted into ``data_dir`` (the expected snapshot), then empty the store."""
    refresh(settings.model_copy(update={"data_dir": data_dir}), store, input_root)
    store.delete_all()
    store.ensure_schema()


def crash_before_done(
    settings: Settings, store: GraphStore, input_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run a refresh that dies just before its batch is marked done (as a kill there would)."""
    real_write = store.write

    def crash_at_finish(name: str, **params: Any) -> list[dict[str, Any]]:
        if name == "ledger/finish_batch":
            raise SystemExit("killed before the batch was marked done")
        return real_write(name, **params)

    monkeypatch.setattr(store, "write", crash_at_finish)
    with pytest.raises(SystemExit):
        refresh(settings, store, input_root)
    monkeypatch.setattr(store, "write", real_write)


def crash_after_build(settings: Settings, store: GraphStore, input_root: Path) -> list[str]:
    """Record batch 1, build it, and stop before marking it done; its partitions' paths."""
    parts = discover_partitions(input_root)
    now = int(time.time() * 1000)
    store.write("ledger/start_batch", seq=1, partitions=[p.path for p in parts],
                fingerprints=[p.fingerprint for p in parts], now=now)  # fmt: skip
    run_graph_build(settings, input_root, [p.path for p in parts], 1, ingested_at_ms=now)
    return [p.path for p in parts]
