"""The collusion score: a LightGBM classifier over cluster features, calibrated with isotonic.

Training labels come from planted (or investigated) rings: a cluster is positive when one ring
covers it with Jaccard >= 0.5, or when at least half of its members are fraudulent. The model
is fitted on a stratified 70 % of the clusters and calibrated on the other 30 %, so the
calibration never sees the rows the trees were fitted on.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import train_test_split

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
    """A fitted collusion scorer: trees, isotonic calibration, the feature order and threshold."""

    booster: lgb.Booster
    calibrator: IsotonicRegression
    feature_names: list[str]
    threshold: float = 0.5
    metrics: dict[str, float] = field(default_factory=dict)
    version: str = ""

    def raw(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated tree scores."""
        return self.booster.predict(features[self.feature_names].to_numpy(dtype=np.float64))

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated collusion probability per cluster."""
        if len(features) == 0:
            return np.zeros(0)
        return self.calibrator.predict(self.raw(features))

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


def train_ring_model(
    features: pd.DataFrame, y: np.ndarray, seed: int = 0, rounds: int = 300, version: str = ""
) -> RingModel:
    """Fit on a stratified 70 %, calibrate (isotonic) on the other 30 %; metrics on that 30 %."""
    if y.sum() < 4 or (1 - y).sum() < 4:
        raise ValueError(f"need at least 4 positive and 4 negative clusters, got {int(y.sum())} positive")
    names = list(features.columns)
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=0.3, stratify=y, random_state=seed)
    x = features.to_numpy(dtype=np.float64)
    params = dict(PARAMS, seed=seed, scale_pos_weight=float((y[tr] == 0).sum() / max((y[tr] == 1).sum(), 1)))
    booster = lgb.train(params, lgb.Dataset(x[tr], y[tr], feature_name=names), num_boost_round=rounds)
    raw_va = booster.predict(x[va])
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw_va, y[va])
    model = RingModel(booster, iso, names, version=version)
    cal = model.predict(features.iloc[va])
    model.metrics = {
        "val_auprc": float(average_precision_score(y[va], cal)),
        "val_auprc_score_mean": float(
            average_precision_score(y[va], np.nan_to_num(features["score_mean"].to_numpy()[va]))
        ),
        "train_clusters": len(tr),
        "val_clusters": len(va),
        "positives": int(y.sum()),
    }
    return model
