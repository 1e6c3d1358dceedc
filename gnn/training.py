"""Train, choose, calibrate and register a user risk model on the entity graph's snapshot.

Candidates that could not be served (on another snapshot, or to a new applicant) are skipped;
the others are fitted on the same split and the best by validation AUPRC wins. It is calibrated
(Platt scaling, which keeps the ranking) on held-out scores of the model actually served, gets
its decision thresholds (a target precision; a review band under it sized by the review
capacity) from the same scores, and is stored in the registry with its metrics and lineage.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from gnn.calibration import Calibrator
from gnn.data.dataset import NodeDataset
from gnn.data.entity_graph import entity_graph_dataset
from gnn.evaluate import recall_at_k
from gnn.lineage import label_set_hash
from gnn.models import MODELS, make_model, seed_everything
from gnn.models.base import FeatureOptions
from gnn.monitor.reference import save_entity_reference
from gnn.registry import ModelMeta, ModelRegistry
from gnn.thresholds import band_fractions, threshold_for_band, threshold_for_precision
from graphrisk.errors import GraphRiskError
from pipelines.snapshot import read_manifest

# Only models every serving path can use, and the one that measures best: `stack` cannot score
# any graph but its training one, and the GNNs see a different neighbourhood on an applicant's
# star than in the batch graph (see each scorer's `serving_limit`).
DEFAULT_CANDIDATES = ("gbdt",)

# The entity graph has ~60 user features and 18 relation types, so 2-hop aggregates give
# ~1,100 columns: a faster learning rate and fewer rounds keep training in seconds without
# losing validation AUPRC on the synthetic graph. One LightGBM thread: with the store and the
# API on the same 2 cores, OpenMP's busy-waiting threads made fits 10-20x slower (121 s vs 6.6 s
# on 5,000 users under load).
#
# No training-label features: a model is trained on one graph and scores users whose
# neighbours carry no labels yet (new applicants, a graph it never saw). With them, AUPRC on
# a held-out graph from another seed fell to 0.926 while the same-graph test gained nothing
# (0.984 with, 0.988 without; 30k training users, 100k scored, seeds 41 -> 42).
#
# The refit on train + validation is served, calibrated on 5-fold out-of-fold scores of its own
# configuration. Against serving the early-stopped booster calibrated on its validation scores
# (20k users, seed 41, split seeds 0-2, means; figures in issue 11): test AUPRC 0.969 vs
# 0.961, Brier 0.0020 vs 0.0024, log loss 0.0093 vs 0.0114, mean score 0.0202 vs 0.0208 at a
# fraud rate of 0.0201; on the whole seed-42 graph AUPRC 0.907 vs 0.887, Brier 0.0048 vs 0.0054.
# The cost is five more fits (training 60-80 s vs 12 s at 20k users on one thread).
# The trees' fit on the entity graph, alone or under the GNN's columns (scorers copy it).
_ENTITY_TREES: dict[str, Any] = {
    "params": {"learning_rate": 0.08},
    "max_rounds": 600,
    "patience": 60,
    "n_jobs": 1,
    "features": FeatureOptions(label_hops=0, history_labels=False),
}
ENTITY_OVERRIDES: dict[str, dict[str, Any]] = {
    "gbdt": {**_ENTITY_TREES, "refit": True, "calibration_folds": 5},
    # Servable to applicants: a 2-layer GNN over own features only, without edge times, gives an
    # applicant's star the batch graph's columns (tests/test_graph_trees.py). The time-aware
    # GNN (the class default) measures better on batch graphs but the star carries no edge times.
    "gnn+gbdt": {
        "gnn": {
            "hidden": 64,
            "layers": 2,
            "epochs": 150,
            "patience": 25,
            "embed_dim": 8,
            "features": FeatureOptions(neighbour_hops=0, label_hops=0, history_labels=False),
        },
        "trees": _ENTITY_TREES,
        "folds": 5,
    },
}


def device_kwargs(name: str, device: str | None) -> dict[str, Any]:
    """``{"device": device}`` for a model that takes one (the GNNs), else nothing."""
    cls = MODELS.get(name.lower())
    if device is None or cls is None:
        return {}
    # Through the class hierarchy: a subclass may pass its arguments on as **kwargs.
    takes = any(
        "device" in inspect.signature(k.__init__).parameters for k in cls.__mro__ if "__init__" in vars(k)
    )
    return {"device": device} if takes else {}


def candidate_kwargs(name: str, device: str | None = None) -> dict[str, Any]:
    """A candidate's constructor arguments on the entity graph: :data:`ENTITY_OVERRIDES`, plus
    the ``device`` of the models that take one."""
    return {**ENTITY_OVERRIDES.get(name, {}), **device_kwargs(name, device)}


class UnservableModelError(GraphRiskError):
    """No candidate asked for can be served: each cannot score another snapshot or a new applicant."""


def serving_gaps(scorer: Any) -> list[str]:
    """Why ``scorer`` cannot be served (empty when it can): a registered model must score
    snapshots other than its training one and new applicants (``gnn.online``).

    A scorer that declares no capability flags counts as unable.
    """
    gaps = []
    if not getattr(scorer, "serves_new_graph", False):
        gaps.append("cannot score a snapshot other than its training one")
    if not getattr(scorer, "serves_applicants", False):
        gaps.append("cannot score a new applicant")
    limit = getattr(scorer, "serving_limit", "")
    if gaps and limit:
        gaps[-1] += f" ({limit})"
    return gaps


def held_out_scores(scorer: Any, validation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (a mask) and raw scores of the served model's configuration on rows the scoring
    model did not train on: what calibration and thresholds are fitted to.

    A scorer with ``held_out_mask_`` (GBDT) says so itself; any other serves the model its
    ``validation_scores_`` came from, scored on ``validation``.

    Raises:
        ValueError: the scorer serves a model with no held-out scores (a refit without folds).
    """
    if hasattr(scorer, "held_out_mask_"):
        if scorer.held_out_mask_ is None:
            raise ValueError(
                f"{scorer!r} serves a refit with no held-out scores to calibrate on; set calibration_folds"
            )
        return scorer.held_out_mask_, np.asarray(scorer.held_out_scores_, dtype=np.float64)
    return validation, np.asarray(scorer.validation_scores_, dtype=np.float64)


