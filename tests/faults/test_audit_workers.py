"""Two API processes auditing at once keep one linear, gapless chain and lose nothing (issue 12, item 10).

Before the fix each process kept the chain's head in memory: the second to write collided on
the sequence, its writer thread died, and its later entries were silently lost.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Barrier
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from api.audit import AuditLog, audit_table

KEY = b"fault-suite-audit-key-0123456789"
PER_WORKER = 300
INVESTIGATOR = "inv-key-0123456789"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(url: str, name: str, start: Barrier) -> None:
    """One API process's audit traffic: appends in bursts, then a clean shutdown."""
    log = AuditLog(url, key=KEY)
    start.wait(timeout=30)
    for i in range(PER_WORKER):
        ticket = log.append(f"key:{name}", "onboarding", "score", f"{name}-{i}", {"i": i})
        if i % 20 == 19:
            # Like request handlers, wait for a commit now and then; the pause lets the other
            # process's writer in between this one's batches.
            ticket.result(timeout=30)
            time.sleep(0.005)
    log.close(timeout=20)


def _run_workers(url: str, names: list[str]) -> list[int | None]:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(len(names))
    procs = [ctx.Process(target=_worker, args=(url, n, start)) for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
        if p.is_alive():
            p.kill()
    return [p.exitcode for p in procs]


def test_two_processes_append_one_linear_chain(audit_db_url: str) -> None:
    names = ["w1", "w2"]
    AuditLog(audit_db_url, key=KEY).close()  # the table exists before the race, as after a deploy
    assert _run_workers(audit_db_url, names) == [0, 0]

    log = AuditLog(audit_db_url, key=KEY)
    try:
        with log.engine.connect() as conn:
            n, lo, hi = conn.execute(
                select(func.count(), func.min(audit_table.c.seq), func.max(audit_table.c.seq))
            ).one()
        assert (n, lo, hi) == (2 * PER_WORKER, 1, 2 * PER_WORKER)  # nothing lost, no gaps
        targets = [e["target"] for e in log.entries()]
        for name in names:
            assert sorted(t for t in targets if t.startswith(f"{name}-")) == sorted(
                f"{name}-{i}" for i in range(PER_WORKER)
            )
        result = log.check()
        assert result.ok and result.keyed and result.entries == 2 * PER_WORKER, result
        # The two writers really interleaved (else this test proves nothing about concurrency).
        runs = sum(1 for a, b in itertools.pairwise(targets) if a[:2] != b[:2])
        assert runs >= 2
    finally:
        log.close()


def test_workers_starting_on_an_empty_database_create_tables_once(audit_db_url: str) -> None:
    # Both processes start on a database without the tables: creating them must not race.
    assert _run_workers(audit_db_url, ["a1", "a2"]) == [0, 0]
    log = AuditLog(audit_db_url, key=KEY)
    try:
        assert log.check().entries == 2 * PER_WORKER
    finally:
        log.close()


@pytest.mark.slow
def test_uvicorn_with_two_workers_records_every_answered_request(audit_db_url: str, tmp_path: Path) -> None:
    # The issue's own setup: `uvicorn --workers 2` (what `graphrisk serve --workers 2` runs).
    port = _free_port()
    env = {**os.environ, "GRAPHRISK_ENVIRONMENT": "test", "GRAPHRISK_DATA_DIR": str(tmp_path / "var"),
           "GRAPHRISK_STORE_URI": "bolt://127.0.0.1:9", "GRAPHRISK_AUDIT_URL": audit_db_url,
           "GRAPHRISK_API_KEYS": json.dumps({INVESTIGATOR: "investigator"}),
           "GRAPHRISK_AUDIT_HMAC_KEY": KEY.decode(), "GRAPHRISK_AUDIT_ANCHOR_PATH": str(tmp_path / "a.jsonl"),
           "GRAPHRISK_RATE_LIMIT_PER_MINUTE": "1000000"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--workers", "2",
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            time.sleep(0.5)
        time.sleep(3)  # both workers up (each answers /healthz once its app is loaded)

        def one(i: int) -> int:
            # A new connection each time, so the kernel spreads them over both workers.
            return httpx.get(
                f"{base}/v1/rings?limit={1 + i % 50}", headers={"X-API-Key": INVESTIGATOR}
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, range(300)))
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert codes.count(200) == 300, {c: codes.count(c) for c in set(codes)}
    log = AuditLog(audit_db_url, key=KEY)
    try:
        result = log.check()
        assert result.ok and result.entries == 300, result  # every answered request, one chain
        assert {e["action"] for e in log.entries()} == {"list_rings"}
    finally:
        log.close()
