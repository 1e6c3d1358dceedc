"""One monitoring run: every drift, skew and structure figure of the current snapshot, its
alarms, the Prometheus textfile, and a line of history.

:func:`monitor_rows` is the pure computation over rows already in hand (tests, the bench);
:func:`monitor_snapshot` reads the production model, its training reference and the current
snapshot, as ``graphrisk refresh`` and ``graphrisk monitor report`` do. Results go to
``<data_dir>/monitor/``: ``latest.json``, ``features.csv`` (every feature's drift) and
``history.jsonl`` (one summary line per run, for charts over time).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gnn.monitor.alerts import (
    Alarm,
    feature_alarms,
    graph_alarms,
    label_alarms,
    prediction_alarms,
    ring_alarms,
    skew_alarms,
)
from gnn.monitor.drift import family_drift, feature_drift
from gnn.monitor.graph import GraphStructure, graph_structure
from gnn.monitor.metrics import export_metrics, metrics_path
from gnn.monitor.prediction import PredictionDrift, label_drift, prediction_drift, score_histogram
from gnn.monitor.reference import Reference, ReferenceMissingError, load_reference
from gnn.monitor.rings import RingInputCheck
from gnn.monitor.serving import serving_skew
from gnn.monitor.skew import SkewReport
from graphrisk.config import Settings

MONITOR_DIR = "monitor"


@dataclass
class MonitorResult:
    """Everything one run measured (a part is None when its inputs were not available)."""

    point: str
    version: str
    at_ms: int
    features: pd.DataFrame | None = None
    families: pd.DataFrame | None = None
    prediction: PredictionDrift | None = None
    score_hist: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None
    skew: SkewReport | None = None  # the first of ``skews`` (served applicant rows when measured)
    graph: GraphStructure | None = None
    ring_check: RingInputCheck | None = None
    # Training-serving skew per comparison (gnn.monitor.serving: "applicant", "known_user").
    skews: dict[str, SkewReport] = field(default_factory=dict)
    alarms: list[Alarm] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    def alarmed(self, kind: str) -> set[str]:
        """Subjects (features, bands…) with an alarm of ``kind``."""
        return {a.subject for a in self.alarms if a.kind == kind}

    def summary(self) -> dict[str, Any]:
        """The run in a few numbers (a history line, the CLI's JSON report)."""
        out: dict[str, Any] = {"point": self.point, "version": self.version, "at_ms": self.at_ms,
                               "alarms": len(self.alarms), "notes": self.notes, "timings_s": self.timings_s}  # fmt: skip
        if self.features is not None and len(self.features):
            out["features"] = {
                "count": len(self.features),
                "psi_max": float(self.features["psi"].max()),
                "top": self.features.head(10)[["feature", "psi", "ks"]].to_dict("records"),
            }
        if self.prediction is not None:
            out["prediction"] = self.prediction.to_dict()
        if self.skew is not None:
            out["skew"] = {"users": self.skew.users, "rows_mismatched": self.skew.rows_mismatched,
                           "worst": self.skew.table.head(5).to_dict("records")}  # fmt: skip
        if self.skews:
            out["skews"] = {name: {"users": r.users, "only_online": r.only_online, "rows_mismatched": r.rows_mismatched,
                                   "worst_mismatch_rate": r.worst_mismatch_rate,
                                   "worst": r.table.head(5).to_dict("records")}
                            for name, r in self.skews.items()}  # fmt: skip
        if self.graph is not None:
            out["graph"] = self.graph.to_dict()
        if self.ring_check is not None:
            out["ring_inputs"] = self.ring_check.to_dict()
        if self.labels is not None and len(self.labels):
            out["labels"] = self.labels.to_dict("records")
        out["alarm_list"] = [a.to_dict() for a in self.alarms[:50]]
        return json.loads(json.dumps(out, default=_plain))


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def monitor_rows(
    reference: Reference,
    settings: Settings,
    x: np.ndarray | None = None,
    names: list[str] | None = None,
    scores: np.ndarray | None = None,
    bands: np.ndarray | None = None,
    *,
    labels: pd.DataFrame | None = None,
    onboarded_at: pd.Series | None = None,
    skew: SkewReport | None = None,
    graph: GraphStructure | None = None,
    ring_check: RingInputCheck | None = None,
    skews: dict[str, SkewReport] | None = None,
) -> MonitorResult:
    """Drift of current rows ``x`` (and ``scores``) against ``reference``, with every alarm.

    Args:
        reference: The production model's training reference.
        settings: Alert thresholds.
        x: Current model inputs ``[N, F]`` (None: no feature drift).
        names: ``x``'s columns (default: the reference's).
        scores: Current calibrated scores (None: no prediction drift).
        bands: Published bands (default: the reference's thresholds applied to ``scores``).
        labels: ``user_id, is_fraud`` known now, with ``onboarded_at`` (user -> epoch ms), for label drift.
        skew: A served-vs-batch comparison (:func:`gnn.monitor.skew.compare_rows`).
        skews: Served-vs-batch comparisons by name (:func:`gnn.monitor.serving.serving_skew`);
            ``skew`` joins them as ``"served"`` when both are given.
        graph: The snapshot's structure (:func:`gnn.monitor.graph.graph_structure`).
        ring_check: The ring run's input check (:func:`gnn.monitor.rings.check_ring_inputs`).
    """
    named = dict(skews or {})
    if skew is not None and skew not in named.values():
        named = {"served": skew} | named
    first = next(iter(named.values()), None)
    res = MonitorResult(reference.point, reference.version, int(time.time() * 1000), skew=first, graph=graph,
                        ring_check=ring_check, skews=named)  # fmt: skip
    t0 = time.perf_counter()
    if x is not None:
        res.features = feature_drift(reference.features, x, names)
        res.families = family_drift(res.features, settings.drift_psi_alert, settings.drift_ks_alert)
        res.alarms += feature_alarms(res.features, settings)
    t1 = time.perf_counter()
    if scores is not None:
        res.prediction = prediction_drift(reference, scores, bands)
        res.score_hist = score_histogram(reference, scores)
        res.alarms += prediction_alarms(res.prediction, settings)
    if labels is not None and onboarded_at is not None:
        res.labels = label_drift(labels, onboarded_at, reference.fraud_rate, settings.drift_label_z_alert)
        res.alarms += label_alarms(res.labels, settings)
    res.alarms += comparison_alarms(named, settings)
    if graph is not None:
        res.alarms += graph_alarms(graph)
    if ring_check is not None:
        res.alarms += ring_alarms(ring_check)
    res.timings_s = {"features": round(t1 - t0, 3), "rest": round(time.perf_counter() - t1, 3)}
    return res


def monitor_snapshot(
    settings: Settings,
    labels: pd.DataFrame | None = None,
    ring_report: dict[str, Any] | None = None,
    skew: SkewReport | None = None,
    export: bool = True,
    log: Any = None,
    store: Any = None,
) -> MonitorResult:
    """Monitor the production behaviour model on the current snapshot, save and export the result.

    Args:
        settings: Where the snapshot, registry and data dir are; alert thresholds.
        labels: Labels known now (``user_id, is_fraud``) for label drift.
        ring_report: The ring run's report (:class:`gnn.rings.run.RingReport` as a dict): its
            candidate count and input check are carried into the result.
        skew: A served-vs-batch comparison to include (None: measured here, as far as ``log`` and
            ``store`` allow: :func:`gnn.monitor.serving.serving_skew`).
        export: Write the Prometheus textfile and the history.
        log: The event history (:class:`pipelines.event_log.EventLog`): served applicant rows are
            compared with their batch as-of onboarding rows.
        store: The graph store: known users' online rows are compared with their published rows.

    Raises:
        gnn.registry.RegistryError: no production model.
    """
    from gnn.asof import REFRESH
    from gnn.data.entity_graph import entity_graph_dataset
    from gnn.registry import ModelRegistry
    from pipelines.snapshot import load_snapshot

    registry = ModelRegistry(settings.data_dir / "models")
    model, meta = registry.load()
    notes: list[str] = []
    try:
        reference = load_reference(registry.root / meta.version, REFRESH)
    except ReferenceMissingError:
        # Models trained before monitoring (or by `graphrisk train` without --events) have no
        # reference: graph structure is still measured, drift is not.
        reference = None
        notes.append(
            f"model {meta.version} has no training reference: retrain with `graphrisk train --events`"
        )
    skews: dict[str, SkewReport] = {}
    if skew is None:
        try:
            skews, skew_notes = serving_skew(settings, model, meta.version, log=log, store=store)
            notes += skew_notes
        except Exception as exc:  # a failed skew check must not lose the drift run
            notes.append(f"training-serving skew not measured: {type(exc).__name__}: {exc}")
    nodes, edges = load_snapshot(settings.snapshot_dir)
    rr = ring_report if isinstance(ring_report, dict) else {}
    since = reference.meta.get("cutoff_ms") if reference is not None else None
    graph = graph_structure(nodes, edges, settings.monitor_hub_users, since, rr.get("clusters"))
    ring_check = None
    if rr.get("input_check"):
        ic = rr["input_check"]
        ring_check = RingInputCheck(ic["outside_share"], ic["threshold"], ic["refuse"], ic["clusters"],
                                    ic.get("by_feature", {}), ic.get("reason", ""))  # fmt: skip
    if reference is None:
        res = MonitorResult("refresh", meta.version, int(time.time() * 1000), graph=graph, ring_check=ring_check,
                            notes=notes, skew=skew or next(iter(skews.values()), None), skews=skews)  # fmt: skip
        res.alarms += graph_alarms(graph) + (ring_alarms(ring_check) if ring_check else [])
        res.alarms += comparison_alarms(res.skews or ({"served": skew} if skew else {}), settings)
    else:
        dataset = entity_graph_dataset(settings.snapshot_dir, labels=None)
        scores, x = model.predict_with_inputs(dataset)
        # The behaviour model's reference holds users who onboarded (refresh rows); so do these.
        keep = np.ones(dataset.num_nodes, dtype=bool)
        if "onboarded" in dataset.feature_names:
            keep = dataset.x[:, dataset.feature_names.index("onboarded")] > 0
        if x is None:
            notes.append("the production scorer exposes no input rows: feature drift skipped")
        onboarded_at = None
        if labels is not None and "onboarded_at" in nodes[_user_label()]:
            users = nodes[_user_label()]
            onboarded_at = pd.Series(users["onboarded_at"].to_numpy(np.float64), index=users["id"])
        res = monitor_rows(
            reference, settings, x[keep] if x is not None else None, list(model.scorer.feature_names),
            scores[keep], model.band(scores[keep]), labels=labels, onboarded_at=onboarded_at, skew=skew,
            graph=graph, ring_check=ring_check, skews=skews,
        )  # fmt: skip
        res.notes += notes
    if export:
        save_result(res, settings.data_dir)
        export_metrics(res, metrics_path(settings.data_dir))
    return res


def comparison_alarms(skews: dict[str, SkewReport], settings: Settings) -> list[Alarm]:
    """Skew alarms of every comparison, the subject naming the comparison and the feature.

    Known users' online rows feed explanations, not decisions (a known user is served its
    published score), and a refit does not change how they are built: their alarms are of their
    own kind, ``skew_known_user``, which does not call for a retrain (``gnn.retrain.DRIFT_KINDS``).
    """
    out = []
    for name, report in skews.items():
        kind = "skew_known_user" if name == "known_user" else "skew"
        out += [
            Alarm(kind, f"{name}:{a.subject}", a.value, a.threshold) for a in skew_alarms(report, settings)
        ]
    return out


def _user_label() -> Any:
    from graphrisk.graph_schema import NodeLabel

    return NodeLabel.USER


def monitor_dir(data_dir: Path) -> Path:
    """``<data_dir>/monitor``."""
    return Path(data_dir) / MONITOR_DIR


def save_result(result: MonitorResult, data_dir: Path) -> Path:
    """Write ``latest.json`` and ``features.csv``, and append the summary to ``history.jsonl``."""
    out = monitor_dir(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    tmp = out / "latest.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out / "latest.json")
    if result.features is not None:
        result.features.to_csv(out / "features.csv", index=False)
    if result.score_hist is not None:
        result.score_hist.to_csv(out / "scores.csv", index=False)
    if result.skews or result.skew is not None:
        named = result.skews or {"served": result.skew}
        # One table, worst first: the gate (gnn.promotion) reads each feature's first line.
        table = pd.concat([r.table.assign(comparison=name) for name, r in named.items() if r is not None])
        table.sort_values(["mismatch_rate", "max_abs_diff"], ascending=False, kind="stable").to_csv(
            out / "skew.csv", index=False
        )
    with (out / "history.jsonl").open("a") as fh:
        fh.write(json.dumps(summary) + "\n")
    return out


def load_history(data_dir: Path) -> list[dict[str, Any]]:
    """Every saved run's summary, oldest first."""
    path = monitor_dir(data_dir) / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
