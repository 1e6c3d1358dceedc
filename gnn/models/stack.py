"""Stacking: first-stage out-of-fold scores, propagated over the graph, feed a second GBDT;
and a blend of finished scorers with its weight chosen on validation.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from gnn.data.dataset import NodeDataset, Split
from gnn.features import scatter_aggregate
from gnn.models.gbdt import GBDTScorer


def propagate_scores(dataset: NodeDataset, scores: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per target-to-target relation: mean / max / std of neighbours' scores and the 2-hop mean."""
    n = dataset.num_nodes
    s = torch.as_tensor(scores, dtype=torch.float32)[:, None]
    blocks, names = [s], ["stage1_score"]
    for et in dataset.data.edge_types:
        if et[0] != dataset.target or et[2] != dataset.target:
            continue
        ei = dataset.data[et].edge_index
        m1 = scatter_aggregate(s, ei, n, "mean")
        blocks += [m1, scatter_aggregate(s, ei, n, "max"), scatter_aggregate(s, ei, n, "std")]
        blocks.append(scatter_aggregate(m1, ei, n, "mean"))
        names += [f"{et[1]}_score_{r}" for r in ("mean", "max", "std", "hop2_mean")]
    return torch.cat(blocks, 1).numpy(), names


class StackedScorer:
    """Two-stage scorer: out-of-fold first-stage scores and their graph propagation become
    extra features of a second-stage GBDT.

    Stage 1 is ``base`` refit on ``folds`` folds of the training nodes; a training node's score
    comes from the fold model that did not see its label, every other node gets the mean over
    folds. Stage 2 is a GBDT over the stage-1 features plus those scores and their neighbour
    mean / max / std. Caveat: a training node's neighbours' scores may come from fold models
    that saw its label; this only makes stage 2 trust them a little more (test nodes' labels
    are never read).

    Args:
        base: First-stage scorer (default: :class:`GBDTScorer` without refit).
        folds: Number of folds.
        second: Second-stage GBDT (default: :class:`GBDTScorer`).
        seed: Fold seed.
    """

    name = "stack"
    # The second stage reads stage-1 scores held per node of the training graph
    # (``second.extra_features``): any other graph, or an applicant's neighbourhood, has a
    # different node count and predict_proba fails.
    serves_new_graph = False
    serves_applicants = False
    serving_limit = "its stage-1 score columns exist only for the training graph's nodes"

    def __init__(
        self, base: Any | None = None, folds: int = 5, second: GBDTScorer | None = None, seed: int = 0
    ) -> None:
        self.base = base if base is not None else GBDTScorer(refit=False, seed=seed)
        self.folds = folds
        self.second = second if second is not None else GBDTScorer(seed=seed)
        self.seed = seed
        self.feature_names: list[str] = []
        self.validation_scores_: np.ndarray | None = None
        self.stage1_: np.ndarray | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        return {
            "name": self.name,
            "base": self.base.config,
            "folds": self.folds,
            "second": self.second.config,
            "seed": self.seed,
        }

    def _stage1(self, dataset: NodeDataset, split: Split) -> np.ndarray:
        y = dataset.y
        train_idx = np.flatnonzero(split.train)
        oof = np.zeros(dataset.num_nodes)
        rest_sum = np.zeros(dataset.num_nodes)
        kfold = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        for fit_part, held in kfold.split(train_idx, y[train_idx]):
            train = np.zeros_like(split.train)
            train[train_idx[fit_part]] = True
            model = copy.deepcopy(self.base).fit(dataset, Split(train, split.val, split.test, split.seed))
            scores = model.predict_proba(dataset)
            oof[train_idx[held]] = scores[train_idx[held]]
            rest_sum += scores
        return np.where(split.train, oof, rest_sum / self.folds)

    def fit(self, dataset: NodeDataset, split: Split) -> StackedScorer:
        """Stage 1 out of fold on ``split.train``, then stage 2 as a GBDT over the result."""
        self.stage1_ = self._stage1(dataset, split)
        extra, names = propagate_scores(dataset, self.stage1_)
        self.second.extra_features = (extra, names)
        self.second.fit(dataset, split)
        self.feature_names = self.second.feature_names
        self.validation_scores_ = self.second.validation_scores_
        return self

    def predict_proba(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """Scores from the second stage (stage-1 scores are those computed at fit)."""
        return self.second.predict_proba(dataset, label_mask)

    def __repr__(self) -> str:
        return f"StackedScorer(base={self.base.name}, folds={self.folds}, second={self.second!r})"


class BlendScorer:
    """Weighted mean of the rank-normalised scores of fitted scorers, weights chosen on the
    validation scores (a grid over the simplex for two or three members).

    Args:
        members: Scorers to fit and blend.
        grid: Step of the weight grid.
    """

    name = "blend"
    # Scores are ranks within the scored dataset: a graph is ranked against itself, but one
    # applicant's small neighbourhood gives a rank that means nothing.
    serves_new_graph = True
    serves_applicants = False
    serving_limit = "its scores are ranks within the scored dataset, meaningless for one applicant"

    def __init__(self, members: list[Any], grid: float = 0.1) -> None:
        self.members = members
        self.grid = grid
        self.weights_: np.ndarray | None = None
        self.feature_names: list[str] = []
        self.validation_scores_: np.ndarray | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        return {"name": self.name, "members": [m.config for m in self.members], "grid": self.grid}

    @staticmethod
    def _rank(s: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(s)) / max(len(s) - 1, 1)

    def fit(self, dataset: NodeDataset, split: Split) -> BlendScorer:
        """Fit each member, then pick weights maximising validation average precision."""
        for m in self.members:
            m.fit(dataset, split)
        self.feature_names = sorted({f for m in self.members for f in m.feature_names})
        val = np.stack([self._rank(m.validation_scores_) for m in self.members], 1)
        y = dataset.y[split.val]
        steps = np.arange(0, 1 + 1e-9, self.grid)
        best, best_w = -1.0, np.ones(len(self.members)) / len(self.members)
        for w in np.array(np.meshgrid(*[steps] * len(self.members))).reshape(len(self.members), -1).T:
            if abs(w.sum() - 1) > 1e-6:
                continue
            ap = average_precision_score(y, val @ w)
            if ap > best:
                best, best_w = ap, w
        self.weights_ = best_w
        self.validation_scores_ = val @ best_w
        return self

    def predict_proba(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """Blended rank score in [0, 1] (calibrate before reading it as a probability)."""
        scores = np.stack([self._rank(m.predict_proba(dataset, label_mask)) for m in self.members], 1)
        return scores @ self.weights_

    def __repr__(self) -> str:
        return f"BlendScorer({[m.name for m in self.members]}, weights={self.weights_})"
