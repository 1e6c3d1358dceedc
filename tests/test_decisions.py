"""Investigators' decisions: the store's statuses and labels, the API routes, and decided labels
reaching the next model's training (``graphrisk train`` merges them; no export step)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from api.auth import KeyRing, Role
from api.decisions import DecisionStore, merge_labels
from api.main import create_app
from gnn.registry import ModelRegistry
from graphrisk.cli import app as cli_app
from graphrisk.config import ApiKey, load_settings
from tests.api_fixtures import KEYS, own_settings

NAMED_KEYS: dict[str, Any] = {
    **KEYS,
    "ada-key-0123456789": {"role": "investigator", "name": "Ada Okafor"},
}
ADA = {"X-API-Key": "ada-key-0123456789"}
ONBOARDING = {"X-API-Key": "onb-key-0123456789"}


def _store(tmp_path: Path) -> DecisionStore:
    return DecisionStore(f"sqlite:///{tmp_path / 'decisions.db'}")


def test_statuses_aliases_and_label_precedence(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        assert store.status_of_rings(["r1"]) == {"r1": "new"}
        store.record("ring", "r1", "needs_review", "", "Ada", "key:1", ["u1", "u2"], ring_id="r1")
        assert store.status_of_rings(["r1", "r2"]) == {"r1": "open", "r2": "new"}
        assert store.status_of_users(["u1", "u3"]) == {"u1": "open", "u3": "new"}
        assert store.labels().empty  # needs_info labels nobody

        ring = store.record("ring", "r1", "confirmed_fraud", "docs forged", "Ada", "key:1", ["u1", "u2"],
                            ring_id="r1", typology="device_farm")  # fmt: skip
        assert ring.decision == "confirmed_fraud" and ring.users == 2
        store.record("ring", "r2", "cleared", "family", "Ben", "key:2", ["u2", "u3"], ring_id="r2")
        store.record("user", "u1", "false_positive", "known customer", "Ben", "key:2", ["u1"])
        assert store.status_of_rings() == {"r1": "decided", "r2": "decided"}

        labels = store.labels().set_index("user_id")
        # u1: its own decision outranks its ring's; u2: fraud in any ring wins; u3: cleared.
        assert labels["is_fraud"].to_dict() == {"u1": 0, "u2": 1, "u3": 0}
        assert labels.loc["u2", "ring_id"] == "r1" and labels.loc["u2", "typology"] == "device_farm"

        # A later needs_info on a ring withdraws that ring's labels.
        store.record("ring", "r1", "needs_info", "re-opened", "Ada", "key:1", ["u1", "u2"], ring_id="r1")
        assert store.status_of_rings(["r1"]) == {"r1": "open"}
        assert store.labels().set_index("user_id")["is_fraud"].to_dict() == {"u1": 0, "u2": 0, "u3": 0}

        assert [d.subject_id for d in store.history(user_id="u2")] == ["r1", "r2", "r1", "r1"]
        assert [d.id for d in store.history(ring_id="r1", limit=1)] == [5]
        with pytest.raises(ValueError, match="unknown decision"):
            store.record("ring", "r1", "maybe", "", "Ada", "key:1", [])
    finally:
        store.close()


def test_the_first_schemas_decisions_are_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = DecisionStore(url)
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE ring_decisions (id INTEGER PRIMARY KEY, at_ms BIGINT, ring_id TEXT, "
                          "decision TEXT, note TEXT, actor TEXT, members TEXT)"))  # fmt: skip
        conn.execute(text("INSERT INTO ring_decisions VALUES (1, 5, 'r9', 'cleared', '', 'key:ab', 'a,b')"))
    store.close()
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM investigator_decision_users"))
        conn.execute(text("DELETE FROM investigator_decisions"))
    again = DecisionStore(url)
    try:
        assert again.labels().set_index("user_id")["is_fraud"].to_dict() == {"a": 0, "b": 0}
        assert again.history()[0].decision == "false_positive"
    finally:
        again.close()


def test_merge_keeps_earlier_labels_and_adds_decided_ones() -> None:
    base = pd.DataFrame(
        {"user_id": ["a", "b", "c"], "is_fraud": [0, 1, 0], "typology": [None, "mule_ring", None]}
    )
    decided = pd.DataFrame({"user_id": ["b", "c", "z"], "is_fraud": [0, 1, 1], "ring_id": [None, "r1", "r1"],
                            "typology": [None, "device_farm", "device_farm"]})  # fmt: skip
    merged, counts = merge_labels(base, decided)
    by = merged.set_index("user_id")
    assert by["is_fraud"].to_dict() == {"a": 0, "b": 0, "c": 1, "z": 1}
    assert by.loc["b", "typology"] == "mule_ring"  # a user decision has no typology: the earlier one stays
    assert by.loc["c", "typology"] == "device_farm" and by.loc["z", "ring_id"] == "r1"
    assert counts == {"decided": 3, "changed": 2, "added": 1}
    assert merge_labels(base, decided.iloc[:0])[0].equals(base)


def test_keys_name_their_holders_in_the_old_and_new_formats() -> None:
    ring = KeyRing(
        {"k1": "investigator", "k2": ApiKey(role="admin", name="Root"), "k3": {"role": "onboarding"}}
    )
    one, two, three = ring.lookup("k1"), ring.lookup("k2"), ring.lookup("k3")
    assert one is not None and one.holder is None and one.investigator.startswith("key:")
    assert two is not None and two.role is Role.ADMIN and two.investigator == "Root"
    assert three is not None and three.role is Role.ONBOARDING
    settings = load_settings(environment="test", api_keys={"k": {"role": "investigator", "name": "Ada"}})
    assert settings.public_view()["api_keys"] == {
        next(iter(settings.public_view()["api_keys"])): {"role": "investigator", "name": "Ada"}
    }


def test_decisions_through_the_api(world: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(own_settings(world, tmp_path, api_keys=NAMED_KEYS))) as client:
        state = client.app.state.graphrisk  # type: ignore[attr-defined]
        ring = state.ring_summaries[0]
        members = sorted(state.members_of(ring.id))
        r = client.post(f"/v1/rings/{ring.id}/decision",
                        json={"decision": "confirmed_fraud", "note": "same device", "typology": "device_farm"},
                        headers=ADA)  # fmt: skip
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["investigator"] == "Ada Okafor" and body["members"] == len(members)
        assert body["typology"] == "device_farm" and body["status"] == "decided" and body["subject"] == "ring"

        user = next(u for u in state.scores if u not in state.ring_of)
        r = client.post(f"/v1/users/{user}/decision", json={"decision": "needs_review", "note": "ask for ID"},
                        headers=ADA)  # fmt: skip
        assert r.status_code == 201 and r.json()["decision"] == "needs_info" and r.json()["status"] == "open"
        assert client.post("/v1/users/nobody/decision", json={"decision": "false_positive"},
                           headers=ADA).status_code == 404  # fmt: skip
        assert client.post(f"/v1/users/{user}/decision", json={"decision": "false_positive"},
                           headers=ONBOARDING).status_code == 403  # fmt: skip

        listed = client.get("/v1/decisions", params={"user_id": members[0]}, headers=ADA).json()
        assert [d["subject_id"] for d in listed["data"]] == [ring.id]
        page = client.get("/v1/decisions", params={"limit": 1}, headers=ADA).json()
        assert page["data"][0]["subject_id"] == user and page["next_cursor"]
        rest = client.get(
            "/v1/decisions", params={"limit": 1, "cursor": page["next_cursor"]}, headers=ADA
        ).json()
        assert rest["data"][0]["subject_id"] == ring.id and rest["next_cursor"] is None

        assert state.decisions.status_of_rings([ring.id]) == {ring.id: "decided"}
        assert state.decisions.status_of_users([user, members[0]]) == {user: "open", members[0]: "decided"}
        state.audit.flush()
        entries = [e for e in state.audit.entries() if e["action"] in ("ring_decision", "user_decision")]
        assert len(entries) == 2 and all("Ada Okafor" in e["detail"] for e in entries)


@pytest.mark.slow
def test_a_decision_reaches_the_next_models_training_labels(world: dict[str, Any], tmp_path: Path) -> None:
    """Decide through the API, then `graphrisk train` (no export): the new version trained on
    the decided labels, merged with the label file's."""
    settings = own_settings(world, tmp_path, api_keys=NAMED_KEYS)
    labels = world["labels"]
    with TestClient(create_app(settings)) as client:
        state = client.app.state.graphrisk  # type: ignore[attr-defined]
        honest_ring = next(
            r.id for r in state.ring_summaries
            if labels.set_index("user_id").loc[state.members_of(r.id), "is_fraud"].eq(0).any()
        )  # fmt: skip
        members = set(state.members_of(honest_ring))
        cleared = str(
            labels.loc[(labels["is_fraud"] == 1) & ~labels["user_id"].isin(members), "user_id"].iloc[0]
        )
        assert client.post(f"/v1/rings/{honest_ring}/decision", headers=ADA,
                           json={"decision": "confirmed_fraud", "typology": "synthetic_id"}).status_code == 201  # fmt: skip
        assert client.post(f"/v1/users/{cleared}/decision", headers=ADA,
                           json={"decision": "false_positive", "note": "verified in branch"}).status_code == 201  # fmt: skip

    data_dir = tmp_path / "var"
    shutil.copytree(world["settings"].snapshot_dir, data_dir / "snapshot")
    labels_file = tmp_path / "labels.parquet"
    labels.to_parquet(labels_file, index=False)
    env = {"GRAPHRISK_ENVIRONMENT": "test", "GRAPHRISK_DATA_DIR": str(data_dir),
           "GRAPHRISK_AUDIT_URL": settings.audit_db_url}  # fmt: skip
    res = CliRunner().invoke(cli_app, ["train", "--labels", str(labels_file)], env=env)
    assert res.exit_code == 0, res.output

    model, meta = ModelRegistry(data_dir / "models").load()
    sources = meta.notes["labels"]["decisions"]
    changed = int((labels.set_index("user_id").loc[sorted(members), "is_fraud"] == 0).sum()) + 1
    assert sources == {"decided": len(members) + 1, "changed": changed, "added": 0}
    trained = model.train_labels.set_index("user_id")["is_fraud"]
    decided = {**dict.fromkeys(members, 1), cleared: 0}
    seen = {u: int(trained[u]) for u in decided if u in trained.index}
    assert seen and seen == {u: decided[u] for u in seen}
    report = json.loads(sorted((data_dir / "reports").glob("train*.json"))[-1].read_text())
    assert report["labels"]["decisions"]["decided"] == len(members) + 1
