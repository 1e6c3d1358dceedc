"""Prediction drift (score distribution, band shares) and label drift (fraud rate by cohort)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from gnn.monitor.binning import ks_from_counts, psi
from gnn.monitor.reference import BANDS, Reference, band_of, band_shares

DAY_MS = 86_400_000


@dataclass
class PredictionDrift:
    """How the current scores compare with the training scores.

    Attributes:
        score_psi: PSI of the calibrated score over the reference's score deciles.
        score_ks: KS of the score over the reference's score percentiles.
        band_shares: Current share of users per band (at the reference's thresholds).
        band_shares_ref: Training share per band.
        band_shift: Current minus training share, per band.
        users: Users scored.
    """

    score_psi: float
    score_ks: float
    band_shares: dict[str, float]
    band_shares_ref: dict[str, float]
    band_shift: dict[str, float]
    users: int

    def to_dict(self) -> dict[str, object]:
        """Plain dict for reports."""
        return asdict(self)


def prediction_drift(
    reference: Reference, scores: np.ndarray, bands: np.ndarray | None = None
) -> PredictionDrift:
    """Score PSI/KS and band shares of ``scores`` against the reference.

    ``bands`` default to the reference's thresholds applied to ``scores``; pass the published
    bands when the thresholds in force differ.
    """
    scores = np.asarray(scores, dtype=np.float64)
    cur = reference.scores.count(scores.reshape(-1, 1))
    ref = reference.scores.counts
    if bands is None:
        bands = band_of(scores, reference.thresholds["review"], reference.thresholds["block"])
    shares = band_shares(bands)
    return PredictionDrift(
        score_psi=float(psi(reference.scores.coarse(ref), reference.scores.coarse(cur))[0]),
        score_ks=float(ks_from_counts(ref, cur)[0]),
        band_shares=shares,
        band_shares_ref=dict(reference.band_shares),
        band_shift={b: shares[b] - reference.band_shares.get(b, 0.0) for b in BANDS},
        users=len(scores),
    )


def score_histogram(reference: Reference, scores: np.ndarray) -> pd.DataFrame:
    """Reference and current share per score decile of the reference (for charts)."""
    ref = reference.scores.coarse(reference.scores.counts)[0, :-1]
    cur = reference.scores.coarse(reference.scores.count(np.asarray(scores, np.float64).reshape(-1, 1)))[
        0, :-1
    ]
    q = reference.scores.quantiles[0]
    edges = np.unique(q[10:100:10][np.isfinite(q[10:100:10])])
    n = len(edges) + 1
    lows = np.concatenate(([q[0]], edges))
    return pd.DataFrame(
        {"from": lows[:n], "reference": ref[:n] / max(ref.sum(), 1), "current": cur[:n] / max(cur.sum(), 1)}
    )


def label_drift(
    labels: pd.DataFrame,
    onboarded_at: pd.Series,
    reference_rate: float,
    z_alert: float,
    min_users: int = 50,
) -> pd.DataFrame:
    """Fraud rate per onboarding day among users whose labels have arrived.

    Args:
        labels: ``user_id, is_fraud`` of the labels known now.
        onboarded_at: Onboarding time (epoch ms) per user id.
        reference_rate: The training rows' fraud rate.
        z_alert: A cohort alarms when its rate is this many binomial standard errors from the
            reference rate (and it has at least ``min_users`` labelled users).
        min_users: Smallest cohort judged.

    Returns:
        ``cohort`` (day, ISO date), ``users``, ``fraud``, ``rate``, ``z``, ``alarm`` per cohort.
    """
    t = onboarded_at.reindex(labels["user_id"]).to_numpy(np.float64)
    ok = np.isfinite(t)
    day = pd.to_datetime((t[ok] // DAY_MS) * DAY_MS, unit="ms", utc=True).strftime("%Y-%m-%d")
    frame = pd.DataFrame({"cohort": day, "fraud": labels["is_fraud"].to_numpy()[ok].astype(np.float64)})
    out = frame.groupby("cohort").agg(users=("fraud", "size"), fraud=("fraud", "sum")).reset_index()
    out["rate"] = out["fraud"] / out["users"]
    p = min(max(reference_rate, 1e-6), 1 - 1e-6) if np.isfinite(reference_rate) else np.nan
    out["z"] = (out["rate"] - p) / np.sqrt(p * (1 - p) / out["users"])
    out["alarm"] = (out["users"] >= min_users) & (out["z"].abs() >= z_alert)
    return out
