"""The risk API against a live store and a real trained model: contracts, auth matrix, degradation, audit."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import pytest
import schemathesis
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from api.main import create_app
from graphrisk.config import Settings
from graphrisk.events import parse_event
from graphrisk.store import GraphStore
from tests.api_fixtures import HEADERS, fraud_user, onboarding_of

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def client(world: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(world["settings"])) as c:
        yield c


def test_known_user_gets_published_score(client: TestClient, world: dict[str, Any]) -> None:
    user = str(world["labels"]["user_id"].iloc[5])
    published = pd.read_parquet(world["settings"].data_dir / "scores" / "user_scores.parquet").set_index("id")
    r = client.post("/v1/score", json=onboarding_of(world, user), headers=HEADERS["onboarding"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["known_user"] and not body["stale"]
    assert body["score"] == pytest.approx(published.loc[user, "score"])
    assert body["model_version"] == world["version"]
    r = client.get(f"/v1/users/{user}/score", headers=HEADERS["investigator"])
    assert r.status_code == 200 and r.json()["score"] == body["score"]


def test_new_applicant_scored_from_neighbourhood_without_writing(
    client: TestClient, world: dict[str, Any]
) -> None:
    settings: Settings = world["settings"]
    with GraphStore(settings) as store:
        users_before = store.node_counts()["User"]
    # An applicant re-using a device-farm member's identifiers, and a clean one.
    farm = onboarding_of(world, fraud_user(world, "device_farm")) | {"user_id": "applicant-risky"}
    clean = onboarding_of(world, str(world["labels"][world["labels"]["is_fraud"] == 0]["user_id"].iloc[0]))
    clean |= {"user_id": "applicant-clean", "device": {"id": "brand-new-device"}, "ip": "203.0.113.77",
              "email": "new.person@example.org", "phone": "+447700900555",
              "document": {"type": "passport", "number": "NEW123456", "issuing_country": "GB"},
              "address": {"line1": "99 Nowhere Lane", "city": "Leeds", "country": "GB"}}  # fmt: skip
    answers = [client.post("/v1/score", json=body, headers=HEADERS["onboarding"]) for body in (farm, clean)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    risky, calm = (a.json() for a in answers)
    assert risky["known_user"] is False and calm["known_user"] is False
    assert risky["score"] > calm["score"]
    assert risky["reasons"]
    assert risky["linked_users"]["USED_DEVICE"] >= 1  # the farm's device
    assert all(
        calm["linked_users"].get(r, 0) == 0 for r in ("USED_DEVICE", "HAS_PHONE", "HAS_EMAIL", "HAS_DOCUMENT")
    )
    with GraphStore(settings) as store:
        assert store.node_counts()["User"] == users_before


def test_explanation_evidence_masking_and_faithfulness(client: TestClient, world: dict[str, Any]) -> None:
    user = fraud_user(world, "synthetic_identity")
    inv = client.get(f"/v1/users/{user}/explanation", headers=HEADERS["investigator"])
    assert inv.status_code == 200, inv.text
    body = inv.json()
    assert body["contributions"] and body["reasons"] and body["evidence"]
    top = body["evidence"][0]
    assert top["shared_with"] >= 1
    assert "*" in top["identifier"] or "…" in top["identifier"]  # masked for investigators
    adm = client.get(f"/v1/users/{user}/explanation", headers=HEADERS["admin"]).json()
    assert "*" not in adm["evidence"][0]["identifier"]  # admins see the pseudonymous token


def test_flagged_users_are_explained_from_the_row_the_batch_scored(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = client.app.state.graphrisk  # type: ignore[attr-defined]
    flagged = sorted(u for u, c in state.scores.items() if c.band != "allow")
    calm = sorted(u for u, c in state.scores.items() if c.band == "allow")
    assert flagged and calm and set(state.input_row) == set(flagged)
    for user in flagged[:3]:
        body = client.get(f"/v1/users/{user}/explanation", headers=HEADERS["investigator"]).json()
        assert body["basis"] == "published"
        assert body["score"] == pytest.approx(body["published_score"], abs=1e-6)
        assert body["contributions"]
    body = client.get(f"/v1/users/{calm[0]}/explanation", headers=HEADERS["investigator"]).json()
    assert body["basis"] == "rescored"
    # Rows scored by another model version no longer explain the production model's score.
    # (The served snapshot is immutable: a reload swaps in another, as this does.)
    monkeypatch.setattr(
        state, "snapshot", dataclasses.replace(state.snapshot, inputs_version="some-older-version")
    )
    body = client.get(f"/v1/users/{flagged[0]}/explanation", headers=HEADERS["investigator"]).json()
    assert body["basis"] == "rescored"


def test_removing_top_evidence_lowers_the_score(client: TestClient, world: dict[str, Any]) -> None:
    """Faithfulness on the online path: an applicant copying a ring member's identifiers, then the
    same applicant with the identifiers its reasons point at replaced by fresh ones.

    Compared on the model's raw output: calibrated scores saturate near 1 for clear-cut rings.
    """
    member = fraud_user(world, "synthetic_identity")
    applicant = onboarding_of(world, member) | {"user_id": "applicant-copycat"}
    first = client.post("/v1/score", json=applicant, headers=HEADERS["onboarding"]).json()
    fresh = {"device": {"id": "fresh-device-1"}, "ip": "198.51.100.23", "email": "fresh.person@example.org",
             "phone": "+447700900321", "document": {"type": "passport", "number": "FRESH98765", "issuing_country": "GB"},
             "address": {"line1": "1 Fresh Road", "city": "York", "country": "GB"}}  # fmt: skip
    field_of = {"used_device": "device", "used_ip": "ip", "has_email": "email", "has_phone": "phone",
                "has_document": "document", "lives_at": "address"}  # fmt: skip
    evidence = list(dict.fromkeys(field_of[k] for r in first["reasons"] for k in field_of if k in r["code"]))
    assert evidence, first["reasons"]
    state = client.app.state.graphrisk  # type: ignore[attr-defined]
    scorer = state.applicant_scorer

    def raw(body: dict[str, Any]) -> float:
        event = parse_event(
            {**body, "event_id": "faithfulness", "event_type": "onboarding", "time": 1_769_000_000_000}
        )
        return scorer.score(state.store, event).raw_score

    assert raw(applicant | {f: fresh[f] for f in evidence}) < raw(applicant)


ROUTES = [
    ("post", "/v1/score", {"onboarding": 200, "investigator": 403, "admin": 200}),
    ("get", "/v1/rings", {"onboarding": 403, "investigator": 200, "admin": 200}),
    ("get", "/v1/users/{user}/score", {"onboarding": 200, "investigator": 200, "admin": 200}),
    ("get", "/v1/users/{user}/explanation", {"onboarding": 403, "investigator": 200, "admin": 200}),
]


@pytest.mark.parametrize(("method", "path", "expected"), ROUTES)
@pytest.mark.parametrize("who", ["none", "wrong", "onboarding", "investigator", "admin"])
def test_auth_matrix(
    client: TestClient, world: dict[str, Any], method: str, path: str, expected: dict[str, int], who: str
) -> None:
    user = str(world["labels"]["user_id"].iloc[3])
    anonymous: dict[str, dict[str, str]] = {"none": {}, "wrong": {"X-API-Key": "nope"}}
    headers = anonymous[who] if who in anonymous else HEADERS[who]
    kwargs: dict[str, Any] = {"headers": headers}
    if method == "post":
        kwargs["json"] = onboarding_of(world, user)
    r = client.request(method.upper(), path.format(user=user), **kwargs)
    want = 401 if who in anonymous else expected[who]
    assert r.status_code == want, r.text


def test_bearer_tokens_work(client: TestClient, world: dict[str, Any]) -> None:
    user = str(world["labels"]["user_id"].iloc[3])
    assert client.get(f"/v1/users/{user}/score", headers=HEADERS["bearer_investigator"]).status_code == 200


def test_validation_names_the_field_and_limits_size(client: TestClient, world: dict[str, Any]) -> None:
    user = str(world["labels"]["user_id"].iloc[3])
    body = onboarding_of(world, user) | {"user_id": "applicant-x", "email": "not-an-email"}
    r = client.post("/v1/score", json=body, headers=HEADERS["onboarding"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "email"
    r = client.post(
        "/v1/score",
        json={**body, "email": "a@b.org", "document": {"type": "passport"}},
        headers=HEADERS["onboarding"],
    )
    assert r.status_code == 422 and "number" in r.text
    r = client.post(
        "/v1/score",
        content=b"{" + b" " * 100_000 + b"}",
        headers={**HEADERS["onboarding"], "content-type": "application/json"},
    )
    assert r.status_code == 413


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz", headers=HEADERS["admin"])
    assert ready.status_code == 200 and ready.json()["detail"]["store"] == "ok"
    assert "graphrisk_requests_total" in client.get("/metrics").text


def test_audit_chain_records_scores(client: TestClient) -> None:
    audit = client.app.state.graphrisk.audit  # type: ignore[attr-defined]
    audit.flush()
    entries = list(audit.entries())
    assert any(e["action"] == "score" for e in entries)
    assert any(e["action"] == "read_explanation" for e in entries)
    # No raw email in the trail. Masked ones (``a***@example.org``, evidence an investigator read)
    # may appear, and so may ids such as the scores snapshot's ``version@stamp``.
    email = re.compile(r"([\w.+*-]+)@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
    found = [m.group(0) for e in entries for m in email.finditer(e["detail"])]
    assert all("***" in m for m in found), found[:5]
    assert audit.verify() == (True, None)


def test_store_down_known_stale_new_503(world: dict[str, Any], tmp_path: Path) -> None:
    settings = world["settings"].model_copy(
        update={"store_uri": "bolt://127.0.0.1:9", "audit_url": f"sqlite:///{tmp_path / 'a.db'}"}
    )
    with TestClient(create_app(settings)) as c:
        known = str(world["labels"]["user_id"].iloc[5])
        r = c.post("/v1/score", json=onboarding_of(world, known), headers=HEADERS["onboarding"])
        assert r.status_code == 200 and r.json()["stale"] is True
        r = c.post(
            "/v1/score",
            json=onboarding_of(world, known) | {"user_id": "brand-new"},
            headers=HEADERS["onboarding"],
        )
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert c.get("/readyz").status_code == 503


def test_slow_scoring_gets_503_not_a_hang(world: dict[str, Any], tmp_path: Path) -> None:
    settings = world["settings"].model_copy(
        update={"new_applicant_timeout_s": 1e-4, "audit_url": f"sqlite:///{tmp_path / 'a.db'}"}
    )
    with TestClient(create_app(settings)) as c:
        known = str(world["labels"]["user_id"].iloc[5])
        body = onboarding_of(world, known) | {"user_id": "brand-new-slow"}
        r = c.post("/v1/score", json=body, headers=HEADERS["onboarding"])
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert "took too long" in r.json()["detail"]


def test_rate_limit(world: dict[str, Any], tmp_path: Path) -> None:
    settings = world["settings"].model_copy(
        update={"rate_limit_per_minute": 60, "audit_url": f"sqlite:///{tmp_path / 'a.db'}"}
    )
    with TestClient(create_app(settings)) as c:
        user = str(world["labels"]["user_id"].iloc[3])
        codes = [
            c.get(f"/v1/users/{user}/score", headers=HEADERS["investigator"]).status_code for _ in range(15)
        ]
        assert codes[:10] == [200] * 10 and codes[-1] == 429


def test_rings_list_detail_and_decision(client: TestClient, world: dict[str, Any]) -> None:
    first = client.get("/v1/rings?limit=3", headers=HEADERS["investigator"])
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["count"] >= 3 and len(page["data"]) == 3
    scores = [r["score"] for r in page["data"]]
    assert scores == sorted(scores, reverse=True)
    second = client.get(
        f"/v1/rings?limit=3&cursor={page['next_cursor']}", headers=HEADERS["investigator"]
    ).json()
    assert not {r["id"] for r in second["data"]} & {r["id"] for r in page["data"]}
    high = client.get("/v1/rings?min_score=0.5", headers=HEADERS["investigator"]).json()
    assert all(r["score"] >= 0.5 for r in high["data"])
    assert client.get("/v1/rings?cursor=%%%", headers=HEADERS["investigator"]).status_code == 422

    ring_id = page["data"][0]["id"]
    detail = client.get(f"/v1/rings/{ring_id}", headers=HEADERS["investigator"])
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert len(body["members"]) == body["size"] and body["reasons"] and body["edges"]
    member_ids = {m["id"] for m in body["members"]}
    assert {e["source"] for e in body["edges"]} <= member_ids
    labels = world["labels"].set_index("user_id")
    assert labels.loc[list(member_ids), "is_fraud"].mean() >= 0.5  # the top ring is mostly planted fraud
    masked = [n for n in body["nodes"] if n["label"] in ("Email", "Phone", "Document")]
    assert masked and all("*" in n["display"] or "…" in n["display"] for n in masked)
    assert client.get("/v1/rings/nope", headers=HEADERS["investigator"]).status_code == 404

    r = client.post(f"/v1/rings/{ring_id}/decision", json={"decision": "confirmed_fraud", "note": "checked docs"},
                    headers=HEADERS["investigator"])  # fmt: skip
    assert r.status_code == 201 and r.json()["members"] == body["size"]
    r = client.post(
        f"/v1/rings/{ring_id}/decision", json={"decision": "maybe"}, headers=HEADERS["investigator"]
    )
    assert r.status_code == 422
    assert (
        client.post(
            f"/v1/rings/{ring_id}/decision", json={"decision": "cleared"}, headers=HEADERS["onboarding"]
        ).status_code
        == 403
    )
    exported = client.app.state.graphrisk.decisions.labels()  # type: ignore[attr-defined]
    assert set(exported["user_id"]) == member_ids and (exported["is_fraud"] == 1).all()


@pytest.mark.slow
def test_fuzzed_requests_never_5xx(world: dict[str, Any], tmp_path: Path) -> None:
    """Schemathesis-generated requests (valid and invalid) for every operation of the OpenAPI
    schema, as an investigator and as onboarding: no route answers 5xx, except 503 where the
    store is declared unavailable.

    On an app of its own: schemathesis runs the app's lifespan, whose exit closes the store
    client, which the module's shared client still needs."""
    own = world["settings"].model_copy(update={"audit_url": f"sqlite:///{tmp_path / 'a.db'}"})
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(own))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    statuses: list[int] = []

    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            for headers in (HEADERS["investigator"], HEADERS["onboarding"]):
                response = case.call(headers=headers)
                statuses.append(response.status_code)
                assert response.status_code < 500 or response.status_code == 503, (
                    case.method, case.path, response.status_code, response.text[:300])  # fmt: skip

        fuzz()
    # Both well-formed and rejected requests were exercised.
    assert len(statuses) >= 4 * len(operations)
    assert any(code < 300 for code in statuses) and any(code == 422 for code in statuses)


