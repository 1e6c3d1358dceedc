"""The investigator console's JSON routes (api/routes/console.py) on the API's test world:
roles, masking, one-hop expansion with its cap and "more" marker, queue pagination and filters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from api.console.handles import HandleError, Handles
from api.main import create_app
from api.routes.console import TYPOLOGIES
from graphrisk.graph_schema import PSEUDONYMOUS_LABELS
from graphrisk.store import GraphStore
from tests.api_fixtures import HEADERS, own_settings

torch.set_num_threads(1)
INV = HEADERS["investigator"]
# Raw identifier columns of an onboarding event (what must never reach an investigator).
RAW_COLUMNS = ("email", "phone", "ip", "document.number", "address.line1", "card_number")


@pytest.fixture(scope="module")
def client(world: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # A decision database of its own: this module records decisions.
    settings = own_settings(world, tmp_path_factory.mktemp("console"))
    with TestClient(create_app(settings)) as c:
        yield c


def test_handles_round_trip_and_refuse_other_scopes() -> None:
    h = Handles(b"a-test-key-of-enough-length")
    token = "0123456789abcdef0123456789abcdef"
    sealed = h.seal("key:aa|ring:r1", "Email", token)
    assert token not in sealed and sealed.startswith("h.")
    assert h.open("key:aa|ring:r1", sealed) == ("Email", token)
    assert h.seal("key:aa|ring:r1", "Email", token) == sealed  # stable within its scope
    assert h.seal("key:aa|ring:r2", "Email", token) != sealed  # unrelated in another
    for scope, handle in (("key:aa|ring:r2", sealed), ("key:bb|ring:r1", sealed), ("key:aa|ring:r1", sealed[:-3]),
                          ("key:aa|ring:r1", "h.!!"), ("key:aa|ring:r1", "u:x")):  # fmt: skip
        with pytest.raises(HandleError):
            h.open(scope, handle)
    with pytest.raises(HandleError):
        Handles(b"another-key-entirely-0000").open("key:aa|ring:r1", sealed)


def _top_ring(client: TestClient) -> dict[str, Any]:
    r = client.get("/v1/console/queue/rings?limit=1", headers=INV)
    assert r.status_code == 200, r.text
    return r.json()["data"][0]


def _data_routes(client: TestClient) -> list[str]:
    ring = _top_ring(client)
    user = client.get("/v1/console/queue/users?limit=1", headers=INV).json()["data"][0]["id"]
    return [
        "/v1/console/queue/rings",
        "/v1/console/queue/users",
        f"/v1/console/rings/{ring['id']}",
        f"/v1/console/users/{user}",
        f"/v1/console/expand?view=user:{user}&node=u:{user}",
    ]


def test_console_page_is_served_with_its_files(client: TestClient) -> None:
    page = client.get("/console")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css", "cytoscape.min.js"):
        asset = client.get(f"/console/static/{name}")
        assert asset.status_code == 200, name
    # The vendored Cytoscape.js keeps its MIT licence header.
    assert (
        "Permission is hereby granted, free of charge"
        in client.get("/console/static/cytoscape.min.js").text[:2000]
    )


def test_onboarding_key_cannot_open_console_data(client: TestClient) -> None:
    for path in _data_routes(client):
        assert client.get(path, headers=HEADERS["onboarding"]).status_code == 403, path
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=INV).status_code == 200, path
        assert client.get(path, headers=HEADERS["admin"]).status_code == 200, path


def test_ring_queue_pages_in_score_order_and_filters(client: TestClient, world: dict[str, Any]) -> None:
    rings = pd.read_parquet(world["settings"].data_dir / "rings" / "rings.parquet")
    live = rings[rings["status"] != "closed"]
    first = client.get("/v1/console/queue/rings?limit=500", headers=INV).json()
    assert first["count"] == len(live)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = "/v1/console/queue/rings?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(q, headers=INV).json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [r["id"] for r in seen] == [r["id"] for r in first["data"]]
    assert len({r["id"] for r in seen}) == len(live)
    scores = [r["score"] for r in seen]
    assert scores == sorted(scores, reverse=True)
    for r in seen:
        assert r["why"] and "\n" not in r["why"] and r["typology"] in TYPOLOGIES
        assert r["queue_status"] == "new" and r["decision"] is None
    size = sorted(r["size"] for r in seen)[len(seen) // 2]
    big = client.get(f"/v1/console/queue/rings?limit=500&min_size={size}", headers=INV).json()
    assert big["count"] == sum(r["size"] >= size for r in seen) and all(
        r["size"] >= size for r in big["data"]
    )
    typ = seen[0]["typology"]
    same = client.get(f"/v1/console/queue/rings?limit=500&typology={typ}", headers=INV).json()
    assert same["count"] == sum(r["typology"] == typ for r in seen)
    later = max(r["first_seen"] for r in seen) + 1
    assert client.get(f"/v1/console/queue/rings?first_seen_from={later}", headers=INV).json()["count"] == 0
    bad = client.get("/v1/console/queue/rings?typology=nonsense", headers=INV)
    assert bad.status_code == 422
    assert client.get("/v1/console/queue/rings?cursor=%%%", headers=INV).status_code == 422


def test_user_queue_holds_review_and_block_by_score(client: TestClient, world: dict[str, Any]) -> None:
    scores = pd.read_parquet(world["settings"].data_dir / "scores" / "user_scores.parquet")
    flagged = scores[scores["band"].isin(["review", "block"])]
    body = client.get("/v1/console/queue/users?limit=200", headers=INV).json()
    assert body["count"] == len(flagged) > 0
    got = [r["score"] for r in body["data"]]
    assert got == sorted(got, reverse=True)
    assert {r["band"] for r in body["data"]} <= {"review", "block"}
    assert all(r["why"].startswith(r["band"]) for r in body["data"])
    blocks = client.get("/v1/console/queue/users?band=block&limit=200", headers=INV).json()
    assert blocks["count"] == int((flagged["band"] == "block").sum())


def _ring_tokens_and_raw(
    world: dict[str, Any], ring_id: str, members: list[str]
) -> tuple[set[str], set[str]]:
    """The pseudonymous tokens of the ring members' identifiers and their raw values."""
    with GraphStore(world["settings"]) as store:
        rows = store.read("serving/console_ring_graph", id=ring_id, limit=5000)
    tokens = {str(r["node"]) for r in rows if r["label"] in {str(x) for x in PSEUDONYMOUS_LABELS}}
    ev = world["events"]
    mine = ev[ev["user_id"].isin(members)]
    raw = {str(v) for c in RAW_COLUMNS if c in mine for v in mine[c].dropna().unique() if len(str(v)) >= 6}
    return tokens, raw


