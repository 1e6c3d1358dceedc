"""One model per decision point, trained on rows taken at that point and only on the past.

An onboarding model learns from applicants' rows at their application; a behaviour model from
users' rows at refresh hours. Each is fitted at a *cut-off*: it reads rows decided before the
cut-off whose labels were known by then (a label arrives ``label_delay_h`` after the user's
onboarding), trains on the earlier part and validates on the later part (time order, never at
random). The booster that validates is the booster served, so its calibration and thresholds
describe the scores it gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from gnn.calibration import Calibrator
from gnn.models.base import FeatureOptions
from gnn.models.booster_average import average_boosters
from gnn.thresholds import threshold_for_band, threshold_for_precision

HOUR_MS = 3_600_000
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "colsample_bytree": 0.3,
    "subsample": 0.8,
    "subsample_freq": 1,
    "reg_lambda": 5.0,
    "verbose": -1,
}
# The onboarding model reads small trees (eight leaves) and is the mean of three boosters fitted
# with different seeds (gnn/models/booster_average.py). Its labelled rings are few: full-depth
# trees learned the fresh hosting IP most training farms applied through and little else, and
# depth-one trees (the previous choice) let copies of one signal in the neighbour aggregates
# stand in for the applicant's own, with steps that went the wrong way (a farm applicant sharing
# a device with 7 and a fingerprint with 11 earlier applicants scored 0.003). On the onboarding
# rows of two replayed 60k worlds, LightGBM seeds 0-2 each, the best recall of late farm and
# synthetic-identity applicants at precision 0.90 went from 0.80 (depth-one) to 0.86 (eight
# leaves), and to 0.88-0.89 for the mean of three seeds; the seed alone moved it by up to 0.14.
# With few fraud rows eight leaves find nothing to split on (a 1,500-user world's twin model, about
# ten fraud rows, scored every applicant alike): under MIN_FRAUD_FOR_LEAVES training fraud rows a
# point falls back to SPARSE_PARAMS, depth-one trees, which still add each signal up.
POINT_PARAMS: dict[str, dict[str, Any]] = {"onboarding": {"num_leaves": 8, "learning_rate": 0.05}}
SPARSE_PARAMS: dict[str, Any] = {"num_leaves": 2, "learning_rate": 0.1}
MIN_FRAUD_FOR_LEAVES = 100
POINT_SEEDS: dict[str, int] = {"onboarding": 3}  # boosters averaged per point (default 1)


class NotEnoughLabelsError(ValueError):
    """Too few labelled rows (or no fraud) before a cut-off to fit or validate a model."""


@dataclass
class DecisionModel:
    """A fitted model for one decision point, with its calibration and thresholds."""

    point: str
    booster: lgb.Booster
    calibrator: Calibrator
    block_threshold: float
    review_threshold: float
    feature_names: list[str]
    options: FeatureOptions
    cutoff_ms: int
    label_delay_h: float
    metrics: dict[str, float] = field(default_factory=dict)

    def raw(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """Uncalibrated scores of rows in :attr:`feature_names` order."""
        return self.booster.predict(x, num_threads=threads).astype(np.float64)

    def predict(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """Calibrated P(fraud)."""
        return self.calibrator.transform(self.raw(x, threads))

    def band(self, scores: np.ndarray) -> np.ndarray:
        """``block``, ``review`` or ``allow`` per score."""
        return np.where(
            scores >= self.block_threshold,
            "block",
            np.where(scores >= self.review_threshold, "review", "allow"),
        )


def known_by(onboarded_ms: np.ndarray, cutoff_ms: int, label_delay_h: float) -> np.ndarray:
    """Whether each user's label had arrived by ``cutoff_ms``."""
    return onboarded_ms + label_delay_h * HOUR_MS <= cutoff_ms


