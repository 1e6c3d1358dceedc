"""Prometheus metrics of the API, one exposition for all of its worker processes.

With ``graphrisk serve --workers N`` each worker is a process of its own, and a scrape reaches
one of them: its in-memory counters alone would be a fraction of the traffic. ``serve`` then
sets ``PROMETHEUS_MULTIPROC_DIR`` (before any worker imports prometheus_client), every worker
writes its values to files there, and ``/metrics`` reads them all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("graphrisk_requests_total", "Requests by route and status", ["route", "status"])
LATENCY = Histogram(
    "graphrisk_request_seconds", "Request latency by route", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)  # fmt: skip
SCORES = Counter("graphrisk_scores_total", "Scores served by kind and band", ["kind", "band"])


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty ``path`` and point this process's future workers at it (before they start)."""
    # Files left by an earlier server would be summed into this one's counters.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


def exposition(monitor_file: Path | None = None) -> bytes:
    """The text exposition: this process's registry, or every worker's when there are several.

    ``monitor_file`` is the textfile the last monitoring run wrote (drift, skew, alarms; see
    :mod:`gnn.monitor.metrics`): appended as it is, so the API's scrape carries the model's
    monitoring beside its own traffic, with no Pushgateway needed. Its families have names of
    their own, so the two parts never collide.
    """
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        own = generate_latest(registry)
    else:
        own = generate_latest()
    try:
        monitored = monitor_file.read_bytes() if monitor_file is not None else b""
    except FileNotFoundError:  # no monitoring run yet
        monitored = b""
    return own + monitored


def worker_exited() -> None:
    """Drop this worker's live gauges from the shared exposition (called at shutdown)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())
