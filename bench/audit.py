"""What waiting for the audit entry's commit costs an audited request.

Starts ``uvicorn api.main:create_app`` on a throwaway data directory (a known user's published
score, an unreachable graph store: the routes measured do not touch it) and drives it with
``--connections`` closed-loop clients for ``--duration`` seconds per route:

- ``GET /healthz``: the floor (no audit);
- ``GET /v1/users/u1/score``: audited; the response waits for its entry to be committed.

Load comes from ``autocannon -R`` at a fixed rate (as bench/api.py); the server's own mean
time per request (its ``graphrisk_request_seconds`` histogram) is printed beside the client's
percentiles.

Run it from a checkout (``--tree``, default this one) to compare code versions on one machine::

    python bench/audit.py --duration 10 --rate 500
    python bench/audit.py --duration 10 --rate 500 --tree /path/to/older/checkout
    python bench/audit.py --commit-only     # append-to-commit latency, SQLite and PostgreSQL
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

KEY = "bench-onboarding-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _autocannon(url: str, rate: int, connections: int, duration: int) -> dict[str, float]:
    cmd = ["autocannon", "--json", "-R", str(rate), "-c", str(connections), "-d", str(duration),
           "-H", f"X-API-Key={KEY}", url]  # fmt: skip
    res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return {"req/s": res["requests"]["average"], "p50": res["latency"]["p50"], "p99": res["latency"]["p99"],
            "non2xx": res.get("non2xx", 0), "errors": res.get("errors", 0) + res.get("timeouts", 0)}  # fmt: skip


def _server_seconds(base: str) -> dict[str, tuple[float, float]]:
    """Per route: (sum, count) of the server's own request latency histogram."""
    out: dict[str, list[float]] = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        for suffix, i in (("_sum", 0), ("_count", 1)):
            prefix = f'graphrisk_request_seconds{suffix}{{route="'
            if line.startswith(prefix):
                route = line[len(prefix) :].split('"', 1)[0]
                out.setdefault(route, [0.0, 0.0])[i] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def commit_latency(url: str, n: int) -> str:
    """Append-to-commit latency of one entry at a time (an audited request's added wait when the
    writer is idle), then of bursts of 8 (concurrent requests share a commit)."""
    from api.audit import AuditLog

    log = AuditLog(url, key=b"bench-audit-key-0123456789abcdef")
    try:
        for _ in range(50):
            log.append("key:bench", "onboarding", "score", "warm-up", {}).result(timeout=30)
        one = []
        for i in range(n):
            t0 = time.perf_counter()
            log.append("key:bench", "onboarding", "score", f"u{i}", {"score": 0.1}).result(timeout=30)
            one.append((time.perf_counter() - t0) * 1000)
        burst = []
        for i in range(n // 8):
            t0 = time.perf_counter()
            tickets = [log.append("key:bench", "onboarding", "score", f"b{i}-{j}", {}) for j in range(8)]
            for t in tickets:
                t.result(timeout=30)
            burst.append((time.perf_counter() - t0) * 1000)
    finally:
        log.close()
    one.sort()
    burst.sort()
    return (f"{url.split('://')[0]} append->commit, one at a time: p50 {one[len(one) // 2]:.2f} ms, "
            f"p99 {one[int(len(one) * 0.99)]:.2f} ms; 8 at once: p50 {burst[len(burst) // 2]:.2f} ms")  # fmt: skip


def raw_commit_latency(conninfo: str, n: int) -> str:
    """The floor on the same server: one INSERT and COMMIT with psycopg, no SQLAlchemy, no lock."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.commit()
        ms = []
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO t VALUES (%s)", (i,))
            conn.commit()
            ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return f"postgresql raw INSERT+COMMIT (floor): p50 {ms[len(ms) // 2]:.2f} ms, p99 {ms[int(len(ms) * 0.99)]:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--audit-url", default=None, help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument(
        "--commit-only", action="store_true",
        help="only the append-to-commit latency, on SQLite and on a durable PostgreSQL (fsync on)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.commit_only:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.pg_server import start_server, stop_server

        tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
        print(commit_latency(args.audit_url or f"sqlite:///{tmp / 'audit.db'}", 1000))
        pg = start_server(durable=True)
        try:
            print(commit_latency(pg.url(pg.create_database()), 1000))
            print(raw_commit_latency(pg.conninfo(pg.create_database()), 1000))
        finally:
            stop_server(pg)
        return

    root = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    (root / "var" / "scores").mkdir(parents=True)
    pd.DataFrame({"id": ["u1"], "score": [0.2], "band": ["allow"], "model_version": ["v1"]}).to_parquet(
        root / "var" / "scores" / "user_scores.parquet"
    )
    port = _free_port()
    env = {**os.environ, "GRAPHRISK_ENVIRONMENT": "test", "GRAPHRISK_DATA_DIR": str(root / "var"),
           "GRAPHRISK_STORE_URI": "bolt://127.0.0.1:9", "GRAPHRISK_API_KEYS": f'{{"{KEY}": "onboarding"}}',
           "GRAPHRISK_AUDIT_URL": args.audit_url or f"sqlite:///{root / 'audit.db'}",
           "GRAPHRISK_RATE_LIMIT_PER_MINUTE": "100000000"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--port", str(port),
         "--log-level", "warning"],
        cwd=args.tree, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for path, route in (("/healthz", "/healthz"), ("/v1/users/u1/score", "/v1/users/{user_id}/score")):
            _autocannon(base + path, args.rate, args.connections, 2)  # warm-up
            before = _server_seconds(base).get(route, (0.0, 0.0))
            client = _autocannon(base + path, args.rate, args.connections, args.duration)
            after = _server_seconds(base)[route]
            server_ms = 1000 * (after[0] - before[0]) / max(1.0, after[1] - before[1])
            print(f"{args.tree.name} {path} @{args.rate}/s x{args.connections}: {client['req/s']:.0f} req/s, "
                  f"p50 {client['p50']} ms, p99 {client['p99']} ms; server-side mean {server_ms:.2f} ms; "
                  f"non-2xx {client['non2xx']}, errors {client['errors']}")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
