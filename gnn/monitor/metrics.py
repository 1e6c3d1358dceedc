"""Monitoring results as Prometheus metrics: a textfile a Pushgateway (or node_exporter's textfile
collector) takes from batch jobs, written atomically with ``prometheus_client``.

Per-feature series are limited to the ``top`` most drifted features; families carry the rest, so
a 1,335-feature model does not add 1,335 series per metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

METRICS_FILE = "monitor.prom"


def metrics_path(data_dir: Path) -> Path:
    """``<data_dir>/metrics/monitor.prom``."""
    return Path(data_dir) / "metrics" / METRICS_FILE


def export_metrics(result: Any, path: Path, top: int = 20) -> Path:
    """Write a :class:`gnn.monitor.run.MonitorResult` to ``path`` in the Prometheus text format."""
    reg = CollectorRegistry()
    point = result.point
    g = Gauge("graphrisk_monitor_run_timestamp_seconds", "When monitoring last ran.", ["point"], registry=reg)
    g.labels(point).set(result.at_ms / 1000)
    alarms = Gauge("graphrisk_monitor_alarms", "Alarms raised, per kind.", ["point", "kind"], registry=reg)
    kinds: dict[str, int] = {}
    for a in result.alarms:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    for k in ("feature_psi", "feature_ks", "score_psi", "band_shift", "label_rate", "skew", "skew_known_user",
              "new_hubs", "ring_inputs"):  # fmt: skip
        alarms.labels(point, k).set(kinds.get(k, 0))
    if result.features is not None and len(result.features):
        fpsi = Gauge("graphrisk_feature_psi", "PSI of a feature vs training (top features).",
                     ["point", "feature", "family"], registry=reg)  # fmt: skip
        fks = Gauge("graphrisk_feature_ks", "KS of a continuous feature vs training (top features).",
                    ["point", "feature", "family"], registry=reg)  # fmt: skip
        for r in result.features.head(top).itertuples():
            fpsi.labels(point, r.feature, r.family).set(float(r.psi))
            if r.ks == r.ks:  # not NaN
                fks.labels(point, r.feature, r.family).set(float(r.ks))
        fam = Gauge(
            "graphrisk_family_psi_max", "Largest PSI in a feature family.", ["point", "family"], registry=reg
        )
        fam_ks = Gauge(
            "graphrisk_family_ks_max", "Largest KS in a feature family.", ["point", "family"], registry=reg
        )
        for r in result.families.itertuples():
            fam.labels(point, r.family).set(float(r.psi_max))
            if r.ks_max == r.ks_max:
                fam_ks.labels(point, r.family).set(float(r.ks_max))
    if result.prediction is not None:
        p = result.prediction
        Gauge("graphrisk_score_psi", "PSI of the score vs training.", ["point"], registry=reg).labels(
            point
        ).set(p.score_psi)
        share = Gauge("graphrisk_band_share", "Share of users per band.", ["point", "band"], registry=reg)
        ref = Gauge(
            "graphrisk_band_share_reference", "Training share per band.", ["point", "band"], registry=reg
        )
        for b, v in p.band_shares.items():
            share.labels(point, b).set(v)
            ref.labels(point, b).set(p.band_shares_ref.get(b, 0.0))
    if result.labels is not None and len(result.labels):
        rate = Gauge("graphrisk_label_fraud_rate", "Fraud rate of the latest labelled cohorts.", ["cohort"],
                     registry=reg)  # fmt: skip
        for r in result.labels.tail(7).itertuples():
            rate.labels(r.cohort).set(float(r.rate))
    skews = getattr(result, "skews", None) or ({"served": result.skew} if result.skew is not None else {})
    if skews:
        rows = Gauge("graphrisk_skew_rows_mismatched", "Share of served rows differing from batch rows.",
                     ["point", "comparison"], registry=reg)  # fmt: skip
        users = Gauge("graphrisk_skew_users_compared", "Users whose served and batch rows were compared.",
                      ["point", "comparison"], registry=reg)  # fmt: skip
        only = Gauge("graphrisk_skew_only_online", "Users served online with no batch row yet.",
                     ["point", "comparison"], registry=reg)  # fmt: skip
        worst = Gauge("graphrisk_skew_worst_mismatch_rate", "Largest per-feature mismatch rate.",
                      ["point", "comparison"], registry=reg)  # fmt: skip
        per = Gauge("graphrisk_skew_mismatch_rate", "Served vs batch mismatch rate (top features).",
                    ["point", "comparison", "feature"], registry=reg)  # fmt: skip
        for name, s in skews.items():
            rows.labels(point, name).set(s.rows_mismatched)
            users.labels(point, name).set(s.users)
            only.labels(point, name).set(s.only_online)
            worst.labels(point, name).set(s.worst_mismatch_rate)
            for r in s.table.head(top).itertuples():
                per.labels(point, name, r.feature).set(float(r.mismatch_rate))
    if result.graph is not None:
        gs = result.graph
        deg = Gauge(
            "graphrisk_graph_degree", "Users' degree per relation.", ["relation", "stat"], registry=reg
        )
        for rel, stats in gs.degrees.items():
            for stat, v in stats.items():
                deg.labels(rel, stat).set(v)
        hubs = Gauge("graphrisk_graph_hubs", "Identifiers with more users than the hub cut-off.", ["relation"],
                     registry=reg)  # fmt: skip
        new = Gauge("graphrisk_graph_new_hubs", "Hubs first seen since training.", ["relation"], registry=reg)
        for rel, n in gs.hubs.items():
            hubs.labels(rel).set(n)
            new.labels(rel).set(gs.new_hubs.get(rel, 0))
        comp = Gauge("graphrisk_graph_components", "Component sizes of linked users.", ["stat"], registry=reg)
        for stat, v in gs.components.items():
            comp.labels(stat).set(v)
        if gs.ring_candidates is not None:
            Gauge("graphrisk_ring_candidates", "Candidate clusters.", registry=reg).set(gs.ring_candidates)
    if result.ring_check is not None:
        Gauge("graphrisk_ring_inputs_outside_share", "Ring-model inputs outside the training range.",
              registry=reg).set(result.ring_check.outside_share)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), reg)  # writes a temporary file and renames it
    return path
