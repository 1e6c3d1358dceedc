"""The collusion score: a LightGBM classifier over cluster features, Platt-calibrated out of fold.

Training labels come from planted (or investigated) rings: a cluster is positive when one ring
covers it with Jaccard >= 0.5, or when at least half of its members are fraudulent.

Rings are few (a 60k-user graph holds ~120), so no cluster is spent on a held-out calibration
split: ``folds`` boosters, each fitted without one stratified fold, score the fold they left
out; the sigmoid (Platt) calibration is fitted on those out-of-fold margins and the final
booster on every cluster. Isotonic steps were tried first: with ~50 validation positives they
tied most flagged clusters on one plateau, so the 0.5 threshold cut through it arbitrarily.

Methods (:func:`fit_ring_model`)
--------------------------------
- ``trees`` (``settings.ring_method``'s default): LightGBM over the cluster features, as above.
- ``combined``: the ring subgraph GNN (:mod:`gnn.rings.subgraph_gnn`) is fitted first; its
  out-of-fold logit becomes one more column (``gnn_logit``) of the trees, so no cluster's
  column comes from a network that saw its label. The fitted GNN rides along in the pickle
  (``RingModel.gnn``, a CPU state dict) and gives the column when scoring
  (:func:`ring_inputs`).
- ``auto``: both are fitted and the one with the higher out-of-fold AUPRC is kept; its
  metrics record both figures and ``auto_chose_combined``.

Models pickled before the GNN existed have no ``gnn`` attribute in their state; the class
default (None) reads them as trees-only models.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from gnn.rings.candidates import Candidates
from graphrisk.errors import ConfigError
from graphrisk.graph_schema import NodeLabel, RelType

if TYPE_CHECKING:
    # Imported lazily: PyTorch Geometric is loaded only by models that use the GNN (a pickled
    # combined model imports it itself when unpickled).
    from gnn.rings.subgraph_gnn import GNNConfig, RingGNNScorer

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
    return match_members(cand.member_table(), cand.num_clusters, labels)


def match_members(mt: pd.DataFrame, num_clusters: int, labels: pd.DataFrame) -> pd.DataFrame:
    """:func:`best_ring_match` of a member table (``cluster, user_id`` rows), kept without its
    candidates' user graph (a replay keeps the clusters of past hours this way)."""
    sizes = mt.groupby("cluster").size()
    lab = labels.set_index("user_id")
    fraud = lab["is_fraud"].reindex(mt["user_id"]).fillna(0).to_numpy(dtype=np.float64)
    out = pd.DataFrame(index=pd.RangeIndex(num_clusters, name="cluster"))
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


def colluding(match: pd.DataFrame) -> np.ndarray:
    """1 for a colluding cluster of a :func:`best_ring_match` table, else 0."""
    return (
        ((match["jaccard"] >= MATCH_JACCARD) | (match["fraud_share"] >= FRAUD_SHARE))
        .to_numpy()
        .astype(np.int64)
    )


def cluster_labels(cand: Candidates, labels: pd.DataFrame) -> np.ndarray:
    """1 for a colluding cluster (ring Jaccard >= 0.5, or >= 50 % fraudulent members), else 0."""
    return colluding(best_ring_match(cand, labels))


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
    # The ring subgraph GNN whose logit is the ``gnn_logit`` column (None: trees only).
    gnn: RingGNNScorer | None = None

    @property
    def method(self) -> str:
        """``combined`` when the trees read the GNN's logit, else ``trees``."""
        return "combined" if getattr(self, "gnn", None) is not None else "trees"

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
    features: pd.DataFrame,
    y: np.ndarray,
    seed: int = 0,
    rounds: int = 300,
    version: str = "",
    folds: int = 5,
    groups: np.ndarray | None = None,
) -> RingModel:
    """Fit the trees on every cluster; calibrate (Platt) on out-of-fold margins; metrics out of fold.

    ``groups`` keeps rows of one group in one fold: the same ring seen at several moments must
    not be scored out of fold by trees that saw it an hour earlier.
    """
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
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    if groups is not None:
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    for tr, va in splitter.split(x, y, groups):
        oof[va] = fit(tr).predict(x[va], raw_score=True)
    platt = LogisticRegression(C=1e6).fit(oof.reshape(-1, 1), y)
    model = RingModel(fit(np.arange(len(y))), platt, names, version=version)
    cal = _calibrate(platt, oof)
    model.metrics = {
        "val_auprc": float(average_precision_score(y, cal)),
        "val_auprc_score_mean": float(
            average_precision_score(y, np.nan_to_num(features["score_mean"].to_numpy()))
        )
        if "score_mean" in features
        else float("nan"),
        "train_clusters": len(y),
        "val_clusters": len(y),
        "folds": folds,
        "positives": int(y.sum()),
    }
    return model


