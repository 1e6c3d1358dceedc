"""The replay trains only on the past and reports every decision point, typology and ring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gnn.backtest import (
    BacktestConfig,
    DecisionRows,
    after_second_member,
    backtest_report,
    fit_point_models,
    ring_milestones,
    run_backtest,
)
from gnn.backtest_plots import write_plots
from gnn.decision_models import HOUR_MS, NotEnoughLabelsError, fit_decision_model
from gnn.models.base import FeatureOptions
from graphrisk.config import load_settings
from graphrisk.synthetic.generator import generate
from pipelines.event_log import EventLog, read_event_log
from pipelines.refresh import discover_partitions

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[EventLog, pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("bt")
    generate(out, users=1500, seed=31, days=5)
    events = out / "events"
    log = read_event_log(events, [p.path for p in discover_partitions(events)], load_settings())
    return log, pd.read_parquet(out / "labels" / "users.parquet"), out


@pytest.mark.slow
def test_replay_scores_each_decision_with_a_model_of_the_past(
    replayed: tuple[EventLog, pd.DataFrame, Path], tmp_path: Path
) -> None:
    log, labels, _ = replayed
    # A world this small has too few application-fraud rings for an onboarding model of its own,
    # so every fraud label trains it here (the label scope has its own test below).
    cfg = BacktestConfig(train_hours=60, retrain_every_h=24, label_delay_h=12, refresh_every_h=3,
                         post_application_typologies=())  # fmt: skip
    result = run_backtest(log, labels, cfg)
    onb = result.onboarding
    assert len(onb) > 100
    # Every applicant was scored by a model fitted before its application.
    assert (onb["model_cutoff"] <= onb["time"]).all()
    assert (onb["time"] >= result.first_cutoff).all()
    fits = [m for m in result.models if m["point"] in ("onboarding", "refresh") and "error" not in m]
    assert {m["point"] for m in fits} == {"onboarding", "refresh"}
    assert all(m["cutoff"] >= result.first_cutoff for m in result.models)
    assert set(result.refresh["hour"].unique()) <= set(
        range(result.first_cutoff, result.end + 1, 3 * HOUR_MS)
    )
    report = backtest_report(result, log, labels, cfg)
    assert 0 <= report["onboarding"]["overall"]["auprc"] <= 1
    assert "onboarding_users_end_of_window" in report and "refresh" in report
    load = report["review_load"]
    assert load["backlog_at_first_refresh"] + load["users_flagged_after_it"] == len(result.flagged_users)
    assert (
        0 <= report["onboarding"]["after_second_member"]["best_recall_at_precision_0.9_on_period_curve"] <= 1
    )
    # The ring model learns from the clusters of every kept moment before its cut-off (young
    # rings as the refreshes saw them), not only from the graph at the cut-off.
    ring_fits = [m for m in result.models if m["point"] == "rings" and "error" not in m]
    assert ring_fits
    for fit in ring_fits:
        kept = (fit["cutoff"] - result.first_cutoff) // (cfg.ring_sample_every_h * HOUR_MS) + 60 // 6
        assert fit["moments"] == kept + 1
    for ring in report["rings"].get("rings", []):
        assert ring["anchor"] >= result.first_cutoff
        if ring["detected"] is not None:
            assert ring["hours_from_first_onboarding"] >= 0
            assert 0 <= ring["money_out_before"] <= ring["money_out_total"] + 1e-6
    paths = write_plots(report, result, tmp_path / "plots")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_a_model_reads_no_label_after_its_cutoff() -> None:
    """Labels not yet known at the cut-off, and rows decided after it, change nothing."""
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + rng.normal(scale=0.8, size=n) > 1.6).astype(np.int64)
    decided = np.sort(rng.integers(0, 200 * HOUR_MS, n))
    onboarded = decided - rng.integers(0, 10 * HOUR_MS, n)
    cutoff = 150 * HOUR_MS
    names = [f"f{i}" for i in range(6)]

    def fit(labels: np.ndarray) -> str:
        return fit_decision_model("onboarding", x, labels, decided, onboarded, cutoff, names, FeatureOptions(),
                                  label_delay_h=24, max_rounds=50).booster.model_to_string()  # fmt: skip

    base = fit(y)
    unknown = (onboarded + 24 * HOUR_MS > cutoff) | (decided >= cutoff)
    flipped = np.where(unknown, 1 - y, y)
    assert unknown.sum() > 100
    assert fit(flipped) == base
    known = np.flatnonzero(~unknown)
    changed = y.copy()
    changed[known[: len(known) // 2]] = 1 - changed[known[: len(known) // 2]]
    assert fit(changed) != base  # the converse: known labels do matter
    with pytest.raises(NotEnoughLabelsError, match="label delay"):
        fit_decision_model("onboarding", x, y, decided, onboarded, 10 * HOUR_MS, names, FeatureOptions(),
                           label_delay_h=24)  # fmt: skip


def test_the_onboarding_model_trains_on_application_fraud_and_the_behaviour_model_on_all() -> None:
    """Mule recruits and bust-out customers look honest when they apply: their rows are left out
    of the onboarding model's training (neither fraud nor honest there), not of the behaviour model's."""
    rng = np.random.default_rng(1)
    n = 4000
    users = np.array([f"u{i}" for i in range(n)], dtype=object)
    typology = rng.choice(["device_farm", "mule_ring", "bust_out", None], size=n, p=[0.05, 0.05, 0.05, 0.85])
    labels = pd.DataFrame(
        {"user_id": users, "is_fraud": pd.notna(typology).astype(int), "typology": typology}
    )
    x = rng.normal(size=(n, 4)).astype(np.float32) + labels["is_fraud"].to_numpy()[:, None]
    decided = np.sort(rng.integers(0, 100 * HOUR_MS, n))
    rows = {}
    for point in ("onboarding", "refresh"):
        kept = DecisionRows(names=[f"f{i}" for i in range(4)])
        kept.add(x, users, decided)
        rows[point] = kept
    onboarded = pd.Series(decided, index=users)
    models = fit_point_models(rows, 100 * HOUR_MS, BacktestConfig(label_delay_h=0), labels, onboarded, [])
    seen = {p: m.metrics["train_fraud"] + m.metrics["val_fraud"] for p, m in models.items()}
    assert seen["onboarding"] == int((typology == "device_farm").sum())
    assert seen["refresh"] == int(labels["is_fraud"].sum())


def test_bursts_are_the_planted_ones_where_labels_carry_them_and_never_later_otherwise(
    replayed: tuple[EventLog, pd.DataFrame, Path],
) -> None:
    """A bust-out's "before the burst" counts from the generator's planted burst; the fallback
    read from payments alone is an early bound (never after the bust's first purchase)."""
    log, labels, out = replayed
    rings = pd.read_parquet(out / "labels" / "rings.parquet")
    planted = rings.dropna(subset=["burst_start"]).set_index("ring_id")["burst_start"]
    assert len(planted) >= 1 and set(rings.loc[rings["burst_start"].notna(), "typology"]) == {"bust_out"}
    with_truth = labels.merge(rings[["ring_id", "burst_start"]], on="ring_id", how="left")
    read = ring_milestones(log, with_truth).set_index("ring_id")["burst_start"].reindex(planted.index)
    assert np.array_equal(read.to_numpy(), planted.to_numpy(np.float64))
    derived = ring_milestones(log, labels).set_index("ring_id")["burst_start"].reindex(planted.index)
    assert derived.notna().all()
    # The first purchase follows the planted start by one gap (about 15 minutes).
    assert (derived <= planted + HOUR_MS).all(), ((derived - planted) / HOUR_MS).to_dict()


def test_late_ring_applicants_count_the_members_who_applied_before_the_cutoff() -> None:
    """A ring whose first two members applied before the first cut-off: its next applicant is
    late (the third member), though it is the first the test period sees."""
    labels = pd.DataFrame({
        "user_id": ["a", "b", "c", "d", "h"], "is_fraud": [1, 1, 1, 1, 0],
        "ring_id": ["r", "r", "r", "s", None], "typology": ["device_farm"] * 4 + [None],
    })  # fmt: skip
    onboarded_at = pd.Series([1, 2, 10, 11, 12], index=["a", "b", "c", "d", "h"])
    onb = pd.DataFrame({"user_id": ["c", "d", "h"], "time": [10, 11, 12], "score": [0.9, 0.8, 0.1],
                        "flag": [True, False, False], "is_fraud": [1, 1, 0],
                        "typology": ["device_farm", "device_farm", None]})  # fmt: skip
    out = after_second_member(onb, labels, onboarded_at)
    assert out["device_farm"] == {"applicants": 1, "recall_at_block": 1.0}
    assert out["precision_at_block_all_applicants"] == 1.0
