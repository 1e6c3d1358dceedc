"""Scorers with one interface: ``fit(dataset, split) -> self``, ``predict_proba(dataset)``,
``feature_names``, ``config``, ``validation_scores_``; :func:`make_model` resolves names."""

from __future__ import annotations

from typing import Any

from gnn.models.base import FeatureOptions, Scorer, seed_everything, tabular_features
from gnn.models.baseline import LogisticScorer
from gnn.models.bwgnn import BWGNN, BWGNNScorer
from gnn.models.gbdt import GBDTScorer
from gnn.models.graph_trees import GraphTreesScorer
from gnn.models.hetero_sage import HeteroSAGE, HeteroSAGEScorer
from gnn.models.stack import BlendScorer, StackedScorer

MODELS: dict[str, type] = {
    "logreg": LogisticScorer,
    "gbdt": GBDTScorer,
    "sage": HeteroSAGEScorer,
    "bwgnn": BWGNNScorer,
    "stack": StackedScorer,
    # A GNN's out-of-fold score and embedding as columns of the GBDT (gnn/models/graph_trees.py).
    "gnn+gbdt": GraphTreesScorer,
}


def make_model(name: str, seed: int = 0, **kwargs: Any) -> Any:
    """An unfitted scorer from its config name (``logreg``, ``gbdt``, ``sage``, ``bwgnn``,
    ``stack``, ``gnn+gbdt``) and keyword arguments (as in its ``config``)."""
    try:
        cls = MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None
    return cls(seed=seed, **kwargs)


__all__ = [
    "BWGNN",
    "MODELS",
    "BWGNNScorer",
    "BlendScorer",
    "FeatureOptions",
    "GBDTScorer",
    "GraphTreesScorer",
    "HeteroSAGE",
    "HeteroSAGEScorer",
    "LogisticScorer",
    "Scorer",
    "StackedScorer",
    "make_model",
    "seed_everything",
    "tabular_features",
]
