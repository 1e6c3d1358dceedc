"""LightGBM on own, neighbour-aggregated and training-label features."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.model_selection import StratifiedKFold

from gnn.data.dataset import NodeDataset, Split
from gnn.models.base import FeatureOptions, tabular_features

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.02,
    "num_leaves": 31,
    "min_child_samples": 30,
    "colsample_bytree": 0.3,
    "subsample": 0.8,
    "subsample_freq": 1,
    "reg_lambda": 5.0,
    "verbose": -1,
}


class GBDTScorer:
    """Gradient-boosted trees (LightGBM) over tabular node features.

    Fit: early stopping on validation average precision; then, with ``refit``, a second model
    with 1.25x the best number of rounds on train + validation, whose label features also read
    the validation labels (more labelled context at test time). ``validation_scores_`` always
    come from the first model, which never saw the validation labels: they choose between
    models, but are not the served (refit) model's scores, so they must not calibrate it.

    ``held_out_mask_`` / ``held_out_scores_`` are what calibration may use: scores of the
    served configuration on rows the scoring model did not train on. Without ``refit`` they are
    the validation rows' scores; with ``refit`` and ``calibration_folds``, every train +
    validation row scored out of fold by a model of the refit's configuration (its rounds, fit
    on the other folds); with ``refit`` and no folds, ``None`` (nothing held out exists).

    Args:
        features: Which derived features to build (:class:`FeatureOptions`).
        params: LightGBM parameters over :data:`DEFAULT_PARAMS`.
        max_rounds: Upper bound on boosting rounds.
        patience: Early-stopping patience in rounds.
        refit: Refit on train + validation after early stopping.
        calibration_folds: With ``refit``, folds for the out-of-fold ``held_out_scores_``
            (0: none; each fold is one more fit).
        seed: Random seed.
        n_jobs: LightGBM threads.
    """

    name = "gbdt"
    # Trees over per-user columns: any graph's rows, and an applicant's row built by
    # gnn.online_features.StarFeatures, read the same columns.
    serves_new_graph = True
    serves_applicants = True
    serving_limit = ""

    def __init__(
        self,
        features: FeatureOptions | None = None,
        params: dict[str, Any] | None = None,
        max_rounds: int = 3000,
        patience: int = 200,
        refit: bool = True,
        seed: int = 0,
        n_jobs: int = 2,
        calibration_folds: int = 0,
    ) -> None:
        self.features = features or FeatureOptions()
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.max_rounds = max_rounds
        self.patience = patience
        self.refit = refit
        self.calibration_folds = calibration_folds
        self.seed = seed
        self.n_jobs = n_jobs
        self.feature_names: list[str] = []
        self.validation_scores_: np.ndarray | None = None
        self.held_out_mask_: np.ndarray | None = None
        self.held_out_scores_: np.ndarray | None = None
        self.best_rounds_: int = 0
        self.label_mask_: np.ndarray | None = None
        self.booster_: lgb.Booster | None = None
        # Extra per-node columns (for example stacked first-stage scores), set by a stacker.
        self.extra_features: tuple[np.ndarray, list[str]] | None = None

    def _features(self, dataset: NodeDataset, label_mask: np.ndarray) -> tuple[np.ndarray, list[str]]:
        x, names = tabular_features(dataset, label_mask, self.features)
        if self.extra_features is not None:
            extra, extra_names = self.extra_features
            x, names = np.hstack([x, extra.astype(np.float32)]), names + list(extra_names)
        return x, names

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        return {
            "name": self.name,
            "features": asdict(self.features),
            "params": self.params,
            "max_rounds": self.max_rounds,
            "patience": self.patience,
            "refit": self.refit,
            "calibration_folds": self.calibration_folds,
            "seed": self.seed,
        }

    def _model(self, rounds: int) -> lgb.LGBMClassifier:
        return lgb.LGBMClassifier(
            n_estimators=rounds, random_state=self.seed, n_jobs=self.n_jobs, **self.params
        )

    def fit(self, dataset: NodeDataset, split: Split) -> GBDTScorer:
        """Train on ``split.train``, stop early on ``split.val`` (must be non-empty)."""
        y = dataset.y
        x, self.feature_names = self._features(dataset, split.train)
        categorical = [self.feature_names.index(c) for c in dataset.categorical if c in self.feature_names]
        first = self._model(self.max_rounds)
        first.fit(
            x[split.train],
            y[split.train],
            eval_X=(x[split.val],),
            eval_y=(y[split.val],),
            eval_metric="average_precision",
            categorical_feature=categorical or "auto",
            callbacks=[lgb.early_stopping(self.patience, verbose=False)],
        )
        self.best_rounds_ = int(first.best_iteration_ or self.max_rounds)
        self.validation_scores_ = first.predict_proba(x[split.val])[:, 1]
        if self.refit:
            both = split.train | split.val
            x, _ = self._features(dataset, both)
            rounds = int(self.best_rounds_ * 1.25) + 1
            model = self._model(rounds)
            model.fit(x[both], y[both], categorical_feature=categorical or "auto")
            self.label_mask_ = both
            self.held_out_mask_, self.held_out_scores_ = None, None
            if self.calibration_folds > 0:
                self.held_out_mask_ = both
                self.held_out_scores_ = self._out_of_fold(dataset, both, x, categorical, rounds)
        else:
            model = first
            self.label_mask_ = split.train.copy()
            self.held_out_mask_, self.held_out_scores_ = split.val.copy(), self.validation_scores_
        self.booster_ = model.booster_
        self._best_iteration = None if self.refit else self.best_rounds_
        return self

    def _out_of_fold(
        self, dataset: NodeDataset, rows: np.ndarray, x: np.ndarray, categorical: list[int], rounds: int
    ) -> np.ndarray:
        """Scores of ``rows`` (a mask), each from a ``rounds``-round model fit on the other folds.

        ``x`` was built reading ``rows``' labels; it is reused when the features read no labels,
        otherwise each fold rebuilds them without its held rows' labels, which would otherwise
        reach their neighbours' label features and flatter the held-out scores.
        """
        y = dataset.y
        idx = np.flatnonzero(rows)
        out = np.empty(len(idx))
        reads_labels = self.features.label_hops > 0 or (
            self.features.history_labels and bool(dataset.history_keys)
        )
        folds = StratifiedKFold(self.calibration_folds, shuffle=True, random_state=self.seed)
        for fit_part, held in folds.split(idx, y[idx]):
            if reads_labels:
                mask = np.zeros_like(rows)
                mask[idx[fit_part]] = True
                x, _ = self._features(dataset, mask)
            model = self._model(rounds)
            model.fit(x[idx[fit_part]], y[idx[fit_part]], categorical_feature=categorical or "auto")
            out[held] = model.predict_proba(x[idx[held]])[:, 1]
        return out

    def inputs(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """The rows the trees read, one per target node, in :attr:`feature_names` order; label
        features read ``label_mask`` (default: fit's). Kept rows can be explained later exactly."""
        mask = self.label_mask_ if label_mask is None else label_mask
        x, _ = self._features(dataset, mask)
        return x

    def predict_inputs(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """P(fraud) for rows from :meth:`inputs`, on ``threads`` threads (0: all cores).

        Not the training thread count: a model fit on one thread beside other work still
        scores a million users on every core (36 s on one core, 19 s on two).
        """
        if self.booster_ is None:
            raise RuntimeError("GBDTScorer.predict before fit")
        return self.booster_.predict(x, num_iteration=self._best_iteration, num_threads=threads).astype(
            np.float64
        )

    def predict_proba(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """P(fraud) per target node; label features read ``label_mask`` (default: fit's)."""
        if self.booster_ is None:
            raise RuntimeError("GBDTScorer.predict_proba before fit")
        return self.predict_inputs(self.inputs(dataset, label_mask))

    def __repr__(self) -> str:
        return (
            f"GBDTScorer(rounds={self.best_rounds_}, refit={self.refit}, features={len(self.feature_names)})"
        )
