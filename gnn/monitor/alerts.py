"""Alarms: monitoring figures compared with the thresholds in :class:`graphrisk.config.Settings`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from graphrisk.config import Settings


@dataclass(frozen=True)
class Alarm:
    """One threshold crossed.

    Attributes:
        kind: ``feature_psi``, ``feature_ks``, ``score_psi``, ``band_shift``, ``label_rate``,
            ``skew``, ``skew_known_user``, ``new_hubs`` or ``ring_inputs``.
        subject: What crossed it (a feature, a band, a cohort, a relation).
        value: The measured figure.
        threshold: The setting it crossed.
    """

    kind: str
    subject: str
    value: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for reports."""
        return asdict(self)


def feature_alarms(table: pd.DataFrame, settings: Settings) -> list[Alarm]:
    """PSI and KS alarms from :func:`gnn.monitor.drift.feature_drift`'s table."""
    out = [Alarm("feature_psi", str(r.feature), float(r.psi), settings.drift_psi_alert)
           for r in table[table["psi"] >= settings.drift_psi_alert].itertuples()]  # fmt: skip
    out += [Alarm("feature_ks", str(r.feature), float(r.ks), settings.drift_ks_alert)
            for r in table[table["ks"] >= settings.drift_ks_alert].itertuples()]  # fmt: skip
    return out


def prediction_alarms(drift: Any, settings: Settings) -> list[Alarm]:
    """Score-PSI and band-share alarms from a :class:`gnn.monitor.prediction.PredictionDrift`."""
    out = []
    if drift.score_psi >= settings.drift_score_psi_alert:
        out.append(Alarm("score_psi", "score", drift.score_psi, settings.drift_score_psi_alert))
    out += [Alarm("band_shift", band, shift, settings.drift_band_shift_alert)
            for band, shift in drift.band_shift.items() if abs(shift) >= settings.drift_band_shift_alert]  # fmt: skip
    return out


def label_alarms(cohorts: pd.DataFrame, settings: Settings) -> list[Alarm]:
    """Cohorts whose fraud rate left the training rate (:func:`gnn.monitor.prediction.label_drift`)."""
    return [Alarm("label_rate", str(r.cohort), float(r.rate), settings.drift_label_z_alert)
            for r in cohorts[cohorts["alarm"]].itertuples()]  # fmt: skip


def skew_alarms(report: Any, settings: Settings, name: str = "skew") -> list[Alarm]:
    """Features whose served rows differ from batch rows too often (a :class:`~gnn.monitor.skew.SkewReport`)."""
    t = report.table
    return [Alarm(name, str(r.feature), float(r.mismatch_rate), settings.skew_mismatch_alert)
            for r in t[t["mismatch_rate"] > settings.skew_mismatch_alert].itertuples()]  # fmt: skip


def graph_alarms(structure: Any) -> list[Alarm]:
    """New identifier hubs (a :class:`gnn.monitor.graph.GraphStructure`): any is worth a look."""
    return [Alarm("new_hubs", rel, float(n), 0.0) for rel, n in structure.new_hubs.items() if n > 0]


def ring_alarms(check: Any) -> list[Alarm]:
    """The ring model's inputs outside their training range (a :class:`gnn.monitor.rings.RingInputCheck`)."""
    return [Alarm("ring_inputs", "ring_model", check.outside_share, check.threshold)] if check.refuse else []
