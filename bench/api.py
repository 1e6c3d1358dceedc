"""API latency at fixed request rates, driven by autocannon (Node.js) over loopback.

A Python load generator would saturate these 2 cores itself, so the load comes from
``autocannon -R`` (``npm install -g autocannon``). Builds a scored demo graph (ArcadeDB,
synthetic events, model, scores, rings), starts ``graphrisk serve`` with one worker, and runs:

- the floor: ``GET /healthz``, a bare FastAPI endpoint of the same server, at the same rate and
  connection count as the known-user score;
- ``POST /v1/score`` for a known user (500 req/s, 4 connections; target p99 ≤ 1.5 × the floor's);
- ``POST /v1/score`` for a new applicant (100 req/s; target p99 ≤ 50 ms);
- ``GET /v1/rings`` (target p95 ≤ 100 ms; autocannon reports p90 and p97.5, the latter is quoted
  as an upper bound of p95);
- the most known-user scores per second it serves (no fixed rate, 16 connections).

With ``--workers 1 2`` (the default) all of it runs against one worker, then against
``graphrisk serve --workers 2``, in the same run on the same graph, and the ratios are printed.
Settings reach every worker through ``GRAPHRISK_*`` variables, as in production.

    python bench/api.py --users 3000 --duration 20 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd

from gnn.workflow import train_score_and_find_rings
from graphrisk.config import load_settings
from graphrisk.local_server import LocalServer, free_port
from graphrisk.store import GraphStore
from graphrisk.synthetic import generate
from pipelines.refresh import refresh

PASSWORD = "bench-password-0123"
KEYS = {"bench-onboarding-key": "onboarding", "bench-investigator-key": "investigator"}


def autocannon(url: str, rate: int | None, connections: int, duration: int, method: str = "GET",
               body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run autocannon at a fixed rate (``None``: as fast as the server answers); its JSON result."""
    cmd = ["autocannon", "--json", "-c", str(connections), "-d", str(duration), "-m", method]
    if rate is not None:
        cmd += ["-R", str(rate)]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}={v}"]
    if body is not None:
        cmd += ["-H", "content-type=application/json", "-b", json.dumps(body)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def summary(name: str, res: dict[str, Any]) -> dict[str, Any]:
    """Latency percentiles (ms) and status counts of one run."""
    lat = res["latency"]
    return {"run": name, "req/s": round(res["requests"]["average"]), "p50": lat["p50"], "p90": lat["p90"],
            "p97.5": lat["p97_5"], "p99": lat["p99"], "max": lat["max"], "2xx": res["2xx"],
            "non2xx": res["non2xx"], "errors": res["errors"]}  # fmt: skip


def wait_http(url: str, timeout_s: float = 60) -> None:
    """Until ``url`` answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def worker_pids(parent: int) -> list[int]:
    """Pids of the uvicorn worker processes under ``parent`` (its multiprocessing children)."""
    out = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-e"], capture_output=True, text=True, check=True)
    rows = [line.split(None, 2) for line in out.stdout.splitlines()]
    return [int(pid) for pid, ppid, cmd in rows if int(ppid) == parent and "spawn_main" in cmd]


def measure(
    workers: int, env: dict[str, str], applicant: dict[str, Any], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Start ``graphrisk serve --workers N``, warm it, and run every measurement against it."""
    port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "graphrisk.cli", "serve", "--port", str(port),
                            "--workers", str(workers)], env=env, start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout_s=300)
        if workers > 1:
            pids = worker_pids(api.pid)
            assert len(pids) == workers, f"expected {workers} worker processes, found {pids}"
        onb = {"X-API-Key": "bench-onboarding-key"}
        inv = {"X-API-Key": "bench-investigator-key"}
        # Warm every measured path first: the store's JIT compiles the applicant lookup on first
        # use, and a cold run would measure the compiler, not the service. With several workers
        # each one warms (the connections spread over them).
        new_applicant = applicant | {"user_id": "bench-new-applicant"}
        autocannon(f"{base}/v1/score", 200, 4 * workers, 5, "POST", applicant, onb)
        autocannon(f"{base}/v1/score", 100, 4 * workers, args.warmup, "POST", new_applicant, onb)
        autocannon(f"{base}/v1/rings?limit=50&min_score=0.1", 100, 4 * workers, 5, headers=inv)
        tag = f"w{workers}"
        return [
            summary(f"{tag} floor GET /healthz @500/s c4", autocannon(f"{base}/healthz", 500, 4, args.duration)),
            summary(f"{tag} known POST /v1/score @500/s c4",
                    autocannon(f"{base}/v1/score", 500, 4, args.duration, "POST", applicant, onb)),
            summary(f"{tag} new POST /v1/score @100/s c4",
                    autocannon(f"{base}/v1/score", 100, 4, args.duration, "POST", new_applicant, onb)),
            summary(f"{tag} GET /v1/rings @100/s c4",
                    autocannon(f"{base}/v1/rings?limit=50&min_score=0.1", 100, 4, args.duration, headers=inv)),
            summary(f"{tag} known POST /v1/score max c16",
                    autocannon(f"{base}/v1/score", None, 16, args.duration, "POST", applicant, onb)),
        ]  # fmt: skip
    finally:
        api.terminate()
        try:
            api.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(api.pid, signal.SIGKILL)  # the supervisor and its workers
            api.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--duration", type=int, default=20, help="seconds per run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--warmup", type=int, default=30, help="seconds of new-applicant warm-up")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    args = parser.parse_args()
    if shutil.which("autocannon") is None:
        sys.exit("autocannon not found: npm install -g autocannon")
    work = Path(tempfile.mkdtemp(prefix="graphrisk-api-bench-"))
    with LocalServer(root=work / "arcadedb", password=PASSWORD) as server:
        env_settings = {"environment": "test", "store_uri": server.uri, "store_password": PASSWORD,
                        "data_dir": work / "var", "api_keys": KEYS, "audit_url": f"sqlite:///{work / 'audit.db'}",
                        "rate_limit_per_minute": 10_000_000}  # fmt: skip
        s = load_settings(**env_settings)
        generate(work / "gen", users=args.users, seed=51, days=7)
        labels = pd.read_parquet(work / "gen" / "labels" / "users.parquet")
        with GraphStore(s) as store:
            refresh(s, store, work / "gen" / "events")
            train_score_and_find_rings(s, store, labels)
        events = pd.read_parquet(sorted((work / "gen" / "events").rglob("*.parquet")))
        row = events[events["event_type"] == "onboarding"].iloc[0]
        applicant = {
            "user_id": row["user_id"],
            "document": {"type": row["document.type"], "number": row["document.number"],
                         "issuing_country": row["document.issuing_country"]},
            "device": {"id": row["device.id"]}, "email": row["email"], "phone": row["phone"], "ip": row["ip"],
            "address": {"line1": row["address.line1"], "city": row["address.city"], "country": row["address.country"]},
        }  # fmt: skip
        env = {**os.environ, **{f"GRAPHRISK_{k.upper()}": (json.dumps(v) if isinstance(v, dict) else str(v))
                                for k, v in env_settings.items()}}  # fmt: skip
        by_workers = {n: measure(n, env, applicant, args) for n in args.workers}
    runs = [r for rs in by_workers.values() for r in rs]
    cols = list(runs[0])
    print(" | ".join(cols))
    for r in runs:
        print(" | ".join(str(r[c]) for c in cols))
    for n, (floor, known, new, rings, most) in by_workers.items():
        print(f"[{n} worker(s)] known p99 / floor p99 = {known['p99'] / max(floor['p99'], 1e-9):.2f} (target <= 1.5); "
              f"new applicant p99 = {new['p99']} ms (target <= 50); ring list p97.5 = {rings['p97.5']} ms "
              f"(p95 target <= 100); known-user max = {most['req/s']} req/s")  # fmt: skip
    if len(by_workers) > 1:
        one, *more = sorted(by_workers)
        for n in more:
            base, other = by_workers[one], by_workers[n]
            print(f"{n} workers vs {one}: known-user max req/s x{other[4]['req/s'] / max(base[4]['req/s'], 1):.2f}; "
                  + "; ".join(f"{b['run'].split(' ', 1)[1]} p99 x{o['p99'] / max(b['p99'], 1e-9):.2f}"
                              for b, o in zip(base[:4], other[:4], strict=True)))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
