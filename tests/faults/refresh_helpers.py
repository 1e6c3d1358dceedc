"""Helpers of the refresh fault tests: ``graphrisk refresh`` as a real process, snapshot checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from graphrisk.config import Settings
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel
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