def test_mule_ring_detail_names_its_transfers_and_cycles(client: TestClient, world: dict[str, Any]) -> None:
    state = client.app.state.graphrisk  # type: ignore[attr-defined]
    labels = world["labels"]
    mules = labels.loc[labels["typology"] == "mule_ring", "user_id"]
    ring_id = next(state.ring_of[u] for u in mules if u in state.ring_of)
    r = client.get(f"/v1/rings/{ring_id}", headers=HEADERS["investigator"])
    assert r.status_code == 200, r.text
    body = r.json()
    members = {m["id"] for m in body["members"]}
    ev = world["events"]
    internal = ev[ev["user_id"].isin(members) & ev["counterparty_id"].isin(members)]
    flow = nx.DiGraph(zip(internal["user_id"], internal["counterparty_id"], strict=True))
    has_cycle = any(len(c) >= 2 for c in nx.strongly_connected_components(flow))
    codes = {r["code"] for r in body["reasons"]}
    assert "internal_transfers" in codes
    assert ("transfer_cycle" in codes) == has_cycle


def test_an_applicant_sees_earlier_applicants_before_the_refresh_ingests_them(
    client: TestClient, world: dict[str, Any]
) -> None:
    """A device farm opening accounts within the hour: the store has none of them yet."""
    base = onboarding_of(world, str(world["labels"][world["labels"]["is_fraud"] == 0]["user_id"].iloc[1]))
    first = base | {"user_id": "farm-first", "device": {"id": "farm-device-recent-1"}, "ip": "198.51.100.23",
                    "email": "farm.one@example.org", "phone": "+447700900101",
                    "document": {"type": "passport", "number": "FARM000001", "issuing_country": "GB"},
                    "address": {"line1": "1 Recent Row", "city": "Leeds", "country": "GB"}}  # fmt: skip
    second = first | {"user_id": "farm-second", "email": "farm.two@example.org", "phone": "+447700900102",
                      "document": {"type": "passport", "number": "FARM000002", "issuing_country": "GB"}}  # fmt: skip
    a = client.post("/v1/score", json=first, headers=HEADERS["onboarding"]).json()
    b = client.post("/v1/score", json=second, headers=HEADERS["onboarding"]).json()
    assert a["linked_users"].get("USED_DEVICE", 0) == 0
    assert b["linked_users"]["USED_DEVICE"] == 1 and b["linked_users"]["USED_IP"] >= 1
    assert b["linked_users"].get("HAS_EMAIL", 0) == 0
    # A re-submission of the same applicant is not its own neighbour.
    again = client.post("/v1/score", json=second, headers=HEADERS["onboarding"]).json()
    assert again["linked_users"]["USED_DEVICE"] == 1
    # Only keyed hashes are kept for the pseudonymous identifiers.
    state = client.app.state.graphrisk  # type: ignore[attr-defined]
    with state.applications.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT rel, node FROM recent_applications").all()
    assert rows
    for rel, node in rows:
        assert "example.org" not in node and "FARM00000" not in node and "447700900" not in node, rel


def test_metrics_carry_the_last_monitoring_run(client: TestClient, world: dict[str, Any]) -> None:
    """The API's scrape includes the monitoring textfile (drift alarms), parsed as one valid exposition."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
    from prometheus_client.parser import text_string_to_metric_families

    from gnn.monitor.metrics import metrics_path

    path = metrics_path(world["settings"].data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    reg = CollectorRegistry()
    Gauge("graphrisk_monitor_alarms", "Alarms raised, per kind.", ["point", "kind"], registry=reg).labels(
        "refresh", "feature_psi"
    ).set(3)
    write_to_textfile(str(path), reg)
    try:
        text = client.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert "graphrisk_requests" in families  # the API's own
        (sample,) = families["graphrisk_monitor_alarms"].samples
        assert sample.labels == {"point": "refresh", "kind": "feature_psi"} and sample.value == 3
    finally:
        path.unlink()
    assert "graphrisk_monitor_alarms" not in client.get("/metrics").text
