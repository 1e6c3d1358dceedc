"""``graphrisk train --events``: decision-point models trained from the history, then served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gnn.backtest import BacktestConfig
from gnn.decision_training import DecisionScorer, train_decision_point_models
from gnn.online import ApplicantScorer
from gnn.registry import ModelRegistry
from gnn.scoring import score_users
from graphrisk.clean_event import RepeatedIdentifiers
from graphrisk.config import Settings
from graphrisk.events import parse_event
from graphrisk.pseudonymise import Pseudonymiser
from graphrisk.store import GraphStore
from graphrisk.synthetic.generator import generate
from pipelines.event_log import read_event_log
from pipelines.read import read_records
from pipelines.refresh import discover_partitions, refresh

torch.set_num_threads(1)


@pytest.mark.slow
def test_decision_point_models_serve_users_and_applicants(
    tmp_path: Path, store: GraphStore, settings: Settings
) -> None:
    generate(tmp_path / "w", users=1500, seed=37, days=5)
    events = tmp_path / "w" / "events"
    labels = pd.read_parquet(tmp_path / "w" / "labels" / "users.parquet")
    refresh(settings, store, events)
    log = read_event_log(events, [p.path for p in discover_partitions(events)], settings)
    registry = ModelRegistry(settings.data_dir / "models")
    meta, report = train_decision_point_models(log, labels, registry, BacktestConfig(label_delay_h=12))
    registry.promote(meta.version, force=True)
    model, _ = registry.load()
    assert isinstance(model.scorer, DecisionScorer) and model.scorer.point == "refresh"
    assert (
        isinstance(model.for_applicants.scorer, DecisionScorer)
        and model.for_applicants.scorer.point == "onboarding"
    )
    assert {m["point"] for m in report["models"]} == {"onboarding", "refresh"}
    # Only labels known at the cut-off were read.
    known = set(model.train_labels["user_id"])
    assert 0 < len(known) < len(labels)

    # The behaviour model scores the snapshot's users, and keeps explainable rows.
    scored = score_users(settings.snapshot_dir, settings.data_dir / "scores", registry, store)
    assert scored.users > 1000
    table = pd.read_parquet(settings.data_dir / "scores" / "user_scores.parquet")
    y = table["id"].map(labels.set_index("user_id")["is_fraud"])
    assert table.loc[y == 1, "score"].mean() > table.loc[y == 0, "score"].mean()

    # The onboarding model scores an applicant re-using a device-farm member's identifiers.
    feats = pd.read_parquet(settings.data_dir / "scores" / "user_features.parquet").set_index("id")
    ids = RepeatedIdentifiers(Pseudonymiser(settings.pseudonymisation_key.get_secret_value().encode()))
    scorer = ApplicantScorer(model.for_applicants, feats, ids, settings.fx_rates)
    assert scorer.fast
    farm = labels.loc[labels["typology"] == "device_farm", "user_id"].iloc[0]
    record = next(
        r.record for p in discover_partitions(events) for r in read_records(events, p.path)
        if r.record and r.record.get("user_id") == farm and r.record.get("event_type") == "onboarding"
    )  # fmt: skip
    nested = record | {"user_id": "applicant-x", "event_id": "e-applicant-x"}
    result = scorer.score(store, parse_event(nested), now_ms=int(log.clean.column("time")[-1].as_py()) + 1)
    assert 0.0 <= result.score <= 1.0 and result.linked_users.get("USED_DEVICE", 0) >= 1
    assert np.isfinite(result.raw_score)