def test_investigator_never_sees_a_token_or_raw_identifier(client: TestClient, world: dict[str, Any]) -> None:
    ring_id = _top_ring(client)["id"]
    ring = client.get(f"/v1/console/rings/{ring_id}", headers=INV)
    assert ring.status_code == 200, ring.text
    body = ring.json()
    members = [m["id"] for m in body["members"]]
    tokens, raw = _ring_tokens_and_raw(world, ring_id, members)
    assert tokens, "the ring has identifiers to hide"
    texts = [ring.text]
    identifiers = [n for n in body["nodes"] if n["id"].startswith("h.")]
    assert identifiers, "shared identifiers are drawn"
    for n in identifiers[:10]:
        assert "*" in n["display"] or "masked" in n["display"]
        r = client.get("/v1/console/expand", params={"view": f"ring:{ring_id}", "node": n["id"]}, headers=INV)
        assert r.status_code == 200, r.text
        texts.append(r.text)
    for m in members[:5]:
        texts.append(client.get(f"/v1/console/users/{m}", headers=INV).text)
        exp = client.get("/v1/console/expand", params={"view": f"ring:{ring_id}", "node": f"u:{m}", "cap": 100},
                         headers=INV)  # fmt: skip
        texts.append(exp.text)
    texts.append(client.get("/v1/console/queue/rings?limit=200", headers=INV).text)
    texts.append(client.get("/v1/console/queue/users?limit=200", headers=INV).text)
    blob = "\n".join(texts)
    leaked = [t for t in tokens if t in blob] + [v for v in raw if v in blob]
    assert not leaked, f"{len(leaked)} identifier values or tokens reached an investigator"


