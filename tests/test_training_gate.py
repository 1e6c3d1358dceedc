"""What `graphrisk train` registers: calibrated on the served model's held-out scores, a
non-empty review band under the block band, and only models that serving can use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold
from typer.testing import CliRunner

from gnn.calibration import Calibrator
from gnn.data.entity_graph import entity_graph_dataset
from gnn.models import GBDTScorer, StackedScorer, make_model
from gnn.online import ApplicantScorer
from gnn.registry import ModelRegistry
from gnn.scoring import score_users
from gnn.thresholds import band_fractions, threshold_for_band
from gnn.training import DEFAULT_CANDIDATES, UnservableModelError, serving_gaps, train_entity_model
from graphrisk.clean_event import RepeatedIdentifiers
from graphrisk.cli import app
from graphrisk.config import Settings
from graphrisk.events import parse_event
from graphrisk.pseudonymise import Pseudonymiser
from graphrisk.store import GraphStore
from graphrisk.synthetic import generate
from pipelines.event_tables import build_snapshot
from pipelines.refresh import refresh

torch.set_num_threads(1)
USERS = 3000


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two synthetic worlds (training seed, another seed), each with its snapshot tables."""
    root = tmp_path_factory.mktemp("gate")
    out = {}
    for name, seed, users in (("train", 31, USERS), ("other", 32, 1500)):
        generate(root / name, users=users, seed=seed, days=7)
        build_snapshot(root / name / "events", root / f"{name}_snapshot")
        out[name] = root / name
        out[f"{name}_snapshot"] = root / f"{name}_snapshot"
    return out


def _labels(world: Path) -> pd.DataFrame:
    return pd.read_parquet(world / "labels" / "users.parquet")