@dataclass
class RiskModel:
    """A fitted scorer with its calibration and decision thresholds: what serving loads."""

    scorer: Any
    calibrator: Calibrator
    review_threshold: float
    block_threshold: float
    feature_names: list[str]
    train_labels: pd.DataFrame = field(repr=False)
    # The model new applicants are scored with, when it is not this one: decision-point
    # training (gnn.decision_training) serves an onboarding model to the API's applicant path
    # and this (behaviour) model to the hourly re-score of users with history.
    applicant_model: RiskModel | None = field(default=None, repr=False)

    @property
    def for_applicants(self) -> RiskModel:
        """The model the onboarding path scores applicants with."""
        return self.applicant_model if self.applicant_model is not None else self

    def label_mask(self, dataset: NodeDataset) -> np.ndarray:
        """Which of ``dataset``'s users had their label read in training (new users: none).

        The dataset's ``y`` is filled from the training labels for those users, so label
        features see exactly what they saw in training.
        """
        known = np.zeros(dataset.num_nodes, dtype=bool)
        pos = pd.Index(dataset.node_ids).get_indexer(self.train_labels["user_id"])
        hit = pos >= 0
        known[pos[hit]] = True
        dataset.y[pos[hit]] = self.train_labels["is_fraud"].to_numpy()[hit]
        return known

    @property
    def known_fraud(self) -> frozenset[str]:
        """Users labelled fraud in training."""
        return frozenset(self.train_labels.loc[self.train_labels["is_fraud"] == 1, "user_id"])

    @property
    def explains_inputs(self) -> bool:
        """Whether the scorer is one tree model over :meth:`predict_with_inputs`'s rows, so a
        kept row's TreeSHAP contributions explain its published score exactly."""
        return getattr(self.scorer, "booster_", None) is not None and hasattr(self.scorer, "inputs")

    def predict_with_inputs(self, dataset: NodeDataset) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities for every user of ``dataset`` and, when
        :attr:`explains_inputs`, the model's input rows they came from (else ``None``)."""
        mask = self.label_mask(dataset)
        if not self.explains_inputs:
            return self.calibrator.transform(self.scorer.predict_proba(dataset, label_mask=mask)), None
        x = self.scorer.inputs(dataset, mask)
        return self.calibrator.transform(self.scorer.predict_inputs(x)), x

    def predict(self, dataset: NodeDataset) -> np.ndarray:
        """Calibrated probabilities for every user of ``dataset``."""
        return self.predict_with_inputs(dataset)[0]

    def band(self, scores: np.ndarray) -> np.ndarray:
        """Decision band per score: ``block``, ``review`` or ``allow``."""
        return np.where(
            scores >= self.block_threshold,
            "block",
            np.where(scores >= self.review_threshold, "review", "allow"),
        )