def test_handles_are_bound_to_their_view_and_caller(client: TestClient) -> None:
    rings = client.get("/v1/console/queue/rings?limit=2", headers=INV).json()["data"]
    a, b = rings[0]["id"], rings[1]["id"]
    node_a = next(
        n
        for n in client.get(f"/v1/console/rings/{a}", headers=INV).json()["nodes"]
        if n["id"].startswith("h.")
    )
    ok = client.get("/v1/console/expand", params={"view": f"ring:{a}", "node": node_a["id"]}, headers=INV)
    assert ok.status_code == 200
    # Another ring's view, another caller, a tampered handle: not a node there.
    elsewhere = client.get(
        "/v1/console/expand", params={"view": f"ring:{b}", "node": node_a["id"]}, headers=INV
    )
    assert elsewhere.status_code == 404
    other = client.get(
        "/v1/console/expand", params={"view": f"ring:{a}", "node": node_a["id"]}, headers=HEADERS["admin"]
    )
    assert other.status_code == 404
    tampered = node_a["id"][:-2] + ("AA" if not node_a["id"].endswith("AA") else "BB")
    bad = client.get("/v1/console/expand", params={"view": f"ring:{a}", "node": tampered}, headers=INV)
    assert bad.status_code == 404
    # The same identifier keeps its handle within a view (expansions merge into the drawing).
    again = next(
        n
        for n in client.get(f"/v1/console/rings/{a}", headers=INV).json()["nodes"]
        if n["display"] == node_a["display"]
    )
    assert again["id"] == node_a["id"]


def test_expansion_is_capped_with_a_more_marker(client: TestClient) -> None:
    ring_id = _top_ring(client)["id"]
    body = client.get(f"/v1/console/rings/{ring_id}", headers=INV).json()
    shared = max((n for n in body["nodes"] if n["id"].startswith("h.")), key=lambda n: n["members_sharing"])
    assert shared["members_sharing"] >= 2
    r = client.get("/v1/console/expand", params={"view": f"ring:{ring_id}", "node": shared["id"], "cap": 1},
                   headers=INV).json()  # fmt: skip
    assert r["total"] >= 2 and r["hidden"] == r["total"] - 1
    users = [n for n in r["nodes"] if n["label"] == "User"]
    more = [n for n in r["nodes"] if n["label"] == "More"]
    assert len(users) == 1 and len(more) == 1 and more[0]["hidden"] == r["hidden"]
    assert any(e["source"] == shared["id"] and e["target"] == more[0]["id"] for e in r["edges"])
    full = client.get("/v1/console/expand", params={"view": f"ring:{ring_id}", "node": shared["id"], "cap": 100},
                      headers=INV).json()  # fmt: skip
    if full["total"] <= 100:
        assert full["hidden"] == 0 and not [n for n in full["nodes"] if n["label"] == "More"]
        assert len([n for n in full["nodes"] if n["label"] == "User"]) == full["total"]
    # A member: its links, capped; every edge touches the expanded node or a more marker.
    member = body["members"][0]["id"]
    m = client.get("/v1/console/expand", params={"view": f"ring:{ring_id}", "node": f"u:{member}", "cap": 2},
                   headers=INV).json()  # fmt: skip
    assert m["node"] == f"u:{member}" and m["total"] >= 3 and m["hidden"] == m["total"] - 2
    assert all(f"u:{member}" in (e["source"], e["target"]) for e in m["edges"])
    assert client.get("/v1/console/expand", params={"view": f"ring:{ring_id}", "node": "x:whatever"},
                      headers=INV).status_code == 404  # fmt: skip
    assert client.get("/v1/console/expand", params={"view": "ring:no-such-ring", "node": f"u:{member}"},
                      headers=INV).status_code == 404  # fmt: skip
    assert client.get("/v1/console/expand", params={"view": f"ring:{ring_id}", "node": f"u:{member}", "cap": 0},
                      headers=INV).status_code == 422  # fmt: skip


