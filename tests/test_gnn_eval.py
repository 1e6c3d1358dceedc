"""Evaluation pieces: metrics, calibration, thresholds, leakage-free S-FFSD features, loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gnn.calibration import Calibrator
from gnn.data import load_labelled_csv, load_tolokers, stratified_splits
from gnn.data.dataset import NodeDataset, carve_validation
from gnn.data.sffsd import sffsd_features
from gnn.evaluate import evaluate_dataset, metrics, recall_at_k
from gnn.features import history_label_features
from gnn.models import make_model
from gnn.thresholds import (
    threshold_for_f1,
    threshold_for_fraction,
    threshold_for_precision,
    top_k_per_period,
)

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def noisy_scores(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    return 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y))), y


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_is_monotone_and_bounded(method: str) -> None:
    s, y = noisy_scores()
    cal = Calibrator(method).fit(s, y)
    grid = np.linspace(-0.5, 1.5, 501)  # beyond the fitted range too
    out = cal.transform(np.clip(grid, 0, 1) if method == "platt" else grid)
    assert (np.diff(out) >= -1e-12).all()
    assert (out >= 0).all() and (out <= 1).all()
    assert repr(cal) == f"Calibrator({method})"


def test_platt_transform_is_the_fitted_logistic_regression() -> None:
    s, y = noisy_scores()
    cal = Calibrator("platt").fit(s, y)
    grid = np.linspace(0, 1, 101)
    fitted = cal._platt.predict_proba(Calibrator._logit(grid))[:, 1]
    np.testing.assert_allclose(cal.transform(grid), fitted, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.3, 0.95))
def test_threshold_reaches_target_precision_on_fit_data(seed: int, target: float) -> None:
    s, y = noisy_scores(500, seed)
    t = threshold_for_precision(s, y, target)
    alerts = s >= t
    if np.isinf(t):
        assert not alerts.any()
    else:
        assert y[alerts].mean() >= target


def test_capacity_thresholds() -> None:
    s, y = noisy_scores()
    assert (s >= threshold_for_fraction(s, 0.1)).sum() == 200
    periods = np.repeat(np.arange(10), 200)
    alerts = top_k_per_period(s, periods, 7)
    assert (np.bincount(periods[alerts]) == 7).all()
    assert 0 < threshold_for_f1(s, y) < 1


def test_metrics_known_values() -> None:
    y = np.array([1, 1, 0, 0, 0])
    s = np.array([0.9, 0.2, 0.8, 0.1, 0.0])
    assert recall_at_k(y, s) == 0.5  # top 2 = {0.9 (pos), 0.8 (neg)}
    m = metrics(y, s, threshold=0.5)
    assert m["auroc"] == pytest.approx(5 / 6)
    assert set(m) == {"auroc", "auprc", "rec_at_k", "f1_macro"}


def test_stratified_splits_are_disjoint_and_stratified() -> None:
    y = np.array([0] * 800 + [1] * 200 + [-1] * 100)
    for sp in stratified_splits(y, (0.4, 0.2, 0.4), [0, 1]):
        assert not (sp.train & sp.test).any() and not (sp.val & sp.test).any()
        assert not ((sp.train | sp.val | sp.test) & (y < 0)).any()
        assert sp.train.sum() == 400 and y[sp.train].mean() == pytest.approx(0.2)
        carved = carve_validation(sp, y, 0.25)
        assert carved.train.sum() == 300 and not (carved.train & carved.val).any()


def small_log(n: int = 3000) -> pd.DataFrame:
    path = DATA / "sffsd" / "S-FFSD.csv"
    if path.exists():
        return pd.read_csv(path, nrows=n)
    rng = np.random.default_rng(0)  # a synthetic log with S-FFSD's columns
    return pd.DataFrame(
        {
            "Time": np.arange(n),
            "Source": [f"S{i}" for i in rng.integers(0, 300, n)],
            "Target": [f"T{i}" for i in rng.integers(0, 30, n)],
            "Amount": rng.exponential(50, n).round(2),
            "Location": [f"L{i}" for i in rng.integers(0, 10, n)],
            "Type": [f"TP{i}" for i in rng.integers(0, 8, n)],
            "Labels": rng.choice([0, 1, 2], n, p=[0.4, 0.1, 0.5]),
        }
    )


def test_sffsd_features_ignore_later_transactions() -> None:
    log = small_log()
    cut = 2000
    before = sffsd_features(log).iloc[:cut]
    later = log.copy()
    rng = np.random.default_rng(1)
    tail = later.index >= cut
    later.loc[tail, "Amount"] = rng.exponential(500, tail.sum()).round(2)
    later.loc[tail, "Source"] = later.loc[tail, "Source"].sample(frac=1, random_state=1).to_numpy()
    later.loc[tail, "Target"] = "T_new"
    later.loc[tail, "Labels"] = 1
    after = sffsd_features(later).iloc[:cut]
    # Category codes number values in order of first appearance, so earlier codes are stable too.
    pd.testing.assert_frame_equal(before, after)


def test_history_label_features_read_only_earlier_training_labels() -> None:
    log = small_log()
    codes = {c: log.groupby(c, sort=False).ngroup().to_numpy() for c in ("Source", "Target")}
    y = np.where(log["Labels"] == 2, -1, log["Labels"]).astype(np.int64)
    train = stratified_splits(y, (0.4, 0.0, 0.6), [0])[0].train

    def feats(labels: np.ndarray) -> np.ndarray:
        ds = NodeDataset(
            "log", None, "txn", labels, [], np.arange(len(labels)).astype(str), history_keys=codes
        )
        return history_label_features(ds, train, prior=0.1)[0]

    base = feats(y)
    changed = y.copy()
    changed[1500:] = np.where(changed[1500:] >= 0, 1 - changed[1500:], -1)  # later labels flipped
    changed[~train & (changed >= 0)] = 1  # test labels never read
    node = int(np.flatnonzero(train[:1500])[-1])
    changed[node] = 1 - changed[node]  # a node's own label never reaches it
    np.testing.assert_array_equal(feats(changed)[: node + 1], base[: node + 1])


def write_byo(tmp: Path) -> tuple[Path, Path, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    users = pd.DataFrame(
        {
            "id": [f"u{i}" for i in range(60)],
            "type": "User",
            "age": rng.integers(18, 80, 60).astype(float),
            "country": rng.choice(["FR", "DE", "NL"], 60),
            "label": [1.0, 0.0] * 25 + [np.nan] * 10,
        }
    )
    devices = pd.DataFrame(
        {
            "id": [f"d{i}" for i in range(20)],
            "type": "Device",
            "age": np.nan,
            "country": np.nan,
            "label": np.nan,
        }
    )
    nodes = pd.concat([users, devices], ignore_index=True)
    edges = pd.DataFrame(
        {"src": [f"u{i}" for i in range(60)], "dst": [f"d{i % 20}" for i in range(60)], "type": "USED_DEVICE"}
    )
    edges = pd.concat(
        [edges, pd.DataFrame({"src": ["u1", "u2"], "dst": ["u3", "u4"], "type": "TRANSFERRED_TO"})]
    )
    nodes.to_csv(tmp / "nodes.csv", index=False)
    edges.to_csv(tmp / "edges.csv", index=False)
    return tmp / "nodes.csv", tmp / "edges.csv", nodes, edges


def test_byo_csv_round_trip(tmp_path: Path) -> None:
    nodes_csv, edges_csv, nodes, _ = write_byo(tmp_path)
    ds = load_labelled_csv(nodes_csv, edges_csv, seeds=[0, 1])
    assert ds.target == "User" and ds.num_nodes == 60 and len(ds.splits) == 2
    # Own columns, then the degree and per-relation edge counts every node gets.
    assert ds.feature_names == ["age", "country", "degree", "TRANSFERRED_TO_out_edges", "TRANSFERRED_TO_in_edges",
                                "USED_DEVICE_out_edges"]  # fmt: skip
    np.testing.assert_allclose(ds.x[:, 0], nodes["age"][:60])
    assert sorted(set(ds.x[:, 1])) == [0.0, 1.0, 2.0]
    np.testing.assert_array_equal(ds.y, [1, 0] * 25 + [-1] * 10)
    assert ds.data["Device"].num_nodes == 20 and ds.data["Device"].x.shape == (20, 2)  # degree, edges in
    np.testing.assert_array_equal(ds.data["Device"].x[:, 0].numpy(), [3] * 20)
    ei = ds.data["User", "USED_DEVICE", "Device"].edge_index
    assert [f"u{a}->d{b}" for a, b in ei.T.tolist()][:3] == ["u0->d0", "u1->d1", "u2->d2"]
    assert torch.equal(ds.data["Device", "rev_USED_DEVICE", "User"].edge_index, ei.flip(0))
    assert ds.data["User", "TRANSFERRED_TO", "User"].edge_index.tolist() == [[1, 2], [3, 4]]
    # Given masks win over random splits.
    with_masks = nodes.assign(
        train_mask=[1] * 30 + [0] * 50,
        val_mask=[0] * 30 + [1] * 10 + [0] * 40,
        test_mask=[0] * 40 + [1] * 10 + [0] * 30,
    )
    with_masks.to_csv(nodes_csv, index=False)
    given_split = load_labelled_csv(nodes_csv, edges_csv).splits
    assert len(given_split) == 1 and given_split[0].train.sum() == 30 and given_split[0].test.sum() == 10


def _trust_network(tmp: Path, n: int = 400, seed: int = 0) -> tuple[Path, Path]:
    """Users rate each other; fraudsters get low ratings. Nodes have no feature columns at all."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.15
    src = rng.integers(0, n, n * 6)
    dst = rng.integers(0, n, n * 6)
    rating = np.where(fraud[dst], rng.normal(-4, 2, len(dst)), rng.normal(4, 2, len(dst))).round(1)
    when = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 86400 * 30, len(dst)), unit="s"
    )
    pd.DataFrame({"id": [f"u{i}" for i in range(n)], "type": "User", "label": fraud.astype(int)}).to_csv(
        tmp / "nodes.csv", index=False
    )
    pd.DataFrame(
        {"src": [f"u{i}" for i in src], "dst": [f"u{i}" for i in dst], "type": "RATED", "rating": rating,
         "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "comment": rng.choice(["ok", "meh"], len(dst))}
    ).to_csv(tmp / "edges.csv", index=False)  # fmt: skip
    return tmp / "nodes.csv", tmp / "edges.csv"


def test_byo_edge_attributes_and_times_are_read_and_used(tmp_path: Path) -> None:
    nodes_csv, edges_csv = _trust_network(tmp_path)
    ds = load_labelled_csv(nodes_csv, edges_csv, seeds=[0])
    ea = ds.data["User", "RATED", "User"].edge_attr
    assert ea.shape[1] == 2  # rating, and time as epoch seconds; the free-text comment is not used
    assert float(ea[:, 1].min()) >= pd.Timestamp("2026-01-01", tz="UTC").timestamp()
    assert {"RATED_in_rating_mean", "RATED_in_time_max", "RATED_out_edges"} <= set(ds.feature_names)
    assert any("'comment'" in note and "not used" in note for note in ds.notes)
    report = evaluate_dataset(ds, {"gbdt": lambda s: make_model("gbdt", s, max_rounds=60, patience=10)})
    # The incoming ratings alone separate the fraudsters; without them nothing would.
    assert report["models"]["gbdt"]["summary"]["auprc"]["mean"] > 0.9


def test_byo_nodes_without_feature_columns_work_with_every_model(tmp_path: Path) -> None:
    nodes_csv, edges_csv = _trust_network(tmp_path, n=200)
    pd.read_csv(edges_csv)[["src", "dst", "type"]].to_csv(edges_csv, index=False)  # no attributes either
    ds = load_labelled_csv(nodes_csv, edges_csv, seeds=[0])
    assert ds.feature_names[0] == "degree"
    models = {name: (lambda s, name=name: make_model(name, s)) for name in ("logreg", "gbdt", "bwgnn")}
    report = evaluate_dataset(ds, models)
    assert set(report["models"]) == set(models)


def test_byo_reports_what_it_cannot_use(tmp_path: Path) -> None:
    nodes_csv, edges_csv, nodes, _ = write_byo(tmp_path)
    extra = pd.DataFrame({"id": ["lonely"], "type": "User", "age": 30.0, "country": "FR", "label": 1.0})
    pd.concat([nodes, extra]).to_csv(nodes_csv, index=False)
    ds = load_labelled_csv(nodes_csv, edges_csv)
    assert any("1 of 51 labelled User nodes have no edge" in note for note in ds.notes)
    pd.concat([nodes, extra.assign(label=2.0)]).to_csv(nodes_csv, index=False)
    with pytest.raises(ValueError, match=r"row 82 \(id lonely\): label must be 1, 0 or empty, got 2.0"):
        load_labelled_csv(nodes_csv, edges_csv)


def test_byo_csv_rejects_unknown_edge_ids(tmp_path: Path) -> None:
    nodes_csv, edges_csv, _, edges = write_byo(tmp_path)
    edges.assign(dst="ghost").to_csv(edges_csv, index=False)
    with pytest.raises(ValueError, match="unknown nodes"):
        load_labelled_csv(nodes_csv, edges_csv)


def test_evaluate_dataset_writes_report(tmp_path: Path) -> None:
    nodes_csv, edges_csv, _, _ = write_byo(tmp_path)
    ds = load_labelled_csv(nodes_csv, edges_csv, fractions=(0.5, 0.25, 0.25), seeds=[0, 1])
    models = {
        "logreg": lambda s: make_model("logreg", s),
        "gbdt": lambda s: make_model("gbdt", s, max_rounds=50, patience=10),
    }
    report = evaluate_dataset(ds, models, out_dir=tmp_path / "out")
    assert report["chosen"] in models
    summary = report["models"]["gbdt"]["summary"]
    assert set(summary) >= {"auroc", "auprc", "rec_at_k", "f1_macro", "val_auprc", "fit_s"}
    assert json.loads((tmp_path / "out" / "csv_report.json").read_text())["chosen"] == report["chosen"]
    assert (tmp_path / "out" / "csv_pr_curve.png").stat().st_size > 0
    assert (tmp_path / "out" / "csv_scores.png").stat().st_size > 0


@pytest.mark.skipif(not (DATA / "tolokers" / "tolokers.npz").exists(), reason="shared data not present")
def test_tolokers_loader_shapes() -> None:
    ds = load_tolokers(DATA / "tolokers" / "tolokers.npz")
    assert ds.x.shape == (11758, 10) and len(ds.splits) == 10
    ei = ds.data["worker", "shared_task", "worker"].edge_index
    assert ei.shape == (2, 2 * 519_000)
    sp = ds.splits[0]
    assert not (sp.train & sp.test).any()
    # Label-free graph columns follow the raw ten; the raw ones are unchanged.
    wide = load_tolokers(DATA / "tolokers" / "tolokers.npz", structure=True, spectral_dims=8)
    assert wide.x.shape == (11758, 10 + 5 + 8) and wide.feature_names[-1] == "spectral_7"
    np.testing.assert_array_equal(wide.x[:, :10], ds.x)
    assert not np.isnan(wide.x).any()


def test_evaluate_cli_names_reports_after_the_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from graphrisk.cli import app

    monkeypatch.setenv("GRAPHRISK_DATA_DIR", str(tmp_path / "var"))
    for folder in ("trust", "bank"):
        (tmp_path / folder).mkdir()
        nodes_csv, edges_csv = _trust_network(tmp_path / folder, n=150)
        result = CliRunner().invoke(app, ["evaluate", "--nodes", str(nodes_csv), "--edges", str(edges_csv),
                                          "--models", "gbdt", "--seeds", "0", "--out", str(tmp_path / "out")])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "'comment' is text that is not a time; not used" in result.output
    reports = sorted(p.name.split("-2")[0] for p in (tmp_path / "var" / "reports").glob("evaluate-*.json"))
    assert reports == ["evaluate-bank", "evaluate-trust"]
    assert (tmp_path / "out" / "trust" / "trust_report.json").exists()
    assert (tmp_path / "out" / "bank" / "bank_report.json").exists()
