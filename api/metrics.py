"""Prometheus metrics of the API."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("graphrisk_requests_total", "Requests by route and status", ["route", "status"])
LATENCY = Histogram(
    "graphrisk_request_seconds", "Request latency by route", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)  # fmt: skip
SCORES = Counter("graphrisk_scores_total", "Scores served by kind and band", ["kind", "band"])
