"""The API follows the data: new scores, rings and models are served without a restart, swapped
atomically, with requests in flight finishing on the state they started on."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from fastapi.testclient import TestClient

from api.main import create_app
from gnn.registry import ModelRegistry
from graphrisk.config import Settings
from tests.api_fixtures import HEADERS, own_settings, serve_in_thread


def _own_data(world: dict[str, Any], tmp_path: Path, **update: Any) -> Settings:
    """The world's published scores, rings and models, copied: this test publishes over them."""
    src = world["settings"].data_dir
    for part in ("scores", "rings", "models"):
        shutil.copytree(src / part, tmp_path / "var" / part)
    return own_settings(world, tmp_path, data_dir=tmp_path / "var", **update)


def _publish_scores(settings: Settings, user: str, score: float, band: str) -> None:
    path = settings.data_dir / "scores" / "user_scores.parquet"
    table = pd.read_parquet(path)
    table.loc[table["id"] == user, ["score", "band"]] = [score, band]
    tmp = path.with_name(path.name + ".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)  # as gnn.scoring publishes: a rename


def _register_copy(settings: Settings) -> str:
    """A second version of the production model, promoted (what a train does)."""
    registry = ModelRegistry(settings.data_dir / "models")
    model, meta = registry.load()
    fields = {k: getattr(meta, k) for k in ("model_name", "snapshot_hash", "feature_names", "hyperparameters",
                                            "metrics", "dataset", "threshold", "notes")}  # fmt: skip
    new = registry.register(model, fields)
    registry.promote(new.version, force=True)
    return new.version


def test_reload_serves_new_scores_model_and_rollback(world: dict[str, Any], tmp_path: Path) -> None:
    settings = _own_data(world, tmp_path, reload_check_s=0.0)
    user = str(world["labels"]["user_id"].iloc[7])
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz", headers=HEADERS["admin"]).json()["detail"]
        assert ready["model_version"] == world["version"] and ready["scores_snapshot"].startswith(
            world["version"]
        )
        before = ready["scores_snapshot"]
        first = client.get(f"/v1/users/{user}/score", headers=HEADERS["investigator"]).json()

        _publish_scores(settings, user, 0.987654, "block")
        version = _register_copy(settings)
        r = client.post("/v1/admin/reload", headers=HEADERS["admin"])
        assert r.status_code == 200, r.text
        assert r.json()["serving"]["model_version"] == version
        after = client.get(f"/v1/users/{user}/score", headers=HEADERS["investigator"]).json()
        assert after["score"] == 0.987654 and after["band"] == "block" and first["score"] != after["score"]
        ready = client.get("/readyz", headers=HEADERS["admin"]).json()["detail"]
        assert ready["model_version"] == version and ready["scores_snapshot"] != before
        anonymous = client.get("/readyz")  # anyone sees what is served, in headers
        assert anonymous.json() == {"status": "ok", "detail": {}}
        assert anonymous.headers["X-Model-Version"] == version
        assert anonymous.headers["X-Scores-Snapshot"] == ready["scores_snapshot"]

        ModelRegistry(settings.data_dir / "models").rollback()
        client.post("/v1/admin/reload", headers=HEADERS["admin"])
        assert (
            client.get("/readyz", headers=HEADERS["admin"]).json()["detail"]["model_version"]
            == world["version"]
        )
        assert client.post("/v1/admin/reload", headers=HEADERS["investigator"]).status_code == 403


def test_the_watcher_picks_up_a_publication_without_a_call(world: dict[str, Any], tmp_path: Path) -> None:
    settings = _own_data(world, tmp_path, reload_check_s=0.1)
    user = str(world["labels"]["user_id"].iloc[8])
    with TestClient(create_app(settings)) as client:
        before = client.get("/readyz", headers=HEADERS["admin"]).json()["detail"]["scores_snapshot"]
        time.sleep(0.05)  # a different mtime even on coarse clocks
        _publish_scores(settings, user, 0.912345, "block")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = client.get(f"/v1/users/{user}/score", headers=HEADERS["investigator"]).json()
            if got["score"] == 0.912345:
                break
            time.sleep(0.1)
        assert got["score"] == 0.912345
        assert client.get("/readyz", headers=HEADERS["admin"]).json()["detail"]["scores_snapshot"] != before


def test_a_request_in_flight_finishes_on_the_old_state(world: dict[str, Any], tmp_path: Path) -> None:
    """An explanation waiting on the store while a reload swaps the state answers with the
    score and model it started with; the next request sees the new ones."""
    settings = _own_data(world, tmp_path, reload_check_s=0.0)
    app = create_app(settings)
    with serve_in_thread(app) as url:
        state = app.state.graphrisk
        user = sorted(state.input_row)[0]
        old_score = state.scores[user].score
        entered, release = threading.Event(), threading.Event()
        real_read = state.store.read

        def slow_read(name: str, **params: Any) -> Any:
            if name == "serving/user_evidence":
                entered.set()
                release.wait(30)
            return real_read(name, **params)

        state.store.read = slow_read  # type: ignore[method-assign]
        with httpx.Client(base_url=url, timeout=60) as http, ThreadPoolExecutor(1) as pool:
            pending = pool.submit(http.get, f"/v1/users/{user}/explanation", headers=HEADERS["investigator"])
            assert entered.wait(30)
            _publish_scores(settings, user, 0.5, "review")
            version = _register_copy(settings)
            assert http.post("/v1/admin/reload", headers=HEADERS["admin"]).status_code == 200
            release.set()
            old = pending.result(60)
            assert old.status_code == 200, old.text
            assert (
                old.json()["published_score"] == old_score and old.json()["model_version"] == world["version"]
            )
            new = http.get(f"/v1/users/{user}/explanation", headers=HEADERS["investigator"]).json()
            assert new["published_score"] == 0.5
            score = http.get(f"/v1/users/{user}/score", headers=HEADERS["investigator"]).json()
            assert score["score"] == 0.5 and state.snapshot.model_meta.version == version
