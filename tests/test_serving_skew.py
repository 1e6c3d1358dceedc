"""Training-serving skew, end to end: applicants scored through the API have their served rows
logged; the monitoring run compares them with the batch as-of onboarding rows of the same users
once their events are in the log. Matching rows give zero skew; a feature perturbed in the served
rows raises a skew alarm and shows in the Prometheus textfile and the HTML report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.audit import AuditLog
from api.main import create_app
from api.privacy import enforce_retention, forget_served_rows
from api.served_rows import ServedRows
from gnn.monitor.metrics import export_metrics
from gnn.monitor.report import write_report
from gnn.monitor.run import MonitorResult, comparison_alarms
from gnn.monitor.serving import APPLICANT, applicant_skew, load_served_rows, serving_skew
from gnn.registry import ModelRegistry
from gnn.scoring import score_users
from gnn.training import train_entity_model
from graphrisk.cli import _EventHistory, _monitor_refresh, app
from graphrisk.config import Settings
from graphrisk.local_server import LocalServer, Neo4jServer
from graphrisk.store import GraphStore
from graphrisk.synthetic import generate
from pipelines.event_tables import read_events
from pipelines.refresh import refresh
from tests.api_fixtures import HEADERS, KEYS
from tests.conftest import make_settings

HOUR_MS = 3_600_000


def _partition(events: Path, t_ms: int) -> Path:
    ts = pd.Timestamp(t_ms, unit="ms")
    folder = events / f"dt={ts:%Y-%m-%d}" / f"hr={ts:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _request(row: pd.Series, user_id: str, t_ms: int) -> dict[str, object]:
    return {
        "user_id": user_id, "time": t_ms,
        "document": {"type": row["document.type"], "number": row["document.number"],
                     "issuing_country": row["document.issuing_country"]},
        "device": {"id": row["device.id"]}, "email": row["email"], "phone": row["phone"], "ip": row["ip"],
        "address": {"line1": row["address.line1"], "city": row["address.city"], "country": row["address.country"]},
    }  # fmt: skip


@pytest.fixture
def skew_world(
    bolt_server: LocalServer | Neo4jServer, tmp_path: Path, store: GraphStore
) -> dict[str, object]:
    """A small scored world whose last event falls just before a refresh hour, so that the ages
    the published features measure (at the snapshot's last event) are those of the as-of replay
    (at the hour): matching definitions must give zero skew."""
    settings = make_settings(bolt_server, tmp_path / "var", api_keys=KEYS, audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
                             rate_limit_per_minute=100_000, write_batch_size=500)  # fmt: skip
    generate(tmp_path / "gen", users=400, seed=11, days=2)
    events = tmp_path / "gen" / "events"
    raw = pd.concat([pd.read_parquet(p) for p in sorted(events.rglob("*.parquet"))], ignore_index=True)
    hour = (int(raw["time"].max()) // HOUR_MS + 1) * HOUR_MS
    filler = raw[raw["event_type"] == "payment"].iloc[[0]].assign(event_id="skew-filler", time=hour - 1)
    filler.to_parquet(_partition(events, hour - 1) / "part-90000.parquet", index=False)
    labels = pd.read_parquet(tmp_path / "gen" / "labels" / "users.parquet")
    refresh(settings, store, events)
    # The production model and its published scores, as graphrisk train and score leave them (no
    # rings: the API scores applicants without them).
    registry = ModelRegistry(settings.data_dir / "models")
    meta, _ = train_entity_model(settings.snapshot_dir, labels, registry, candidates=("gbdt",))
    registry.promote(meta.version, force=True)
    score_users(settings.snapshot_dir, settings.data_dir / "scores", registry, store)
    return {
        "settings": settings,
        "events": events,
        "raw": raw,
        "hour": hour,
        "version": meta.version,
    }


def test_served_rows_match_batch_rows_and_a_perturbed_feature_alarms(
    skew_world: dict[str, object], tmp_path: Path
) -> None:
    settings, events, raw, hour = (skew_world[k] for k in ("settings", "events", "raw", "hour"))
    assert isinstance(events, Path) and isinstance(raw, pd.DataFrame) and isinstance(hour, int)
    onboarding = raw[raw["event_type"] == "onboarding"].sort_values("time")
    # New applicants on existing users' identifiers (two per source user: the second also links
    # to the first through the API's record of recent applications), within the next hour.
    sources = onboarding.iloc[:: max(1, len(onboarding) // 6)].head(6)
    requests = []
    for i, (_, row) in enumerate(sources.iterrows()):
        for j in range(2):
            requests.append(_request(row, f"skew-{i}-{j}", hour + (2 * i + j + 1) * 60_000))
    with TestClient(create_app(settings)) as client:  # type: ignore[arg-type]
        for body in requests:
            r = client.post("/v1/score", json=body, headers=HEADERS["onboarding"])
            assert r.status_code == 200, r.text
            assert r.json()["known_user"] is False
        # The app owns its served-row log (as its recent applications) and closes it at shutdown.
        owned = client.app.state.graphrisk.served_rows  # type: ignore[attr-defined]
        assert owned is not None and owned.engine.pool.checkedin() > 0
    assert owned.engine.pool.checkedin() == 0  # disposed: no connection left open
    served = load_served_rows(settings.audit_db_url)
    version = str(skew_world["version"])
    assert set(served) == {version}
    rows = served[version]
    assert len(rows) == len(requests) and set(rows.index) == {b["user_id"] for b in requests}
    assert (rows.drop(columns=["at_ms", "row_hash"]).abs().sum(axis=1) > 0).all()

    model, _ = ModelRegistry(settings.data_dir / "models").load()  # type: ignore[attr-defined]
    # Before the applications reach the event log: served, nothing to compare yet.
    log = read_events(events, settings)  # type: ignore[arg-type]
    early, _ = serving_skew(settings, model, version, log=log, now_ms=hour + 2 * HOUR_MS)
    assert early[APPLICANT].users == 0 and early[APPLICANT].only_online == len(requests)

    # The applications arrive in the event log (as the onboarding service's events would).
    apps = pd.DataFrame([
        {"event_id": f"app-{b['user_id']}", "event_type": "onboarding", "schema_version": 1, "user_id": b["user_id"],
         "time": b["time"], "document.type": b["document"]["type"], "document.number": b["document"]["number"],  # type: ignore[index]
         "document.issuing_country": b["document"]["issuing_country"], "device.id": b["device"]["id"],  # type: ignore[index]
         "email": b["email"], "phone": b["phone"], "ip": b["ip"], "address.line1": b["address"]["line1"],  # type: ignore[index]
         "address.city": b["address"]["city"], "address.country": b["address"]["country"]}  # type: ignore[index]
        for b in requests
    ]).reindex(columns=raw.columns)  # fmt: skip
    apps.to_parquet(_partition(events, hour + 60_000) / "part-90001.parquet", index=False)
    log = read_events(events, settings)  # type: ignore[arg-type]
    skews, notes = serving_skew(settings, model, version, log=log, now_ms=hour + 2 * HOUR_MS)
    report = skews[APPLICANT]
    assert report.users == len(requests) and report.only_online == 0, notes
    worst = report.table.head(5).to_dict("records")
    assert report.rows_mismatched == 0.0 and report.worst_mismatch_rate == 0.0, worst
    assert comparison_alarms(skews, settings) == []  # type: ignore[arg-type]
    with GraphStore(settings) as st:  # type: ignore[arg-type]
        known, _ = serving_skew(settings, model, version, store=st, now_ms=hour)
    # Known users re-built online from the store (the explanation path's re-score) against their
    # published rows: measured and exported. On this world the applicant path's definition differs
    # for identifier nodes (it adds the application's own event, ages the node from the user's
    # link): the comparison reports it rather than hiding it.
    assert known["known_user"].users > 0
    # Their alarms are of their own kind: explanations use these rows, decisions do not.
    assert {a.kind for a in comparison_alarms(known, settings)} <= {"skew_known_user"}  # type: ignore[arg-type]

    # The hourly refresh's monitoring run reads the refresh's event log and the store, and
    # compares both (it used to note "no event log given"); so does `monitor report --events`.
    # The window reaches back to the world's dates (the served rows are dated by their requests).
    wide = settings.model_copy(update={"skew_window_h": 24 * 365 * 10.0})  # type: ignore[attr-defined]
    hourly = _monitor_refresh(wide, {"scores": {}}, _EventHistory(wide, events))
    assert isinstance(hourly, dict), hourly
    assert not any("no event log" in n for n in hourly["notes"]), hourly["notes"]
    assert hourly["skews"][APPLICANT]["users"] == len(requests)
    assert hourly["skews"][APPLICANT]["rows_mismatched"] == 0.0
    assert hourly["skews"]["known_user"]["users"] > 0
    assert not [a for a in hourly["alarm_list"] if a["kind"] == "skew"], hourly["alarm_list"]
    env = {"GRAPHRISK_ENVIRONMENT": "test", "GRAPHRISK_STORE_ENGINE": wide.store_engine,
           "GRAPHRISK_STORE_URI": wide.store_uri, "GRAPHRISK_STORE_PASSWORD": wide.store_password.get_secret_value(),
           "GRAPHRISK_STORE_DATABASE": wide.store_database, "GRAPHRISK_DATA_DIR": str(wide.data_dir),
           "GRAPHRISK_AUDIT_URL": wide.audit_db_url, "GRAPHRISK_SKEW_WINDOW_H": str(wide.skew_window_h)}  # fmt: skip
    res = CliRunner().invoke(
        app, ["monitor", "report", "--out", str(tmp_path / "cli-report"), "--events", str(events)], env=env
    )
    assert res.exit_code == 0, res.output
    latest = json.loads((wide.data_dir / "monitor" / "latest.json").read_text())
    assert latest["skews"][APPLICANT]["users"] == len(requests), latest["notes"]
    assert (tmp_path / "cli-report" / "skew-applicant.png").exists()

    # A feature the served rows hold deliberately off: the comparison names it and alarms.
    feature = next(c for c in rows.columns[2:] if rows[c].nunique() > 1)
    perturbed = rows.assign(**{feature: rows[feature] + 1.0})
    bad = applicant_skew(perturbed, log, model.for_applicants.scorer.features, model.train_labels)
    assert bad.table.iloc[0]["feature"] == feature and bad.table.iloc[0]["mismatch_rate"] == 1.0
    assert bad.table["mismatch_rate"].iloc[1:].max() == 0.0
    alarms = comparison_alarms({APPLICANT: bad}, settings)  # type: ignore[arg-type]
    assert [(a.kind, a.subject) for a in alarms] == [("skew", f"{APPLICANT}:{feature}")]

    result = MonitorResult("refresh", version, 0, skew=bad, skews={APPLICANT: bad}, alarms=alarms)
    prom = export_metrics(result, tmp_path / "monitor.prom").read_text()
    assert (
        f'graphrisk_skew_mismatch_rate{{comparison="{APPLICANT}",feature="{feature}",point="refresh"}} 1.0'
        in prom
    )
    assert f'graphrisk_skew_rows_mismatched{{comparison="{APPLICANT}",point="refresh"}} 1.0' in prom
    page = write_report(result, tmp_path / "report").read_text()
    assert "skew-applicant.png" in page and feature in page
    assert (tmp_path / "report" / "skew-applicant.png").exists()


def test_served_rows_are_kept_within_retention_and_erased(tmp_path: Path) -> None:
    served = ServedRows(f"sqlite:///{tmp_path / 'audit.db'}")
    names = ["a", "b"]
    served.record("u1", 1_000, "v1", np.array([1.0, np.nan]), names, "h1")
    served.record("u2", 5_000, "v1", np.array([2.0, 3.0]), names, "h2")
    served.record("u1", 6_000, "v1", np.array([4.0, 5.0]), names, "h3")
    rows = served.rows()["v1"]
    assert list(rows.index) == ["u2", "u1"] and rows.loc["u1", "a"] == 4.0  # latest row per user
    assert served.prune(2_000) == 1
    assert served.forget("u1") == 1
    assert list(served.rows()["v1"].index) == ["u2"]
    served.close()


def test_retention_and_erasure_remove_served_rows(tmp_path: Path) -> None:
    """The hourly retention deletes served rows past ``served_rows_retention_days``; erasure with
    ``--links`` deletes a person's rows (they are keyed by the pseudonymous user id)."""
    settings = Settings(data_dir=tmp_path / "var", audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
                        decisions_url=f"sqlite:///{tmp_path / 'decisions.db'}", served_rows_retention_days=7)  # fmt: skip
    now_s = 100 * 86_400.0
    served = ServedRows(settings.audit_db_url)
    served.record("old", int((now_s - 8 * 86_400) * 1000), "v1", np.array([1.0]), ["a"], "h1")
    served.record("kept", int((now_s - 6 * 86_400) * 1000), "v1", np.array([2.0]), ["a"], "h2")
    audit = AuditLog(settings.audit_db_url, key=b"k" * 32)
    report = enforce_retention(settings, audit=audit, now_s=now_s)
    assert report.served_rows == 1 and list(served.rows()["v1"].index) == ["kept"]
    assert forget_served_rows(settings.audit_db_url, "kept") == 1 and served.rows() == {}
    audit.close()
    served.close()