def test_ring_view_graph_timeline_lineage_and_scores(client: TestClient, world: dict[str, Any]) -> None:
    ring = _top_ring(client)
    body = client.get(f"/v1/console/rings/{ring['id']}", headers=INV).json()
    ids = {n["id"] for n in body["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in body["edges"])
    members = {f"u:{m['id']}" for m in body["members"]}
    assert members <= ids and len(members) == body["size"]
    assert all(m["score"] is not None for m in body["members"])
    assert body["edges"] and all(e["first_seen"] for e in body["edges"])
    times = [e["at"] for e in body["timeline"]]
    assert times == sorted(times) and any(e["kind"] == "ring" for e in body["timeline"])
    assert isinstance(body["parents"], list) and isinstance(body["successors"], list)
    assert body["why"] == ring["why"]
    # Transfers between members carry amounts; shared nodes say how many members share them.
    for e in body["edges"]:
        if e["type"] == "TRANSFERRED_TO":
            assert e["amount"] is not None and e["source"] in members and e["target"] in members
    assert all(n["members_sharing"] >= 2 for n in body["nodes"] if not n["member"])
    assert client.get("/v1/console/rings/nope", headers=INV).status_code == 404


def test_user_view_rings_and_link_graph(client: TestClient) -> None:
    ring = _top_ring(client)
    member = client.get(f"/v1/console/rings/{ring['id']}", headers=INV).json()["members"][0]["id"]
    body = client.get(f"/v1/console/users/{member}", headers=INV).json()
    assert body["band"] in ("allow", "review", "block") and 0 <= body["score"] <= 1
    assert ring["id"] in {r["id"] for r in body["rings"]}
    ids = {n["id"] for n in body["nodes"]}
    assert f"u:{member}" in ids and all(e["source"] in ids and e["target"] in ids for e in body["edges"])
    assert client.get("/v1/console/users/nobody-here", headers=INV).status_code == 404


def test_decided_ring_leaves_the_new_queue(client: TestClient) -> None:
    rings = client.get("/v1/console/queue/rings?limit=5", headers=INV).json()["data"]
    ring_id = rings[-1]["id"]
    before = client.get("/v1/console/queue/rings?status=new&limit=500", headers=INV).json()["count"]
    r = client.post(f"/v1/rings/{ring_id}/decision", json={"decision": "confirmed_fraud", "note": "api test"},
                    headers=INV)  # fmt: skip
    assert r.status_code == 201, r.text
    decided = client.get("/v1/console/queue/rings?status=decided&limit=500", headers=INV).json()
    assert [x["id"] for x in decided["data"]] == [ring_id]
    assert decided["data"][0]["decision"] == "confirmed_fraud"
    assert (
        client.get("/v1/console/queue/rings?status=new&limit=500", headers=INV).json()["count"] == before - 1
    )
    view = client.get(f"/v1/console/rings/{ring_id}", headers=INV).json()
    assert (
        view["decisions"][-1]["decision"] == "confirmed_fraud" and view["decisions"][-1]["note"] == "api test"
    )
    assert any(e["kind"] == "decision" for e in view["timeline"])
    # A ring decision covers its members: they leave the user queue's "new" status.
    members = {m["id"] for m in view["members"]}
    users = client.get("/v1/console/queue/users?status=decided&limit=200", headers=INV).json()["data"]
    assert {u["id"] for u in users} <= members


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


def test_responses_are_plain_json_without_nan(client: TestClient) -> None:
    ring_id = _top_ring(client)["id"]
    for path in ("/v1/console/queue/rings", f"/v1/console/rings/{ring_id}"):
        json.loads(client.get(path, headers=INV).text, parse_constant=_no_constant)
