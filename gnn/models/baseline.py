"""Plain baseline: logistic regression on a node's own features only (no graph, no labels)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from gnn.data.dataset import NodeDataset, Split
from gnn.features import scale_features


class LogisticScorer:
    """Logistic regression on scaled own features (signed log, standardised, NaN -> mean).

    Args:
        c: Inverse regularisation strength.
        seed: Solver seed.
    """

    name = "logreg"
    # As the GNNs: inputs standardised with the scored dataset's own statistics.
    serves_new_graph = True
    serves_applicants = False
    serving_limit = (
        "inputs are standardised over the scored graph; one applicant's star has no such statistics"
    )

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c = c
        self.seed = seed
        self.feature_names: list[str] = []
        self.validation_scores_: np.ndarray | None = None
        self.model_: LogisticRegression | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        return {"name": self.name, "c": self.c, "seed": self.seed}

    def fit(self, dataset: NodeDataset, split: Split) -> LogisticScorer:
        """Fit on ``split.train``; score ``split.val``."""
        x = scale_features(dataset.x).numpy()
        self.feature_names = list(dataset.feature_names)
        self.model_ = LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed)
        self.model_.fit(x[split.train], dataset.y[split.train])
        self.validation_scores_ = self.model_.predict_proba(x[split.val])[:, 1]
        return self

    def predict_proba(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """P(fraud) per target node (``label_mask`` unused: no label features)."""
        if self.model_ is None:
            raise RuntimeError("LogisticScorer.predict_proba before fit")
        return self.model_.predict_proba(scale_features(dataset.x).numpy())[:, 1]

    def __repr__(self) -> str:
        return f"LogisticScorer(C={self.c})"
