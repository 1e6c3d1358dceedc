"""``graphrisk serve --workers N`` starts N worker processes, each with the settings it was given
(issue 12, item 10).

Uvicorn's workers are fresh processes that import the app and build it with ``create_app()``:
the settings of ``--config`` must reach them through the environment, or each worker would
serve with defaults (another audit database, the development keys).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from graphrisk.local_server import free_port

KEY = "toml-only-key-0123456789"


def _get(url: str, key: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow
def test_serve_starts_n_workers_that_all_read_the_config_file(tmp_path: Path) -> None:
    audit_db = tmp_path / "audit-from-toml.db"
    config = tmp_path / "graphrisk.toml"
    config.write_text(
        f'environment = "test"\nstore_uri = "bolt://127.0.0.1:9"\ndata_dir = "{tmp_path / "var"}"\n'
        f'audit_url = "sqlite:///{audit_db}"\n\n[api_keys]\n"{KEY}" = "onboarding"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHRISK_")}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphrisk.cli", "--config", str(config), "serve", "--workers", "2", "--port", str(port)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # each worker imports torch and the model code
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline:
            workers = [
                c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())
            ]
            try:
                # Both workers built their app: each holds the TOML's audit database open.
                if (
                    len(workers) == 2
                    and _get(f"{base}/healthz") == 200
                    and all(any(f.path == str(audit_db) for f in w.open_files()) for w in workers)
                ):
                    break
            except (OSError, psutil.Error):
                pass
            assert proc.poll() is None, "graphrisk serve exited"
            time.sleep(1)
        assert len(workers) == 2, workers
        assert all(any(f.path == str(audit_db) for f in w.open_files()) for w in workers)
        # The key exists only in the TOML file: every answer (from whichever worker) knows it.
        codes = {_get(f"{base}/v1/users/nobody/score", KEY) for _ in range(20)}
        assert codes == {404}, codes
        # One scrape, whichever worker answers it, counts every worker's requests.
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            text = response.read().decode()
        counted = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "graphrisk_requests_total"
            and sample.labels.get("status") == "404"
            and sample.labels.get("route", "").startswith("/v1/users/")
        )
        assert counted == 20, counted
        assert _get(f"{base}/v1/users/nobody/score", "dev-onboarding-key") == 401
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
