"""The API's test world, shared by tests/test_api.py and the API fault tests (tests/faults/).

``world`` (a session fixture in tests/conftest.py, built by :func:`build_world`) is a scored synthetic graph in its
own database of the session's ArcadeDB server: events refreshed into the store, a trained
production model, published scores and rings under its data directory. Build an app on it with
``create_app(world["settings"])``; give each app its own ``audit_url`` when it is not the module's
shared client (:func:`own_settings`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import uvicorn
from starlette.types import ASGIApp

from gnn.workflow import train_score_and_find_rings
from graphrisk.config import Settings
from graphrisk.local_server import LocalServer, Neo4jServer, free_port
from graphrisk.store import GraphStore
from graphrisk.synthetic import generate
from pipelines.refresh import refresh
from tests.conftest import make_settings

KEYS = {
    "onb-key-0123456789": "onboarding",
    "inv-key-0123456789": "investigator",
    "adm-key-0123456789": "admin",
}
HEADERS = {role: {"X-API-Key": key} for key, role in KEYS.items()}
HEADERS["bearer_investigator"] = {"Authorization": "Bearer inv-key-0123456789"}


def build_world(
    bolt_server: LocalServer | Neo4jServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A scored synthetic graph in its own database (the ``world`` fixture of tests/conftest.py)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("api")
    # Apart from the database the `store` fixture empties (on Neo4j, a server of its own).
    server = bolt_server.database_server("apitest")
    settings = make_settings(server, root / "var", api_keys=KEYS, audit_url=f"sqlite:///{root / 'audit.db'}",
                             rate_limit_per_minute=100_000)  # fmt: skip
    generate(root / "gen", users=2500, seed=23, days=7)
    labels = pd.read_parquet(root / "gen" / "labels" / "users.parquet")
    with GraphStore(settings) as store:
        refresh(settings, store, root / "gen" / "events")
        report = train_score_and_find_rings(settings, store, labels)
    events = pd.read_parquet(sorted((root / "gen" / "events").rglob("*.parquet")))
    return {"settings": settings, "labels": labels, "events": events, "version": report["model"]["version"]}


def own_settings(world: dict[str, Any], tmp_path: Path, **update: Any) -> Settings:
    """The world's settings with a throwaway audit and decision database under ``tmp_path``."""
    return world["settings"].model_copy(update={"audit_url": f"sqlite:///{tmp_path / 'audit.db'}", **update})


def onboarding_of(world: dict[str, Any], user_id: str) -> dict[str, Any]:
    """The onboarding request of an existing user, as the onboarding service would send it."""
    ev = world["events"]
    row = ev[(ev["user_id"] == user_id) & (ev["event_type"] == "onboarding")].iloc[0]
    return {
        "user_id": user_id,
        "document": {"type": row["document.type"], "number": row["document.number"], "issuing_country": row["document.issuing_country"]},
        "device": {"id": row["device.id"]},
        "email": row["email"], "phone": row["phone"], "ip": row["ip"],
        "address": {"line1": row["address.line1"], "city": row["address.city"], "country": row["address.country"]},
    }  # fmt: skip


def fraud_user(world: dict[str, Any], typology: str) -> str:
    """The first planted fraudster of ``typology``."""
    labels = world["labels"]
    return str(labels[(labels["typology"] == typology)]["user_id"].iloc[0])


@contextmanager
def serve_in_thread(app: ASGIApp, timeout_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a thread (real sockets, real concurrency);
    yields its base URL and stops it on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
