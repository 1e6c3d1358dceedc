"""Drift, skew and structure monitoring (gnn/monitor).

* PSI and KS: invariants (identical distributions give 0, PSI is non-negative and symmetric),
  KS on the reference's percentile grid agrees with scipy's exact statistic;
* a synthetic world replayed from its events, whose honest users change behaviour halfway (a
  new device mix, and a busy new public IP): the drift alarms fire on the device and IP
  features and on no other. The world starts empty, so its neighbour aggregates drift as it
  grows whatever happens; the same replay without the change separates that growth from the
  change;
* training-serving skew: applicant rows served from a stale graph differ from the batch as-of rows;
* a ring model trained on one synthetic world refuses to store rings on a very different graph,
  and accepts a world like its own;
* the Prometheus textfile and the HTML report.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import ks_2samp

from gnn.asof import HourState, applicants, onboarding_rows, refresh_rows, star_of
from gnn.backtest import BacktestConfig
from gnn.monitor.binning import FeatureBins, ks_from_counts, psi
from gnn.monitor.graph import graph_structure
from gnn.monitor.metrics import export_metrics
from gnn.monitor.prediction import label_drift, prediction_drift
from gnn.monitor.reference import Reference, build_reference
from gnn.monitor.report import write_report
from gnn.monitor.rings import REFERENCE_FILE
from gnn.monitor.run import monitor_rows
from gnn.monitor.skew import compare_rows
from gnn.rings.run import find_rings
from graphrisk.config import Settings, load_settings
from graphrisk.graph_schema import NodeLabel, RelType
from graphrisk.synthetic import generate
from pipelines.event_log import EdgeTables, EventLog, FactLog, GraphTimeline, NodeTables, read_event_log
from pipelines.event_tables import snapshot_tables
from pipelines.refresh import discover_partitions

HOUR_MS = 3_600_000
REFRESH_OPTS = BacktestConfig().refresh_options
ONBOARDING_OPTS = BacktestConfig().onboarding_options
# Features reading a user's devices or IPs, directly or through neighbours reached over them.
DEVICE_OR_IP = re.compile(r"device|DEVICE|_ip$|_ip_|IP")


@pytest.fixture(scope="module")
def cfg() -> Settings:
    return load_settings(environment="test")


# ---------------------------------------------------------------- PSI and KS

probs = arrays(np.float64, st.integers(2, 12), elements=st.floats(0, 1e3, allow_nan=False)).filter(
    lambda a: a.sum() > 0
)


@given(probs)
def test_psi_of_identical_distributions_is_zero(p: np.ndarray) -> None:
    assert psi(p, p) == pytest.approx(0.0, abs=1e-12)
    assert psi(p, 7 * p) == pytest.approx(0.0, abs=1e-9)  # counts and proportions alike


@given(st.data())
def test_psi_is_non_negative_and_symmetric(data: st.DataObject) -> None:
    p = data.draw(probs)
    q = data.draw(
        arrays(np.float64, len(p), elements=st.floats(0, 1e3, allow_nan=False)).filter(lambda a: a.sum() > 0)
    )
    assert psi(p, q) >= 0
    assert psi(p, q) == pytest.approx(psi(q, p), rel=1e-9, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-1.0, 1.0), st.floats(0.5, 2.0))
def test_ks_on_the_percentile_grid_is_within_a_percentile_of_scipy(
    seed: int, shift: float, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((4000, 1)).astype(np.float32)
    cur = (rng.standard_normal((3000, 1)) * scale + shift).astype(np.float32)
    bins = FeatureBins.fit(ref, ["x"])
    ks = ks_from_counts(bins.counts, bins.count(cur))[0]
    exact = ks_2samp(ref[:, 0], cur[:, 0]).statistic
    # Evaluated at the reference's percentiles only: never above the exact statistic, and
    # within one percentile's mass of it.
    assert exact - 0.0125 <= ks <= exact + 1e-9


def test_bins_count_layouts_missing_values_and_deciles_alike() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([
        rng.standard_normal(5000), rng.poisson(1.0, 5000), np.where(rng.random(5000) < 0.3, np.nan, rng.random(5000)),
        np.zeros(5000), np.full(5000, np.nan),
    ]).astype(np.float32)  # fmt: skip
    bins = FeatureBins.fit(x, list("abcde"))
    assert np.array_equal(bins.count(x), bins.counts)
    assert np.array_equal(bins.count(np.asfortranarray(x), block=2), bins.counts)
    assert (bins.counts.sum(axis=1) == 5000).all()
    assert bins.counts[2, -1] == np.isnan(x[:, 2]).sum() and bins.counts[4, -1] == 5000
    coarse = bins.coarse(bins.counts)
    assert np.array_equal(coarse.sum(axis=1), bins.counts.sum(axis=1))
    # Continuous deciles hold a tenth each; the count feature's ties stay in one bin.
    assert np.allclose(coarse[0, :10] / 5000, 0.1, atol=0.002)
    assert list(bins.continuous) == [True, False, True, False, False]
    assert psi(coarse, bins.coarse(bins.count(x))).max() == 0.0


def test_reference_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 3)).astype(np.float32)
    s = rng.random(300)
    ref = build_reference(
        "refresh", "v1", x, ["a", "b", "c"], s, 0.8, 0.95, rng.integers(0, 2, 300), {"cutoff_ms": 5}
    )
    ref.save(tmp_path / "r.npz")
    back = Reference.load(tmp_path / "r.npz")
    assert back.features.names == ["a", "b", "c"] and np.array_equal(
        back.features.counts, ref.features.counts
    )
    assert back.band_shares == ref.band_shares and back.meta == {"cutoff_ms": 5}
    assert np.array_equal(back.scores.quantiles, ref.scores.quantiles, equal_nan=True)


# ---------------------------------------------------------------- a world that changes halfway


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EventLog]:
    out = tmp_path_factory.mktemp("monitor-world")
    generate(out, users=800, seed=3, days=4)
    events = out / "events"
    return out, read_event_log(events, [p.path for p in discover_partitions(events)], load_settings())


def _halfway_change(clean: pa.Table, fraud: set[str], mid: int, seed: int = 0) -> pa.Table:
    """From ``mid`` on, honest users' sessions come from a new device mix (each user one of three
    new devices) and half of their events from one busy new public IP."""
    df = clean.to_pandas()
    rng = np.random.default_rng(seed)
    users = df["user_id"].to_numpy()
    late = (df["time"].to_numpy() >= mid) & ~pd.Series(users).isin(fraud).to_numpy()
    dev = late & df["device_id"].notna().to_numpy()
    df.loc[dev, "device_id"] = [
        f"newdev-{u}-{k}" for u, k in zip(users[dev], rng.integers(0, 3, dev.sum()), strict=True)
    ]
    ip = late & df["ip"].notna().to_numpy() & (rng.random(len(df)) < 0.5)
    df.loc[ip, "ip"] = "busy-new-public-ip"
    return pa.Table.from_pandas(df, schema=clean.schema, preserve_index=False)


def _state(clean: pa.Table, hour: int) -> HourState:
    timeline = GraphTimeline(FactLog.of(clean))
    timeline.advance(hour)
    return HourState.of(timeline)


@pytest.fixture(scope="module")
def replay(world: tuple[Path, EventLog]) -> dict[str, object]:
    """Reference: users onboarded in the first half, as of halfway. Current: users onboarded in
    the second half, as of the end, with and without the change."""
    out, log = world
    labels = pd.read_parquet(out / "labels" / "users.parquet")
    times = log.clean.column("time").to_numpy()
    start, end = times.min() // HOUR_MS * HOUR_MS, (times.max() // HOUR_MS + 1) * HOUR_MS
    mid = start + (end - start) // 2 // HOUR_MS * HOUR_MS
    x_ref, names, _ = refresh_rows(_state(log.clean, mid), REFRESH_OPTS)
    changed = _halfway_change(log.clean, set(labels.loc[labels["is_fraud"] == 1, "user_id"]), mid)
    current = {}
    for name, table in (("changed", changed), ("unchanged", log.clean)):
        state = _state(table, end)
        x, _, users = refresh_rows(state, REFRESH_OPTS)
        onboarded = state.nodes[NodeLabel.USER].set_index("id")["onboarded_at"].reindex(users).to_numpy()
        current[name] = x[onboarded >= mid]
    return {"x_ref": x_ref, "names": names, "current": current, "mid": mid, "log": log}


def test_drift_alarms_fire_on_the_changed_features_only(replay: dict[str, object], cfg: Settings) -> None:
    names: list[str] = replay["names"]  # type: ignore[assignment]
    x_ref = replay["x_ref"]
    rng = np.random.default_rng(0)
    ref = build_reference("refresh", "test", x_ref, names, rng.random(len(x_ref)), 0.9, 0.99)  # type: ignore[arg-type]
    current: dict[str, np.ndarray] = replay["current"]  # type: ignore[assignment]
    runs = {k: monitor_rows(ref, cfg, x, names) for k, x in current.items()}
    alarmed = {k: r.alarmed("feature_psi") | r.alarmed("feature_ks") for k, r in runs.items()}
    changed, growth = alarmed["changed"], alarmed["unchanged"]
    # The change is seen: the new device mix and the busy IP, on the users' own rows and through
    # the neighbours reached over those IPs.
    for feature in ("deg_used_device", "shared_max_used_ip", "shared_sum_used_ip", "rev_USED_IP_max_IP.0"):
        assert feature in changed, feature
    assert "deg_used_device" not in growth
    added = changed - growth
    assert len(added) >= 10
    # ... and nothing else: every alarm the change adds is on a device or IP feature, and the
    # user's own columns that read neither stay quiet.
    assert not {f for f in added if not DEVICE_OR_IP.search(f)}
    quiet = ["account_age_h", "events", "amount_paid", "deg_paid", "deg_used_card", "hours_to_first_payment",
             "deg_has_document", "deg_has_phone", "deg_has_email", "deg_lives_at"]  # fmt: skip
    assert not changed & set(quiet)
    # Families: the device and IP families lead, the label-free own families are below the bar.
    fam = runs["changed"].families.set_index("family")
    assert fam.loc["degree", "psi_max"] >= cfg.drift_psi_alert
    assert fam.loc["account_age", "psi_max"] < cfg.drift_psi_alert


# ---------------------------------------------------------------- prediction and label drift


def test_score_and_band_drift(cfg: Settings) -> None:
    rng = np.random.default_rng(2)
    scores = rng.beta(0.5, 20, 20_000)
    ref = build_reference("refresh", "v", rng.random((20_000, 1)), ["f"], scores, 0.2, 0.5)
    same = prediction_drift(ref, rng.beta(0.5, 20, 20_000))
    assert same.score_psi < 0.01 and max(abs(v) for v in same.band_shift.values()) < 0.01
    res = monitor_rows(ref, cfg, scores=rng.beta(1.5, 10, 20_000))
    assert res.prediction is not None and res.prediction.score_psi >= cfg.drift_score_psi_alert
    assert "score" in res.alarmed("score_psi") and "review" in res.alarmed("band_shift")


def test_label_drift_flags_a_cohort_whose_fraud_rate_jumps() -> None:
    rng = np.random.default_rng(3)
    day = 86_400_000
    users = [f"u{i}" for i in range(3000)]
    onboarded = pd.Series(np.repeat(np.arange(3) * day, 1000) + 5, index=users)
    fraud = np.concatenate([rng.random(2000) < 0.02, rng.random(1000) < 0.10]).astype(int)
    out = label_drift(pd.DataFrame({"user_id": users, "is_fraud": fraud}), onboarded, 0.02, z_alert=4.0)
    assert list(out["alarm"]) == [False, False, True]


# ---------------------------------------------------------------- training-serving skew


def test_compare_rows_tolerates_float32_and_matching_missing_values() -> None:
    batch = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": [0.1, 0.2, 0.3]}, index=["u1", "u2", "u3"])
    online = pd.DataFrame(
        {"a": [1.0, 2.5, np.nan], "b": np.float32([0.1, 0.2, 0.3])}, index=["u1", "u2", "u4"]
    )
    rep = compare_rows(online, batch)
    t = rep.table.set_index("feature")
    assert rep.users == 2 and rep.only_online == 1
    assert t.loc["a", "mismatch_rate"] == 0.5 and t.loc["a", "max_abs_diff"] == 0.5
    assert t.loc["b", "mismatch_rate"] == 0.0 and rep.rows_mismatched == 0.5


def test_applicant_rows_served_from_a_stale_graph_show_skew(replay: dict[str, object], cfg: Settings) -> None:
    log: EventLog = replay["log"]  # type: ignore[assignment]
    apps = applicants(log.clean)
    hours = apps["time"] // HOUR_MS * HOUR_MS
    hour = int(hours[hours > int(replay["mid"])].value_counts().index[0])  # type: ignore[call-overload]
    apps = apps[(apps["time"] >= hour) & (apps["time"] < hour + HOUR_MS)].reset_index(drop=True)
    now, stale = _state(log.clean, hour), _state(log.clean, hour - 3 * HOUR_MS)

    def rows(state: HourState) -> pd.DataFrame:
        star = star_of(state, ONBOARDING_OPTS)
        return pd.DataFrame(onboarding_rows(state, apps, star), columns=star.names, index=apps["user_id"])

    batch = rows(now)
    assert compare_rows(rows(now), batch).rows_mismatched == 0.0
    # The API served from a graph three refreshes old: neighbours' published rows and identifier
    # counts differ, so the rows do.
    skew = compare_rows(rows(stale), batch)
    assert skew.users == len(apps) and skew.rows_mismatched > 0
    assert skew.worst_mismatch_rate > cfg.skew_mismatch_alert
    assert (skew.table["mismatch_rate"] == 0).any()  # the applicant's own columns agree


# ---------------------------------------------------------------- graph structure


def test_graph_structure_counts_new_hubs_and_components() -> None:
    users = pd.DataFrame({"id": [f"u{i}" for i in range(8)], "first_seen": 0})
    nodes = {NodeLabel.USER: users,
             NodeLabel.IP: pd.DataFrame({"id": ["pub", "home"], "first_seen": [100, 0]}),
             NodeLabel.DEVICE: pd.DataFrame({"id": ["d1"], "first_seen": [0]})}  # fmt: skip
    ip = pd.DataFrame({"src": [f"u{i}" for i in range(6)] + ["u6"], "dst": ["pub"] * 6 + ["home"]})
    dev = pd.DataFrame({"src": ["u0", "u1", "u2"], "dst": ["d1"] * 3})
    tr = pd.DataFrame({"src": ["u6"], "dst": ["u7"]})
    edges = {RelType.USED_IP: ip, RelType.USED_DEVICE: dev, RelType.TRANSFERRED_TO: tr}
    g = graph_structure(nodes, edges, hub_users=4, since_ms=50, ring_candidates=3)
    assert g.hubs["USED_IP"] == 1 and g.new_hubs["USED_IP"] == 1 and g.new_hub_ids["USED_IP"] == ["pub"]
    assert g.hubs["USED_DEVICE"] == 0
    # The hub links nobody: {u0,u1,u2} by the device, {u6,u7} by the transfer, u3..u5 alone.
    assert g.components["max"] == 3 and g.components["users_linked"] == 5 and g.components["n"] == 5
    assert g.degrees["USED_IP"]["max"] == 1 and g.ring_candidates == 3
    assert graph_structure(nodes, edges, hub_users=4, since_ms=200).new_hubs["USED_IP"] == 0


# ---------------------------------------------------------------- ring inputs


def _distorted(nodes: NodeTables, edges: EdgeTables) -> tuple[NodeTables, EdgeTables]:
    """The same graph in another world's units: 1000x the amounts, 50x the events, 100x the time
    spans (as a bank-transfer data set differs from the synthetic one)."""
    nodes = {k: v.copy() for k, v in nodes.items()}
    edges = {k: v.copy() for k, v in edges.items()}
    for tables, counts in ((edges, "count"), (nodes, "event_count")):
        for t in tables.values():
            t[counts] = t[counts] * 50
            t0 = t["first_seen"].min()
            for c in ("first_seen", "last_seen", "onboarded_at"):
                if c in t:
                    t[c] = t0 + (t[c] - t0) * 100
            for c in ("amount_total", "amount_max"):
                if c in t:
                    t[c] = t[c] * 1000
    return nodes, edges


def test_ring_model_refuses_a_very_different_graph(
    tmp_path_factory: pytest.TempPathFactory, cfg: Settings
) -> None:
    root = tmp_path_factory.mktemp("monitor-rings")
    worlds = {}
    for seed in (11, 12):
        generate(root / f"w{seed}", users=1500, seed=seed, days=5, fraud_rate=0.05)
        worlds[seed] = snapshot_tables(root / f"w{seed}" / "events", cfg)
    s = cfg.model_copy(update={"data_dir": root / "var"})
    reg = root / "rings"
    labels = pd.read_parquet(root / "w11" / "labels" / "users.parquet")
    trained = find_rings(s, None, labels=labels, tables=worlds[11], registry_dir=reg, now_ms=1_000)
    assert (reg / REFERENCE_FILE).exists() and trained.kept > 0
    rings_before = pd.read_parquet(reg / "rings.parquet")
    # A world like the training one: accepted (about 1 % of values outside p0.5-p99.5).
    like = find_rings(s, None, tables=worlds[12], registry_dir=reg, now_ms=2_000)
    assert like.input_check["verdict"] == "accept" and like.input_check["outside_share"] < 0.03
    assert like.kept > 0
    rings_like = pd.read_parquet(reg / "rings.parquet")
    # A very different graph: refused, nothing kept, the registry left as the last accepted run left it.
    other = find_rings(s, None, tables=_distorted(*worlds[12]), registry_dir=reg, now_ms=3_000)
    assert other.input_check["verdict"] == "refuse" and other.kept == 0
    assert other.input_check["outside_share"] > s.ring_input_outside_max
    assert "outside the training range" in other.input_check["reason"]
    assert pd.read_parquet(reg / "rings.parquet").equals(rings_like)
    assert len(rings_before) > 0


# ---------------------------------------------------------------- metrics and report


def test_metrics_textfile_and_html_report(tmp_path: Path, cfg: Settings) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 4)).astype(np.float32)
    names = ["deg_used_device", "account_age_h", "shared_max_used_ip", "events"]
    ref = build_reference("refresh", "v9", x, names, rng.beta(0.5, 20, 2000), 0.2, 0.5)
    cur = x.copy()
    cur[:, 0] += 1.5
    skew = compare_rows(pd.DataFrame(cur, columns=names), pd.DataFrame(x, columns=names))
    res = monitor_rows(ref, cfg, cur, names, rng.beta(1.5, 10, 2000), skew=skew)
    # Skew alarms name their comparison (a bare SkewReport is the "served" one).
    assert res.alarmed("feature_psi") == {"deg_used_device"} and res.alarmed("skew") == {
        "served:deg_used_device"
    }
    prom = export_metrics(res, tmp_path / "metrics" / "monitor.prom").read_text()
    assert 'graphrisk_feature_psi{family="degree",feature="deg_used_device",point="refresh"}' in prom
    assert 'graphrisk_monitor_alarms{kind="feature_psi",point="refresh"} 1.0' in prom
    assert "graphrisk_score_psi" in prom
    assert (
        'graphrisk_skew_mismatch_rate{comparison="served",feature="deg_used_device",point="refresh"} 1.0'
        in prom
    )
    history = [res.summary(), res.summary()]
    html = write_report(res, tmp_path / "report", history).read_text()
    assert "deg_used_device" in html and "feature_drift.png" in html
    for png in ("feature_drift.png", "family_drift.png", "scores.png", "history.png", "skew-served.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000


def test_decision_point_references_are_saved_beside_the_model(tmp_path: Path) -> None:
    from gnn.backtest import DecisionRows
    from gnn.decision_models import fit_decision_model
    from gnn.monitor.reference import load_reference, save_decision_references

    rng = np.random.default_rng(5)
    n = 1200
    x = rng.standard_normal((n, 3)).astype(np.float32)
    users = np.array([f"u{i}" for i in range(n)], dtype=object)
    y = (x[:, 0] + rng.standard_normal(n) > 2.0).astype(np.int64)
    decided = np.arange(n, dtype=np.int64) * HOUR_MS
    onboarded = decided - 100 * HOUR_MS
    cutoff = int(decided[-1] + HOUR_MS)
    model = fit_decision_model("refresh", x, y, decided, onboarded.astype(np.float64), cutoff, ["a", "b", "c"],
                               REFRESH_OPTS, label_delay_h=1.0, max_rounds=20)  # fmt: skip
    rows = DecisionRows(names=["a", "b", "c"])
    rows.add(x, users, decided)
    labels = pd.DataFrame({"user_id": users, "is_fraud": y})
    saved = save_decision_references(tmp_path, "v1", {"refresh": model}, {"refresh": rows}, labels,
                                     pd.Series(onboarded, index=users))  # fmt: skip
    ref = load_reference(tmp_path, "refresh")
    assert saved == {"refresh": tmp_path / "monitor" / "refresh.npz"}
    assert ref.rows == n and ref.features.names == ["a", "b", "c"]
    assert ref.fraud_rate == pytest.approx(y.mean())
    assert ref.thresholds == {"review": model.review_threshold, "block": model.block_threshold}
