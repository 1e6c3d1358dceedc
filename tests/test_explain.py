"""Explanations that tell the truth: the feature registry's texts, reasons only for what raises
a score above a floor, evidence that counts only confirmed fraud, and answers that do not depend
on the order the store returns links in."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.main import create_app
from api.routes.users import build_evidence, evidence_reasons
from gnn.explain import Contribution, top_reasons
from gnn.feature_registry import FAMILIES, describe, reason_text
from gnn.online import APPLICANT_IDENTIFIERS, store_links
from graphrisk.clean_event import RepeatedIdentifiers, clean_event
from graphrisk.events import parse_event
from graphrisk.pseudonymise import Pseudonymiser
from graphrisk.store import GraphStore
from tests.api_fixtures import HEADERS, onboarding_of, own_settings

GARBLED = re.compile(r"\b(mean|max|min|std|sum|via|rev|hop2|deg)'s\b|_|\b[A-Z]+_[A-Z]+\b")


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("rev_USED_IP_via_mean_account_age_h", 3.0,
         "the other users of its IP addresses have an average account age in hours of 3"),
        ("rev_USED_IP_mean_IP.0", 57.0, "average number of users of its IP addresses: 57"),
        ("rev_USED_DEVICE_deg", 2.0, "uses 2 devices"),
        ("shared_max_has_document", 4.0, "shares one identity document with 4 other users"),
        ("velocity_1h_used_device", 6.0, "6 users linked to the same device in the hour before it"),
        ("rev_HAS_PHONE_via_train_fraud", 2.0,
         "users labelled fraud in training among the other users of its phone numbers: 2"),
        ("TRANSFERRED_TO_h1_train_rate", 0.25, "smoothed share labelled fraud in training among the users who "
         "sent it money: 25%"),
        ("rev_TRANSFERRED_TO_deg", 3.0, "sent money to 3 users"),
        ("hours_to_first_payment", float("nan"), "no payment yet"),
        ("amount_transfer_in", 1234.0, "received 1,234 in transfers"),
    ],
)  # fmt: skip
def test_reason_texts(feature: str, value: float, text: str) -> None:
    assert reason_text(feature, value) == text


def test_neighbour_averages_never_claim_confirmed_fraud() -> None:
    for rel in ("USED_IP", "USED_DEVICE", "HAS_PHONE", "HAS_DOCUMENT", "LIVES_AT", "HAS_EMAIL", "USED_CARD"):
        for own in ("account_age_h", "events", "shared_max_used_ip", "velocity_24h_used_device"):
            for feature in (f"rev_{rel}_via_mean_{own}", f"rev_{rel}_mean_{own}"):
                d = describe(feature)
                assert d is not None and not d.reads_labels, feature
                text = reason_text(feature, 1.0)
                assert "fraud" not in text and not GARBLED.search(text), text
    for feature in ("rev_USED_IP_via_train_fraud", "TRANSFERRED_TO_h2_train_count", "device_hist_train_rate"):
        d = describe(feature)
        assert d is not None and d.reads_labels and "confirmed" not in reason_text(feature, 1.0)


def test_every_family_has_a_distinct_name() -> None:
    names = [f.name for f in FAMILIES]
    assert len(names) == len(set(names))


def test_every_served_feature_is_in_the_registry(world: dict[str, Any], tmp_path: Path) -> None:
    """The production model's columns and the online star's all have a family, and words that
    are not the raw name."""
    with TestClient(create_app(own_settings(world, tmp_path))) as client:
        snap = client.app.state.graphrisk.snapshot  # type: ignore[attr-defined]
        names = set(snap.applicant_scorer.star.names) | set(snap.applicant_scorer.feature_names)
    unknown = sorted(n for n in names if describe(n) is None)
    assert not unknown, unknown[:20]
    for name in names:
        text = reason_text(name, 2.0)
        assert not GARBLED.search(text) and "confirmed" not in text, (name, text)


def test_only_upward_contributions_above_the_floor_are_reasons() -> None:
    contributions = [
        Contribution("shared_max_used_ip", 9.0, -1.2),
        Contribution("velocity_1h_used_device", 5.0, 0.8),
        Contribution("account_age_h", 2.0, 0.05),
        Contribution("rev_USED_IP_via_mean_events", 3.0, 0.3),
        Contribution("events", 1.0, 0.3),
    ]
    reasons = top_reasons(contributions, k=3, min_contribution=0.1)
    assert [code for code, _, _ in reasons] == [
        "velocity_1h_used_device",
        "events",
        "rev_USED_IP_via_mean_events",
    ]
    assert top_reasons(list(reversed(contributions)), k=3, min_contribution=0.1) == reasons
    assert top_reasons(contributions, min_contribution=1.0) == []


def _rows() -> list[dict[str, Any]]:
    return [
        {"rel": "USED_IP", "label": "IP", "node": "tok-ip", "masked": "203.0.113.*", "shared_with": 40,
         "others": ["u9", "u1"], "scanned": ["u9", "u1", "u2", "u3"]},
        {"rel": "HAS_PHONE", "label": "Phone", "node": "tok-ph", "masked": "+44*****123", "shared_with": 2,
         "others": ["u2", "u5"], "scanned": ["u2", "u5"]},
        {"rel": "USED_DEVICE", "label": "Device", "node": "dev-7", "masked": None, "shared_with": 2,
         "others": ["u6", "u7"], "scanned": ["u6", "u7"]},
        {"rel": "HAS_EMAIL", "label": "Email", "node": "tok-em", "masked": None, "shared_with": 1,
         "others": ["u8"], "scanned": ["u8"]},
        {"rel": "PAID", "label": "Merchant", "node": "m-1", "masked": None, "shared_with": 900,
         "others": ["u1"], "scanned": ["u1"]},
    ]  # fmt: skip


def test_evidence_names_masked_identifiers_and_counts_only_confirmed_fraud() -> None:
    evidence = build_evidence(_rows(), confirmed={"u2", "u3"}, reveal=False)
    assert [(e.relationship, e.identifier, e.shared_with, e.confirmed_fraud) for e in evidence] == [
        ("USED_IP", "203.0.113.*", 40, 2),
        ("HAS_PHONE", "+44*****123", 2, 1),
        ("USED_DEVICE", "dev-7", 2, 0),
        ("HAS_EMAIL", "an email address (value withheld)", 1, 0),
    ]
    assert evidence[0].others[:2] == ["u2", "u3"]  # confirmed first
    assert not any("tok-" in e.identifier for e in evidence)
    texts = [r.text for r in evidence_reasons(evidence)]
    assert texts == [
        "shares IP address 203.0.113.* with 40 other users, 2 of them confirmed fraud",
        "shares phone number +44*****123 with 2 other users, 1 of them confirmed fraud",
    ]
    assert build_evidence(_rows(), confirmed={"u2"}, reveal=True)[0].identifier == "tok-ip"


@given(st.randoms(use_true_random=False))
def test_evidence_does_not_depend_on_row_order(rnd: random.Random) -> None:
    rows = _rows()
    shuffled = [dict(r, scanned=rnd.sample(r["scanned"], len(r["scanned"]))) for r in rows]
    rnd.shuffle(shuffled)
    assert build_evidence(shuffled, {"u2", "u7"}, False) == build_evidence(rows, {"u2", "u7"}, False)


def test_a_rescored_explanation_does_not_depend_on_link_order(world: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(own_settings(world, tmp_path))) as client:
        state = client.app.state.graphrisk  # type: ignore[attr-defined]
        scorer = state.snapshot.applicant_scorer
        rels = [r.value for r in APPLICANT_IDENTIFIERS]
        user, links = next(
            (u, rows) for u in sorted(scorer.user_features.index)[:400]
            if len(rows := state.store.read("serving/user_links", id=u, rels=rels, limit=500)) >= 4
            and len({r["node"] for r in rows}) >= 2
        )  # fmt: skip
    now = 1_900_000_000_000
    expected = scorer.score_links(user, links, now)

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.permutations(links))
    def same(order: list[dict[str, Any]]) -> None:
        got = scorer.score_links(user, order, now)
        assert got.score == expected.score and got.reasons == expected.reasons
        assert got.contributions == expected.contributions and got.linked_users == expected.linked_users

    same()


def test_a_low_score_gets_no_reasons(world: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(own_settings(world, tmp_path))) as client:
        state = client.app.state.graphrisk  # type: ignore[attr-defined]
        low = min(state.scores, key=lambda u: state.scores[u].score)
        body = client.get(f"/v1/users/{low}/explanation", headers=HEADERS["investigator"]).json()
        assert body["score"] < state.settings.explain_min_score
        assert [r["code"] for r in body["reasons"]] == ["low_score"]
        assert "nothing here points to fraud" in body["reasons"][0]["text"]
        high = max(state.input_row, key=lambda u: state.scores[u].score)
        body = client.get(f"/v1/users/{high}/explanation", headers=HEADERS["investigator"]).json()
        weights = [r["weight"] for r in body["reasons"] if r["weight"] is not None]
        assert weights and all(w >= state.settings.explain_min_contribution for w in weights)
        assert not any(
            "confirmed fraud" in r["text"] for r in body["reasons"] if r["code"].startswith("rev_")
        )


def test_a_busy_identifier_does_not_crowd_out_the_others(world: dict[str, Any]) -> None:
    """Per-identifier limits: with room for one user per identifier, every identifier the
    applicant shares still answers, with its true number of users."""
    settings_ = world["settings"]
    ids = RepeatedIdentifiers(Pseudonymiser(settings_.pseudonymisation_key.get_secret_value().encode()))
    labels = world["labels"]
    with GraphStore(settings_) as store:
        for user in labels["user_id"].iloc[:200]:
            request = onboarding_of(world, str(user)) | {"user_id": "crowd-check"}
            event = parse_event(
                {**request, "event_id": "e-crowd", "event_type": "onboarding", "time": 1_800_000_000_000}
            )
            clean = clean_event(event, ids, settings_.fx_rates)
            full = store_links(store, clean, 100_000)
            counts: dict[str, int] = {}
            for r in full:
                counts[r["rel"]] = counts.get(r["rel"], 0) + 1
            if len(counts) >= 3 and max(counts.values()) >= 3:
                break
        else:
            pytest.skip("no applicant shares three identifiers with one of them busy")
        capped = store_links(store, clean, 1)
    assert {r["rel"] for r in capped} == set(counts)
    assert {r["rel"]: r["rel_users"] for r in capped} == counts
    assert np.all([r["rel_users"] == counts[r["rel"]] for r in full])