def _test_metrics(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    if len(np.unique(y)) < 2:
        return {}
    return {
        "test_auroc": float(roc_auc_score(y, s)),
        "test_auprc": float(average_precision_score(y, s)),
        "test_rec_at_k": float(recall_at_k(y, s)),
        "test_f1_macro": float(f1_score(y, s >= threshold, average="macro")),
    }


def train_entity_model(
    snapshot_dir: Path,
    labels: pd.DataFrame,
    registry: ModelRegistry,
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
    split: str = "random",
    seed: int = 0,
    target_precision: float = 0.9,
    review_fraction: float = 0.01,
    log: Callable[[str], None] | None = None,
    label_sources: dict[str, Any] | None = None,
    device: str | None = None,
) -> tuple[ModelMeta, dict[str, Any]]:
    """Fit every servable candidate, keep the best on validation AUPRC, calibrate and register it.

    ``device`` is where GNN candidates train (``None``: CUDA when present, else the CPU); the
    registered model is saved with its weights on the CPU either way.

    ``label_sources`` says where ``labels`` came from (a file, investigators' decisions); it is
    kept in the version's metadata (``notes.labels``).

    A candidate that cannot score another snapshot or a new applicant is not fitted; the report
    lists it as ``not selectable: <why>``. The review threshold is chosen so that the band
    ``[review, block)`` holds about ``review_fraction`` of the held-out users.

    Returns:
        The registered version's metadata and a report of every candidate.

    Raises:
        UnservableModelError: no candidate can be served.
    """
    seed_everything(seed)
    report: dict[str, Any] = {"candidates": {}}
    servable = []
    for name in candidates:
        gaps = serving_gaps(make_model(name, seed=seed, **candidate_kwargs(name, device)))
        if gaps:
            report["candidates"][name] = {"selectable": False, "reason": "not selectable: " + "; ".join(gaps)}
            if log:
                log(f"{name}: {report['candidates'][name]['reason']}")
        else:
            servable.append(name)
    if not servable:
        why = "; ".join(f"{n} {r['reason']}" for n, r in report["candidates"].items())
        raise UnservableModelError(
            f"no candidate can be served ({why}); servable: {', '.join(DEFAULT_CANDIDATES)}"
        )
    dataset = entity_graph_dataset(snapshot_dir, labels, split=split, seeds=(seed,))
    sp = dataset.splits[0]
    y_val, y_test = dataset.y[sp.val], dataset.y[sp.test]
    report = {"dataset": repr(dataset), **report}
    best: tuple[float, str, Any] | None = None
    for name in servable:
        t0 = time.perf_counter()
        model = make_model(name, seed=seed, **candidate_kwargs(name, device)).fit(dataset, sp)
        fit_s = time.perf_counter() - t0
        val_ap = float(average_precision_score(y_val, model.validation_scores_))
        report["candidates"][name] = {"selectable": True, "val_auprc": val_ap, "fit_s": round(fit_s, 2)}
        if log:
            log(f"{name}: validation AUPRC {val_ap:.4f} in {fit_s:.1f}s")
        if best is None or val_ap > best[0]:
            best = (val_ap, name, model)
    assert best is not None
    val_ap, name, scorer = best
    # Calibrated on the served model's configuration scoring rows it did not train on: the
    # early-stopped booster's validation scores are another model's (the refit is served), and
    # the refit's own scores on validation are in-sample (validation AUPRC 1.000).
    held, raw = held_out_scores(scorer, sp.val)
    y_held = dataset.y[held]
    # Platt, not isotonic: isotonic steps tie the top scores (with a few hundred positives) and
    # an investigator queue sorted by score loses its order there; Platt keeps the ranking.
    calibrator = Calibrator("platt").fit(raw, y_held)
    held_cal = calibrator.transform(raw)
    block = threshold_for_precision(held_cal, y_held, target_precision)
    review = threshold_for_band(held_cal, block, review_fraction)
    val_cal = held_cal[sp.val[held]]
    train_labels = pd.DataFrame(
        {"user_id": dataset.node_ids[sp.train], "is_fraud": dataset.y[sp.train]}
    ).reset_index(drop=True)
    model = RiskModel(
        scorer, calibrator, float(review), float(block), list(scorer.feature_names), train_labels
    )
    test_scores = model.predict(dataset)[sp.test]
    metrics = {
        "val_auprc": val_ap,
        "held_out_auprc": float(average_precision_score(y_held, raw)),
        **_test_metrics(y_test, test_scores, block),
    }
    thresholds = {
        "block": float(block),
        "review": float(review),
        "target_precision": target_precision,
        "review_fraction": review_fraction,
        "fitted_on": f"{int(held.sum())} held-out users",
        "val_fractions": band_fractions(val_cal, review, block),
        "test_fractions": band_fractions(test_scores, review, block),
    }
    report["chosen"] = name
    report["metrics"] = metrics
    report["thresholds"] = thresholds
    manifest = read_manifest(snapshot_dir)
    meta = registry.register(
        model,
        {
            "model_name": name,
            "snapshot_hash": manifest.get("snapshot_hash", "none"),
            "label_set_hash": label_set_hash(labels),
            "feature_names": list(scorer.feature_names),
            "hyperparameters": {k: json.loads(json.dumps(v, default=str)) for k, v in scorer.config.items()},
            "metrics": metrics,
            "dataset": f"entity graph ({split} split, seed {seed})",
            "threshold": float(block),
            "notes": {
                "review_threshold": float(review),
                "target_precision": target_precision,
                "thresholds": thresholds,
                "candidates": report["candidates"],
                "labels": {
                    "users": len(labels),
                    "fraud": int(labels["is_fraud"].sum()),
                    **(label_sources or {}),
                },
            },
        },
    )
    # Monitoring: the training split's input rows, summarised beside the model (gnn/monitor).
    save_entity_reference(registry.root / meta.version, meta.version, model, dataset, sp.train)
    return meta, report
