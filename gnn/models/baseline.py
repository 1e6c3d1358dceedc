"""Plain baseline: logistic regression on a node's own features only (no graph, no labels)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from gnn.data.dataset import NodeDataset, Split
from gnn.features import FeatureScaler


class LogisticScorer:
    """Logistic regression on scaled own features (signed log, standardised, NaN -> mean), the
    scaling fitted on the training nodes (:class:`gnn.features.FeatureScaler`, ``scaler_``).

    Args:
        c: Inverse regularisation strength.
        seed: Solver seed.
    """

    name = "logreg"
    # Inputs are scaled with the training nodes' statistics and a score reads only the node's
    # own row: an applicant's star (gnn.online) gives it the applicant's batch-definition row.
    serves_new_graph = True
    serves_applicants = True
    serving_limit = ""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c = c
        self.seed = seed
        self.feature_names: list[str] = []
        self.validation_scores_: np.ndarray | None = None
        self.model_: LogisticRegression | None = None
        self.scaler_: FeatureScaler | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        return {"name": self.name, "c": self.c, "seed": self.seed}

    def fit(self, dataset: NodeDataset, split: Split) -> LogisticScorer:
        """Fit on ``split.train``; score ``split.val``."""
        self.scaler_ = FeatureScaler.fit(dataset.x, split.train)
        x = self.scaler_.transform(dataset.x).numpy()
        self.feature_names = list(dataset.feature_names)
        self.model_ = LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed)
        self.model_.fit(x[split.train], dataset.y[split.train])
        self.validation_scores_ = self._proba(x[split.val])
        return self

    def _proba(self, x: np.ndarray) -> np.ndarray:
        """P(fraud) of scaled rows, each computed on its own.

        Not one matrix product: BLAS picks its kernel by the batch's shape, so a row's score
        would change in its last bits with the rows scored beside it.
        """
        assert self.model_ is not None
        z = (np.asarray(x, dtype=np.float64) * self.model_.coef_[0]).sum(axis=1) + self.model_.intercept_[0]
        return expit(z)

    def predict_proba(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """P(fraud) per target node (``label_mask`` unused: no label features).

        Raises:
            ValueError: ``dataset``'s own features are not the ones the model was fit on.
        """
        if self.model_ is None:
            raise RuntimeError("LogisticScorer.predict_proba before fit")
        if getattr(self, "scaler_", None) is None:  # pickled before the scaler was stored
            raise RuntimeError("LogisticScorer was fit without a stored input scaler; refit it")
        if list(dataset.feature_names) != self.feature_names:
            raise ValueError("LogisticScorer: the dataset's feature columns are not the ones it was fit on")
        return self._proba(self.scaler_.transform(dataset.x).numpy())

    def __repr__(self) -> str:
        return f"LogisticScorer(C={self.c})"
