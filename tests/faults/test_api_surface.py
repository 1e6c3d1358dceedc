"""What the API shows to whom (issue 12, item 9).

- Failed authentication is limited per client address (429 with Retry-After) and audited.
- /readyz tells an anonymous caller ready or not; what it checked needs an admin key.
- 503 bodies carry no driver messages (hosts, ports, users, statements).
- Investigators get no pseudonymous identifier tokens in ring detail: handles that mean
  something within one response, and the masked display.
- The OpenAPI document declares the error statuses each route can answer, and hand-made 422
  bodies have FastAPI's shape.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from graphrisk.store import GraphStore
from tests.api_fixtures import HEADERS, onboarding_of, own_settings

TOKEN_LABELS = {"Email", "Phone", "Document", "Address", "IP", "Card"}


def test_failed_authentication_is_limited_per_address_and_audited(
    world: dict[str, Any], tmp_path: Path
) -> None:
    app = create_app(own_settings(world, tmp_path, auth_failures_per_minute=30))  # bursts of 10
    user = str(world["labels"]["user_id"].iloc[3])
    with TestClient(app, client=("198.51.100.7", 40000)) as attacker:
        codes = [attacker.get(f"/v1/users/{user}/score", headers={"X-API-Key": f"guess-{i}"}).status_code
                 for i in range(10)]  # fmt: skip
        assert codes == [401] * 10
        blocked = attacker.get(f"/v1/users/{user}/score", headers={"X-API-Key": "guess-10"})
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
        # While blocked, even a right key learns nothing from this address.
        assert attacker.get(f"/v1/users/{user}/score", headers=HEADERS["onboarding"]).status_code == 429
        assert attacker.get("/v1/rings").status_code == 429  # no key is a failure too
        with TestClient(app, client=("203.0.113.20", 40001)) as other:
            assert other.get(f"/v1/users/{user}/score", headers=HEADERS["onboarding"]).status_code == 200
            assert other.get(f"/v1/users/{user}/score").status_code == 401
        audit = app.state.graphrisk.audit
        audit.flush(10)
        failed = [e for e in audit.entries() if e["action"] == "auth_failed"]
    assert len(failed) == 11  # ten guesses from one address, one missing key from the other
    assert sum('"198.51.100.7"' in e["detail"] for e in failed) == 10
    assert all(e["role"] == "anonymous" and "guess" not in e["detail"] for e in failed)  # keys are not kept


def test_readyz_details_need_a_role(world: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(own_settings(world, tmp_path))) as client:
        for headers in ({}, HEADERS["investigator"], HEADERS["onboarding"]):
            r = client.get("/readyz", headers=headers)
            assert r.status_code == 200 and r.json() == {"status": "ok", "detail": {}}, r.text
        r = client.get("/readyz", headers=HEADERS["admin"])
        assert r.status_code == 200 and r.json()["detail"]["store"] == "ok"
        assert r.json()["detail"]["model_version"] == world["version"]
        assert client.get("/readyz", headers={"X-API-Key": "wrong"}).status_code == 401


def test_503_bodies_carry_no_driver_messages(world: dict[str, Any], tmp_path: Path) -> None:
    settings = own_settings(world, tmp_path, store_uri="bolt://127.0.0.1:9", store_timeout_s=1.0)
    with TestClient(create_app(settings)) as client:
        state = client.app.state.graphrisk  # type: ignore[attr-defined]
        user = sorted(state.input_row)[0]
        ring = state.ring_summaries[0].id
        responses = [
            client.get(f"/v1/users/{user}/explanation", headers=HEADERS["investigator"]),
            client.get(f"/v1/rings/{ring}", headers=HEADERS["investigator"]),
            client.get("/readyz", headers=HEADERS["admin"]),
        ]
        state.store_ok_at = 1e18  # the store "looks" up: the new applicant reaches the driver
        responses.append(
            client.post(
                "/v1/score",
                json=onboarding_of(world, user) | {"user_id": "brand-new-503"},
                headers=HEADERS["onboarding"],
            )
        )
    for r in responses:
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
        text = r.text.lower()
        for leak in ("127.0.0.1", ":9", "bolt", "neo4j", "errno", "refused", "serviceunavailable", "cypher"):
            assert leak not in text, (leak, r.text)


def test_ring_detail_gives_investigators_no_identifier_tokens(world: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(own_settings(world, tmp_path))) as client:
        state = client.app.state.graphrisk  # type: ignore[attr-defined]
        ring = state.ring_summaries[0].id
        inv = client.get(f"/v1/rings/{ring}", headers=HEADERS["investigator"])
        adm = client.get(f"/v1/rings/{ring}", headers=HEADERS["admin"])
    assert inv.status_code == 200 and adm.status_code == 200
    with GraphStore(world["settings"]) as store:
        rows = store.read("rings/ring_subgraph", id=ring, limit=5000)
    tokens = {str(r["node"]) for r in rows if r["label"] in TOKEN_LABELS}
    assert tokens
    assert not [t for t in tokens if t in inv.text]
    body = inv.json()
    hidden = [n for n in body["nodes"] if n["label"] in TOKEN_LABELS]
    assert hidden and all(re.fullmatch(r"n\d+", n["id"]) for n in hidden)
    assert all("*" in n["display"] or "…" in n["display"] for n in hidden)
    assert {e["target"] for e in body["edges"]} <= {n["id"] for n in body["nodes"]}  # edges use the handles
    # The same evidence, and the same shape, as an admin sees it with the tokens.
    assert len(body["nodes"]) == len(adm.json()["nodes"]) and len(body["edges"]) == len(adm.json()["edges"])
    assert tokens <= {n["id"] for n in adm.json()["nodes"]}


EXPECTED = {
    ("post", "/v1/score"): {400, 401, 403, 413, 422, 429, 503},
    ("get", "/v1/users/{user_id}/score"): {401, 403, 404, 422, 429, 503},
    ("get", "/v1/users/{user_id}/explanation"): {401, 403, 404, 422, 429, 503},
    ("get", "/v1/rings"): {401, 403, 422, 429, 503},
    ("get", "/v1/rings/{ring_id}"): {401, 403, 404, 422, 429, 503},
    ("post", "/v1/rings/{ring_id}/decision"): {400, 401, 403, 404, 413, 422, 429, 503},
    ("get", "/readyz"): {401, 429, 503},
    ("post", "/v1/users/{user_id}/decision"): {400, 401, 403, 404, 413, 422, 429, 503},
    ("get", "/v1/decisions"): {401, 403, 422, 429, 503},
    ("post", "/v1/admin/reload"): {401, 403, 422, 429, 503},
}


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_openapi_declares_each_routes_error_responses(
    world: dict[str, Any], tmp_path: Path, method: str, path: str
) -> None:
    doc = create_app(own_settings(world, tmp_path)).openapi()
    operation = doc["paths"][path][method]
    declared = {int(code) for code in operation["responses"] if code != "default"} - {200, 201}
    assert declared == EXPECTED[(method, path)]
    for code in (429, 503):
        if code in declared:
            assert "Retry-After" in operation["responses"][str(code)].get("headers", {}), code
    schema = operation["responses"]["422" if 422 in declared else "401"]["content"]["application/json"][
        "schema"
    ]
    assert "$ref" in schema


def test_hand_made_422_bodies_have_fastapis_shape(world: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(own_settings(world, tmp_path))) as client:
        cursor = client.get("/v1/rings?cursor=%%%", headers=HEADERS["investigator"])
        bad_ip = client.post("/v1/score", json=onboarding_of(world, str(world["labels"]["user_id"].iloc[3]))
                             | {"user_id": "shape-check", "ip": "999.1.2.3"}, headers=HEADERS["onboarding"])  # fmt: skip
    for r in (cursor, bad_ip):
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert isinstance(detail, list) and detail
        assert all(
            set(issue) == {"loc", "msg", "type"} and isinstance(issue["loc"], list) for issue in detail
        )
    assert bad_ip.json()["detail"][0]["loc"] == ["body", "ip"] and "999.1.2.3" not in bad_ip.text