@pytest.fixture(scope="module")
def trained(worlds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``train_entity_model`` with its default options, and the model it registered."""
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    labels = _labels(worlds["train"])
    meta, report = train_entity_model(worlds["train_snapshot"], labels, registry)
    model, _ = registry.load(meta.version)
    dataset = entity_graph_dataset(worlds["train_snapshot"], labels, split="random", seeds=(0,))
    return {"meta": meta, "report": report, "model": model, "dataset": dataset}


def test_calibrator_is_fitted_to_the_served_models_held_out_scores(trained: dict[str, Any]) -> None:
    model, ds = trained["model"], trained["dataset"]
    scorer = model.scorer
    sp = ds.splits[0]
    # The served booster read train + validation; no row of it is held out except test, so the
    # held-out scores are those of its configuration (params, round count) out of fold.
    rows = np.flatnonzero(sp.train | sp.val)
    x = scorer.inputs(ds)
    oof = np.empty(len(rows))
    folds = StratifiedKFold(5, shuffle=True, random_state=scorer.seed)
    for fit_part, held in folds.split(rows, ds.y[rows]):
        fold = lgb.LGBMClassifier(
            n_estimators=scorer.booster_.num_trees(), random_state=scorer.seed, n_jobs=1, **scorer.params
        )
        fold.fit(x[rows[fit_part]], ds.y[rows[fit_part]])
        oof[held] = fold.predict_proba(x[rows[held]])[:, 1]
    grid = np.linspace(0.001, 0.999, 200)
    want = Calibrator("platt").fit(oof, ds.y[rows]).transform(grid)
    np.testing.assert_allclose(model.calibrator.transform(grid), want, rtol=1e-6, atol=1e-9)
    # What it was before: Platt on the early-stopped first booster's validation scores.
    before = Calibrator("platt").fit(scorer.validation_scores_, ds.y[sp.val]).transform(grid)
    assert not np.allclose(model.calibrator.transform(grid), before, rtol=1e-3)
    # The served booster's own validation scores are in-sample: nearly perfect, so unusable.
    assert average_precision_score(ds.y[sp.val], scorer.predict_proba(ds)[sp.val]) > 0.99


def test_calibrated_scores_match_the_fraud_rate_on_test(trained: dict[str, Any]) -> None:
    model, ds = trained["model"], trained["dataset"]
    test = ds.splits[0].test
    scores = model.predict(ds)[test]
    rate = ds.y[test].mean()
    assert 0.5 * rate < scores.mean() < 1.5 * rate


def test_review_band_sits_under_block_and_holds_the_review_fraction(trained: dict[str, Any]) -> None:
    meta, report = trained["meta"], trained["report"]
    th = report["thresholds"]
    assert th == meta.notes["thresholds"]
    assert th["review"] < th["block"] == meta.threshold
    assert meta.notes["review_threshold"] == th["review"]
    # 600 validation users at 1 %: about six in the review band, none of them block.
    val = th["val_fractions"]
    assert 0.003 <= val["review"] <= 0.02
    assert val["block"] > 0
    assert th["test_fractions"]["review"] > 0
    model, ds = trained["model"], trained["dataset"]
    # Validation fractions come from held-out scores (the served refit read those rows); on
    # test, which nothing read, the served model's own bands give the reported share.
    bands = model.band(model.predict(ds)[ds.splits[0].test])
    assert (bands == "review").mean() == pytest.approx(th["test_fractions"]["review"])


def test_threshold_for_band_is_sized_by_capacity_under_the_block_threshold() -> None:
    scores = np.random.default_rng(0).random(10_000)
    block = 0.995  # 0.5 % above it: a top-1 % threshold alone (0.99) would leave a 0.5 % band
    review = threshold_for_band(scores, block, 0.01)
    assert review < block
    got = band_fractions(scores, review, block)
    assert got["review"] == pytest.approx(0.01, abs=1e-4)
    assert got["block"] == pytest.approx(0.005, abs=1e-3)
    # Nothing blocked: the band is the top of the scores; everything blocked: an empty band.
    assert band_fractions(scores, threshold_for_band(scores, np.inf, 0.02), np.inf)["review"] == 0.02
    assert threshold_for_band(scores, 0.0, 0.01) == 0.0
    # Fewer scores under the block threshold than the capacity: all of them.
    assert threshold_for_band(scores, 0.001, 0.5) == scores.min()
    with pytest.raises(ValueError, match="fraction"):
        threshold_for_band(scores, block, 0.0)


def test_stack_is_reported_not_selectable_and_never_chosen(worlds: dict[str, Path], tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    labels = _labels(worlds["train"])
    meta, report = train_entity_model(
        worlds["train_snapshot"], labels, registry, candidates=("stack", "gbdt")
    )
    assert report["chosen"] == meta.model_name == "gbdt"
    stack = report["candidates"]["stack"]
    assert stack["selectable"] is False
    assert stack["reason"].startswith("not selectable: cannot score a snapshot other than its training one")
    assert "val_auprc" not in stack  # skipped, not fitted
    assert meta.notes["candidates"]["stack"] == stack
    with pytest.raises(UnservableModelError, match=r"stack not selectable.*bwgnn not selectable.*applicant"):
        train_entity_model(worlds["train_snapshot"], labels, registry, candidates=("stack", "bwgnn"))


def test_capability_flags_say_what_serving_can_use(worlds: dict[str, Path]) -> None:
    assert all(not serving_gaps(make_model(name)) for name in DEFAULT_CANDIDATES)
    assert serving_gaps(make_model("stack"))
    assert serving_gaps(make_model("bwgnn")) == [
        "cannot score a new applicant (" + make_model("bwgnn").serving_limit + ")"
    ]
    # The stack's flags are what it does: its stage-1 columns exist for the training graph only.
    ds = entity_graph_dataset(worlds["train_snapshot"], _labels(worlds["train"]), split="random", seeds=(0,))
    other = entity_graph_dataset(
        worlds["other_snapshot"], _labels(worlds["other"]), split="random", seeds=(0,)
    )
    small = {"max_rounds": 20, "patience": 5, "n_jobs": 1}
    stack = StackedScorer(GBDTScorer(refit=False, **small), folds=2, second=GBDTScorer(**small))
    stack.fit(ds, ds.splits[0])
    assert len(stack.predict_proba(ds)) == ds.num_nodes
    with pytest.raises(ValueError):
        stack.predict_proba(other)


def _cli_env(settings: Settings) -> dict[str, str]:
    return {
        "GRAPHRISK_ENVIRONMENT": "test",
        "GRAPHRISK_STORE_URI": settings.store_uri,
        "GRAPHRISK_STORE_PASSWORD": settings.store_password.get_secret_value(),
        "GRAPHRISK_STORE_DATABASE": settings.store_database,
        "GRAPHRISK_DATA_DIR": str(settings.data_dir),
    }


def test_cli_refuses_only_unservable_candidates(settings: Settings, worlds: dict[str, Path]) -> None:
    labels = str(worlds["train"] / "labels" / "users.parquet")
    res = CliRunner().invoke(
        app, ["train", "--labels", labels, "--candidates", "stack"], env=_cli_env(settings)
    )
    assert res.exit_code == 1
    assert "no candidate can be served" in res.output and "stack" in res.output


def _applicant(events: pd.DataFrame, user_id: str, new_id: str, t: int, **change: Any) -> Any:
    row = events[(events["user_id"] == user_id) & (events["event_type"] == "onboarding")].iloc[0]
    record = {
        "event_type": "onboarding", "event_id": f"e-{new_id}", "user_id": new_id, "time": t,
        "document": {"type": row["document.type"], "number": row["document.number"],
                     "issuing_country": row["document.issuing_country"]},
        "device": {"id": row["device.id"]}, "email": row["email"], "phone": row["phone"], "ip": row["ip"],
        "address": {"line1": row["address.line1"], "city": row["address.city"], "country": row["address.country"]},
    }  # fmt: skip
    return parse_event(record | change)


@pytest.mark.slow
def test_default_train_serves_applicants_and_another_snapshot(
    store: GraphStore, settings: Settings, worlds: dict[str, Path]
) -> None:
    world = worlds["train"]
    refresh(settings, store, world / "events")
    labels_file = str(world / "labels" / "users.parquet")
    res = CliRunner().invoke(app, ["train", "--labels", labels_file], env=_cli_env(settings))
    assert res.exit_code == 0, res.output
    registry = ModelRegistry(settings.data_dir / "models")
    model, meta = registry.load()
    assert meta.model_name in DEFAULT_CANDIDATES
    score_users(settings.snapshot_dir, settings.data_dir / "scores", registry, store)

    feats = pd.read_parquet(settings.data_dir / "scores" / "user_features.parquet").set_index("id")
    ids = RepeatedIdentifiers(Pseudonymiser(settings.pseudonymisation_key.get_secret_value().encode()))
    scorer = ApplicantScorer(model, feats, ids, settings.fx_rates, settings.default_phone_region)
    events = pd.read_parquet(sorted((world / "events").rglob("*.parquet")))
    now = int(events["time"].max()) + 3_600_000
    labels = _labels(world)
    farm = str(labels.loc[labels["typology"] == "device_farm", "user_id"].iloc[0])
    honest = str(labels.loc[labels["is_fraud"] == 0, "user_id"].iloc[0])
    risky = scorer.score(store, _applicant(events, farm, "applicant-risky", now), now_ms=now)
    calm = scorer.score(
        store,
        _applicant(events, honest, "applicant-calm", now, device={"id": "brand-new-device"}, ip="203.0.113.77",
                   email="new.person@example.org", phone="+447700900555",
                   document={"type": "passport", "number": "NEW123456", "issuing_country": "GB"},
                   address={"line1": "99 Nowhere Lane", "city": "Leeds", "country": "GB"}),
        now_ms=now,
    )  # fmt: skip
    assert 0 <= calm.score < risky.score <= 1
    assert risky.linked_users.get("USED_DEVICE", 0) >= 1 and not calm.linked_users.get("USED_DEVICE")
    assert {risky.band, calm.band} <= {"allow", "review", "block"}

    # A snapshot the model never saw (another seed) scores, and ranks its fraud first.
    out = score_users(worlds["other_snapshot"], settings.data_dir / "other_scores", registry, store=None)
    table = pd.read_parquet(out.scores_table).merge(
        _labels(worlds["other"]), left_on="id", right_on="user_id"
    )
    assert len(table) >= 0.99 * len(_labels(worlds["other"]))
    assert table["score"].between(0, 1).all()
    assert average_precision_score(table["is_fraud"], table["score"]) > 0.5
