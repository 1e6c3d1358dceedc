"""The collusion score: a LightGBM classifier over cluster features, Platt-calibrated out of fold.

Training labels come from planted (or investigated) rings: a cluster is positive when one ring
covers it with Jaccard >= 0.5, or when at least half of its members are fraudulent.

Rings are few (a 60k-user graph holds ~120), so no cluster is spent on a held-out calibration
split: ``folds`` boosters, each fitted without one stratified fold, score the fold they left
out; the sigmoid (Platt) calibration is fitted on those out-of-fold margins and the final
booster on every cluster. Isotonic steps were tried first: with ~50 validation positives they
tied most flagged clusters on one plateau, so the 0.5 threshold cut through it arbitrarily.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from gnn.rings.candidates import Candidates

MATCH_JACCARD = 0.5
FRAUD_SHARE = 0.5
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 5,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
    "num_threads": 1,
    "seed": 0,
}


def best_ring_match(cand: Candidates, labels: pd.DataFrame) -> pd.DataFrame:
    """Per cluster: the planted ring overlapping it most (by Jaccard), that Jaccard, and fraud share.

    ``labels`` has ``user_id, is_fraud`` and optionally ``ring_id`` (null for honest users).
    """
    mt = cand.member_table()
    sizes = mt.groupby("cluster").size()
    lab = labels.set_index("user_id")
    fraud = lab["is_fraud"].reindex(mt["user_id"]).fillna(0).to_numpy(dtype=np.float64)
    out = pd.DataFrame(index=pd.RangeIndex(cand.num_clusters, name="cluster"))
    out["fraud_share"] = pd.Series(fraud).groupby(mt["cluster"].to_numpy()).mean()
    out["ring_id"] = None
    out["jaccard"] = 0.0
    if "ring_id" in labels:
        ring_of = lab["ring_id"].reindex(mt["user_id"]).to_numpy()
        has = pd.notna(ring_of)
        if has.any():
            ring_size = labels.dropna(subset=["ring_id"]).groupby("ring_id").size()
            inter = pd.DataFrame({"cluster": mt["cluster"].to_numpy()[has], "ring_id": ring_of[has]})
            inter = inter.groupby(["cluster", "ring_id"]).size().rename("n").reset_index()
            inter["jaccard"] = inter["n"] / (
                inter["cluster"].map(sizes) + inter["ring_id"].map(ring_size) - inter["n"]
            )
            best = inter.sort_values(["jaccard", "ring_id"]).groupby("cluster").tail(1).set_index("cluster")
            out.loc[best.index, "ring_id"] = best["ring_id"]
            out.loc[best.index, "jaccard"] = best["jaccard"]
    return out


def cluster_labels(cand: Candidates, labels: pd.DataFrame) -> np.ndarray:
    """1 for a colluding cluster (ring Jaccard >= 0.5, or >= 50 % fraudulent members), else 0."""
    m = best_ring_match(cand, labels)
    return ((m["jaccard"] >= MATCH_JACCARD) | (m["fraud_share"] >= FRAUD_SHARE)).to_numpy().astype(np.int64)


@dataclass
class RingModel:
    """A fitted collusion scorer: trees, calibration, the feature order and threshold.

    ``calibrator`` maps the booster's raw margin to a probability: a :class:`LogisticRegression`
    on that one column (Platt), or an :class:`IsotonicRegression` in models saved before.
    """

    booster: lgb.Booster
    calibrator: LogisticRegression | IsotonicRegression
    feature_names: list[str]
    threshold: float = 0.5
    metrics: dict[str, float] = field(default_factory=dict)
    version: str = ""

    def raw(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated tree scores (margins for Platt-calibrated models)."""
        x = features[self.feature_names].to_numpy(dtype=np.float64)
        if isinstance(self.calibrator, LogisticRegression):
            return self.booster.predict(x, raw_score=True)
        return self.booster.predict(x)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated collusion probability per cluster."""
        if len(features) == 0:
            return np.zeros(0)
        return _calibrate(self.calibrator, self.raw(features))

    def save(self, path: Path) -> None:
        """Pickle to ``path`` atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(self))
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> RingModel:
        """Load a model saved with :meth:`save`."""
        model = pickle.loads(Path(path).read_bytes())
        if not isinstance(model, RingModel):
            raise TypeError(f"{path} does not hold a RingModel")
        return model


def _calibrate(calibrator: LogisticRegression | IsotonicRegression, raw: np.ndarray) -> np.ndarray:
    if isinstance(calibrator, LogisticRegression):
        return calibrator.predict_proba(raw.reshape(-1, 1))[:, 1]
    return calibrator.predict(raw)


def train_ring_model(
    features: pd.DataFrame, y: np.ndarray, seed: int = 0, rounds: int = 300, version: str = "", folds: int = 5
) -> RingModel:
    """Fit the trees on every cluster; calibrate (Platt) on out-of-fold margins; metrics out of fold."""
    if y.sum() < folds or (1 - y).sum() < folds:
        raise ValueError(
            f"need at least {folds} positive and {folds} negative clusters, got {int(y.sum())} positive"
        )
    names = list(features.columns)
    x = features.to_numpy(dtype=np.float64)

    def fit(rows: np.ndarray) -> lgb.Booster:
        # Positives are ~2 % of clusters: weigh them up so the trees do not ignore them.
        weight = float((y[rows] == 0).sum() / max((y[rows] == 1).sum(), 1))
        params = dict(PARAMS, seed=seed, scale_pos_weight=weight)
        return lgb.train(params, lgb.Dataset(x[rows], y[rows], feature_name=names), num_boost_round=rounds)

    oof = np.zeros(len(y))
    for tr, va in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        oof[va] = fit(tr).predict(x[va], raw_score=True)
    platt = LogisticRegression(C=1e6).fit(oof.reshape(-1, 1), y)
    model = RingModel(fit(np.arange(len(y))), platt, names, version=version)
    cal = _calibrate(platt, oof)
    model.metrics = {
        "val_auprc": float(average_precision_score(y, cal)),
        "val_auprc_score_mean": float(
            average_precision_score(y, np.nan_to_num(features["score_mean"].to_numpy()))
        ),
        "train_clusters": len(y),
        "val_clusters": len(y),
        "folds": folds,
        "positives": int(y.sum()),
    }
    return model
