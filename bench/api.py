"""API latency at fixed request rates, driven by autocannon (Node.js) over loopback.

A Python load generator would saturate these 2 cores itself, so the load comes from
``autocannon -R`` (``npm install -g autocannon``). Builds a scored demo graph (ArcadeDB,
synthetic events, model, scores, rings), starts ``graphrisk serve`` with one worker, and runs:

- the floor: ``GET /healthz``, a bare FastAPI endpoint of the same server, at the same rate and
  connection count as the known-user score;
- ``POST /v1/score`` for a known user (500 req/s, 4 connections; target p99 ≤ 1.5 × the floor's);
- ``POST /v1/score`` for a new applicant (100 req/s; target p99 ≤ 50 ms);
- ``GET /v1/rings`` (target p95 ≤ 100 ms; autocannon reports p90 and p97.5, the latter is quoted
  as an upper bound of p95).

    python bench/api.py --users 3000 --duration 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def autocannon(url: str, rate: int, connections: int, duration: int, method: str = "GET",
               body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run autocannon at a fixed rate; its JSON result."""
    cmd = ["autocannon", "--json", "-R", str(rate), "-c", str(connections), "-d", str(duration), "-m", method]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--duration", type=int, default=20, help="seconds per run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--warmup", type=int, default=30, help="seconds of new-applicant warm-up")
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
        port = free_port()
        env = {**os.environ, **{f"GRAPHRISK_{k.upper()}": (json.dumps(v) if isinstance(v, dict) else str(v))
                                for k, v in env_settings.items()}}  # fmt: skip
        api = subprocess.Popen([sys.executable, "-m", "graphrisk.cli", "serve", "--port", str(port)], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            onb = {"X-API-Key": "bench-onboarding-key"}
            inv = {"X-API-Key": "bench-investigator-key"}
            # Warm every measured path first: the store's JIT compiles the applicant lookup on first
            # use, and a cold run would measure the compiler, not the service.
            new_applicant = applicant | {"user_id": "bench-new-applicant"}
            autocannon(f"{base}/v1/score", 200, 4, 5, "POST", applicant, onb)
            autocannon(f"{base}/v1/score", 100, 4, args.warmup, "POST", new_applicant, onb)
            autocannon(f"{base}/v1/rings?limit=50&min_score=0.1", 100, 4, 5, headers=inv)
            runs = [
                summary("floor GET /healthz @500/s c4", autocannon(f"{base}/healthz", 500, 4, args.duration)),
                summary("known POST /v1/score @500/s c4",
                        autocannon(f"{base}/v1/score", 500, 4, args.duration, "POST", applicant, onb)),
                summary("new POST /v1/score @100/s c4",
                        autocannon(f"{base}/v1/score", 100, 4, args.duration, "POST", new_applicant, onb)),
                summary("GET /v1/rings @100/s c4",
                        autocannon(f"{base}/v1/rings?limit=50&min_score=0.1", 100, 4, args.duration, headers=inv)),
            ]  # fmt: skip
        finally:
            api.terminate()
            api.wait(30)
    cols = list(runs[0])
    print(" | ".join(cols))
    for r in runs:
        print(" | ".join(str(r[c]) for c in cols))
    floor, known, new, rings = runs
    print(f"known p99 / floor p99 = {known['p99'] / max(floor['p99'], 1e-9):.2f} (target <= 1.5)")
    print(f"new applicant p99 = {new['p99']} ms (target <= 50)")
    print(f"ring list p97.5 = {rings['p97.5']} ms (p95 target <= 100)")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
