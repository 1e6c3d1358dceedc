"""Lineage of served scores (issue 16 item 3): score through the API, then `graphrisk trace` the
audit entry back to the model version, training snapshot and label set hashes, code version,
thresholds in force, and the feature row (batch) or its hash (online), recomputed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.main import create_app
from gnn.lineage import feature_row_hash, label_set_hash
from gnn.registry import ModelRegistry
from graphrisk import cli
from graphrisk.config import Settings
from graphrisk.events import parse_event
from graphrisk.trace import TraceError, trace_score
from pipelines.snapshot import read_manifest
from tests.api_fixtures import HEADERS, fraud_user, onboarding_of, own_settings


@pytest.fixture(scope="module")
def served(
    world: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Settings]]:
    settings = own_settings(world, tmp_path_factory.mktemp("trace"))
    with TestClient(create_app(settings)) as client:
        yield client, settings


def _last_seq(client: TestClient, action: str, target: str) -> int:
    audit = client.app.state.graphrisk.audit  # type: ignore[attr-defined]
    audit.flush()
    return max(int(e["seq"]) for e in audit.entries() if e["action"] == action and e["target"] == target)


def _registered(world: dict[str, Any]) -> tuple[Any, Any]:
    settings: Settings = world["settings"]
    return ModelRegistry(settings.data_dir / "models").load(world["version"])


def _common_lineage(report: dict[str, Any], world: dict[str, Any]) -> None:
    model, meta = _registered(world)
    assert report["ok"], report["checks"]
    assert report["model"]["version"] == world["version"]
    assert report["model"]["snapshot_hash"] == read_manifest(world["settings"].snapshot_dir)["snapshot_hash"]
    assert report["model"]["label_set_hash"] == label_set_hash(world["labels"])
    # The label set hash is canonical: row order and extra columns do not change it.
    shuffled = world["labels"].sample(frac=1.0, random_state=1)[["is_fraud", "user_id"]]
    assert label_set_hash(shuffled) == report["model"]["label_set_hash"]
    assert report["code"]["model_code_version"] == meta.code_version
    assert report["code"]["serving_code_version"]
    assert report["thresholds"] == {"review": model.review_threshold, "block": model.block_threshold}
    position = report["chain"]["position"]
    assert position["hmac_ok"] and position["prev_ok"] and report["chain"]["verification"]["ok"]


def test_batch_scores_trace_to_the_published_row(
    served: tuple[TestClient, Settings], world: dict[str, Any]
) -> None:
    client, settings = served
    state = client.app.state.graphrisk  # type: ignore[attr-defined]
    flagged = sorted(u for u, c in state.scores.items() if c.band != "allow")[0]
    calm = sorted(u for u, c in state.scores.items() if c.band == "allow")[0]

    r = client.post("/v1/score", json=onboarding_of(world, flagged), headers=HEADERS["onboarding"])
    assert r.status_code == 200 and r.json()["known_user"], r.text
    report = trace_score(settings, _last_seq(client, "score", flagged), audit=state.audit)
    _common_lineage(report, world)
    row = report["feature_row"]
    # A flagged user's row is the exact model input row the batch kept (user_inputs.parquet).
    assert row["kind"] == "model_inputs" and row["available"] and row["user_id"] == flagged
    assert row["recomputed_hash"] == row["hash"]
    assert row["hash"] == feature_row_hash(state.published_inputs(flagged), state.model_meta.feature_names)
    assert report["served"]["score"] == pytest.approx(r.json()["score"])

    r = client.get(f"/v1/users/{calm}/score", headers=HEADERS["investigator"])
    assert r.status_code == 200
    report = trace_score(settings, _last_seq(client, "read_score", calm), audit=state.audit)
    _common_lineage(report, world)
    row = report["feature_row"]
    assert row["kind"] == "user_features" and row["available"] and row["user_id"] == calm
    assert row["recomputed_hash"] == row["hash"] and len(row["values"]) > 10

    # Another entry is not a score; an unknown seq is not traced.
    with pytest.raises(TraceError):
        trace_score(settings, 10**9, audit=state.audit)


def test_online_score_traces_to_a_row_hash_that_recomputes(
    served: tuple[TestClient, Settings], world: dict[str, Any]
) -> None:
    client, settings = served
    state = client.app.state.graphrisk  # type: ignore[attr-defined]
    body = onboarding_of(world, fraud_user(world, "device_farm")) | {"user_id": "applicant-traced"}
    r = client.post("/v1/score", json=body, headers=HEADERS["onboarding"])
    assert r.status_code == 200 and not r.json()["known_user"], r.text
    report = trace_score(settings, _last_seq(client, "score", "applicant-traced"), audit=state.audit)
    _common_lineage(report, world)
    row = report["feature_row"]
    assert row["kind"] == "model_inputs" and row["hash"] and "values" not in row
    # Rebuild the served row as of the time it was scored: the same hash.
    scorer = state.snapshot.applicant_scorer
    fields = {k: v for k, v in body.items() if v is not None} | {"time": row["scored_at_ms"]}
    event = parse_event({**fields, "event_id": "api-applicant-traced", "event_type": "onboarding"})
    rebuilt = scorer.row(state.store, event, row["scored_at_ms"], state.applications)
    assert feature_row_hash(rebuilt, scorer.star.names) == row["hash"]
    # The audit trail holds the hash only: no raw value of the applicant.
    detail = next(e["detail"] for e in state.audit.entries() if e["target"] == "applicant-traced")
    assert body["email"] not in detail and body["phone"] not in detail


def test_trace_command_prints_the_chain(
    served: tuple[TestClient, Settings], world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, settings = served
    user = str(world["labels"]["user_id"].iloc[3])
    assert client.get(f"/v1/users/{user}/score", headers=HEADERS["investigator"]).status_code == 200
    seq = _last_seq(client, "read_score", user)
    monkeypatch.setattr(cli, "load_settings", lambda config=None: settings)
    res = CliRunner().invoke(cli.app, ["trace", str(seq)])
    assert res.exit_code == 0, res.output
    for text in (
        "model version",
        "training snapshot",
        "label set",
        "thresholds in force",
        "feature row hash",
    ):
        assert text in res.output
    reports = sorted(Path(settings.reports_dir).glob("trace-*.json"))
    saved = json.loads(reports[-1].read_text())
    assert saved["entry"]["seq"] == seq and saved["ok"]
    # Not a score: refused with a clear message.
    audit = client.app.state.graphrisk.audit  # type: ignore[attr-defined]
    other = audit.append("tester", "admin", "reload", "state", {}).result(timeout=10)
    res = CliRunner().invoke(cli.app, ["trace", str(other)])
    assert res.exit_code == 1 and "not a served score" in res.output


def test_event_log_hash_depends_on_content_not_chunking() -> None:
    import pyarrow as pa

    from gnn.lineage import event_log_hash

    table = pa.table({"user_id": ["u1", "u2", "u3"], "time": [1, 2, 3]})
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    assert event_log_hash(table) == event_log_hash(chunked)
    assert event_log_hash(table) != event_log_hash(table.slice(0, 2))