GNN_COLUMN = "gnn_logit"
METHODS = ("trees", "combined", "auto")


class RingMethodError(ConfigError, ValueError):
    """The ring method cannot do what was asked (a bad ``GRAPHRISK_RING_METHOD`` for it)."""


def require_past_moments_method(method: str) -> None:
    """Raise :class:`RingMethodError` unless ``method`` can train on past moments: only the
    trees can, since the ring GNN would need every past moment's subgraphs, which are not kept."""
    if method != "trees":
        raise RingMethodError(
            f"ring method {method!r} cannot train on past moments (GRAPHRISK_RING_METHOD); use 'trees'"
        )


def fit_ring_model(
    features: pd.DataFrame,
    y: np.ndarray,
    graphs: list | None = None,
    method: str = "trees",
    seed: int = 0,
    version: str = "",
    gnn_config: GNNConfig | None = None,
    groups: np.ndarray | None = None,
) -> RingModel:
    """The ring model by ``method`` (see the module docstring); ``graphs`` from
    :func:`~gnn.rings.subgraph_gnn.build_ring_graphs` are needed unless ``method`` is ``trees``.
    ``groups`` (rows of one ring at several moments, :mod:`gnn.rings.moments`) are for the
    trees alone: the GNN needs every row's subgraph, which past moments do not keep.
    """
    if method not in METHODS:
        raise ValueError(f"ring method {method!r} not in {METHODS}")
    if groups is not None:
        require_past_moments_method(method)
    trees = (
        train_ring_model(features, y, seed=seed, version=version, groups=groups)
        if method != "combined"
        else None
    )
    if method == "trees":
        assert trees is not None
        return trees
    if graphs is None:
        raise ValueError(f"ring method {method!r} needs the clusters' subgraphs")
    from gnn.rings.subgraph_gnn import GNNConfig, fit_ring_gnn

    cfg = gnn_config or GNNConfig(seed=seed)
    scorer, oof = fit_ring_gnn(graphs, y, cfg)
    combined = train_ring_model(features.assign(**{GNN_COLUMN: oof}), y, seed=seed, version=version)
    combined.gnn = scorer
    combined.metrics["gnn_oof_auprc"] = scorer.metrics["oof_auprc"]
    if trees is None:
        return combined
    # Validation decides: out-of-fold AUPRC of the calibrated scores, trees alone vs combined.
    # The metrics record the choice (``auto_chose_combined``: 1.0 or 0.0) and both figures.
    keep = combined if combined.metrics["val_auprc"] > trees.metrics["val_auprc"] else trees
    keep.metrics["auto_trees_val_auprc"] = trees.metrics["val_auprc"]
    keep.metrics["auto_combined_val_auprc"] = combined.metrics["val_auprc"]
    keep.metrics["auto_chose_combined"] = float(keep is combined)
    keep.metrics["gnn_oof_auprc"] = combined.metrics["gnn_oof_auprc"]
    return keep


def ring_inputs(
    model: RingModel,
    features: pd.DataFrame,
    cand: Candidates,
    nodes: dict[NodeLabel, pd.DataFrame],
    edges: dict[RelType, pd.DataFrame],
    scores: pd.DataFrame | None = None,
    graphs: list | None = None,
) -> pd.DataFrame:
    """``features`` plus, for a combined model, the GNN's logit column (trees-only: unchanged)."""
    gnn = getattr(model, "gnn", None)
    if gnn is None:
        return features
    from gnn.rings.subgraph_gnn import build_ring_graphs

    graphs = graphs if graphs is not None else build_ring_graphs(cand, nodes, edges, scores)
    return features.assign(**{GNN_COLUMN: gnn.logits(graphs) if len(graphs) else np.zeros(0)})
