"""Two API processes auditing at once keep one linear, gapless chain and lose nothing (issue 12, item 10).

Before the fix each process kept the chain's head in memory: the second to write collided on
the sequence, its writer thread died, and its later entries were silently lost.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from multiprocessing.synchronize import Barrier

from sqlalchemy import func, select

from api.audit import AuditLog, audit_table

KEY = b"fault-suite-audit-key-0123456789"
PER_WORKER = 300


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