def fit_decision_model(
    point: str,
    x: np.ndarray,
    y: np.ndarray,
    decided_ms: np.ndarray,
    onboarded_ms: np.ndarray,
    cutoff_ms: int,
    feature_names: list[str],
    options: FeatureOptions,
    *,
    label_delay_h: float = 72.0,
    validation_fraction: float = 0.3,
    target_precision: float = 0.9,
    block_base_rate: float | None = None,
    review_fraction: float = 0.01,
    max_rounds: int = 800,
    patience: int = 60,
    seed: int = 0,
    threads: int = 1,
    tree_params: dict[str, Any] | None = None,
    seeds: int | None = None,
) -> DecisionModel:
    """Fit a model at ``cutoff_ms`` from rows decided before it with labels known by it.

    Args:
        point: ``onboarding`` or ``refresh``.
        x: Rows ``[N, F]``.
        y: 0/1 labels of the rows' users (``-1``: unlabelled).
        decided_ms: Decision time of each row.
        onboarded_ms: Onboarding time of each row's user (when its label arrives, plus the delay).
        cutoff_ms: The moment of training.
        feature_names: Column names.
        options: The feature options the rows were built with (stored with the model).
        label_delay_h: Hours from onboarding until a label is known.
        validation_fraction: The latest share of usable rows (by decision time) validates.
        target_precision: Precision the block threshold targets on validation.
        block_base_rate: Hold that precision where fraud is this share of decisions (or the
            validation period's share, if lower), not only at the validation period's own
            share: see :func:`gnn.thresholds.threshold_for_precision`. ``None``: validation's.
        review_fraction: Review capacity, as a share of scored users, under the block band.
        max_rounds: Boosting rounds at most (early stopping on validation AUPRC).
        patience: Early-stopping patience.
        seed: LightGBM seed.
        threads: LightGBM threads for fitting.
        tree_params: Tree shape over :data:`PARAMS` (default: the point's :data:`POINT_PARAMS`).
        seeds: Boosters averaged, seeds ``seed, seed + 1, ...`` (default: :data:`POINT_SEEDS`).

    Raises:
        NotEnoughLabelsError: training or validation lacks fraud rows.
    """
    usable = (decided_ms < cutoff_ms) & (y >= 0) & known_by(onboarded_ms, cutoff_ms, label_delay_h)
    idx = np.flatnonzero(usable)
    order = idx[np.argsort(decided_ms[idx], kind="stable")]
    n_val = int(len(order) * validation_fraction)
    train, val = order[: len(order) - n_val], order[len(order) - n_val :]
    for part, rows in (("training", train), ("validation", val)):
        if len(rows) == 0 or y[rows].sum() < 2 or (y[rows] == 0).sum() < 2:
            raise NotEnoughLabelsError(
                f"{point} model at cut-off {cutoff_ms}: {part} has {len(rows)} rows with "
                f"{int(y[rows].sum()) if len(rows) else 0} fraud; need labels known by the cut-off "
                f"(label delay {label_delay_h} h): start the cut-off later"
            )
    weight = float((y[train] == 0).sum() / max(y[train].sum(), 1))
    shape = POINT_PARAMS.get(point, {}) if tree_params is None else tree_params
    if shape and y[train].sum() < MIN_FRAUD_FOR_LEAVES:
        shape = SPARSE_PARAMS
    params = dict(
        PARAMS,
        **shape,
        num_threads=threads,
        scale_pos_weight=min(weight, 50.0),
    )
    dtrain = lgb.Dataset(x[train], y[train], feature_name=_safe(feature_names), free_raw_data=False)
    dval = lgb.Dataset(x[val], y[val], reference=dtrain)
    boosters = []
    for k in range(POINT_SEEDS.get(point, 1) if seeds is None else seeds):
        fitted = lgb.train(
            dict(params, metric="average_precision", seed=seed + k),
            dtrain,
            num_boost_round=max_rounds,
            valid_sets=[dval],
            callbacks=[lgb.early_stopping(patience, verbose=False)],
        )
        # Keep only the rounds that validated: the booster served is the one calibrated.
        boosters.append(fitted.model_from_string(fitted.model_to_string(num_iteration=fitted.best_iteration)))
    booster = average_boosters(boosters)
    raw_val = booster.predict(x[val], num_threads=threads)
    calibrator = Calibrator("platt").fit(raw_val, y[val])
    cal = calibrator.transform(raw_val)
    val_rate = float(y[val].mean())
    rate = None if block_base_rate is None else min(block_base_rate, val_rate)
    block = threshold_for_precision(cal, y[val], target_precision, rate)
    review = threshold_for_band(cal, block, review_fraction)
    metrics = {
        "val_auprc": float(average_precision_score(y[val], cal)),
        "val_auroc": float(roc_auc_score(y[val], cal)),
        "train_rows": float(len(train)),
        "val_rows": float(len(val)),
        "train_fraud": float(y[train].sum()),
        "val_fraud": float(y[val].sum()),
        "rounds": float(booster.current_iteration()),  # trees of every averaged booster
        "boosters": float(len(boosters)),
        "val_fraud_share": val_rate,
        "block_base_rate": float("nan") if rate is None else rate,
    }
    return DecisionModel(
        point, booster, calibrator, float(block), float(review), list(feature_names), options,
        int(cutoff_ms), float(label_delay_h), metrics,
    )  # fmt: skip


def _safe(names: list[str]) -> list[str]:
    # LightGBM rejects some JSON-special characters in feature names.
    return [n.replace(":", "_").replace(",", "_").replace("[", "(").replace("]", ")") for n in names]
