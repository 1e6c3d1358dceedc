"""``graphrisk train --events``: one model per decision point, from the event history, served.

The history is replayed hour by hour (:func:`gnn.backtest.run_backtest` with no test period):
every applicant's onboarding row and, once a day, users' refresh rows are kept. At the cut-off
(the history's last hour) an onboarding model and a behaviour model are fitted from the rows
whose labels were known by then (:func:`gnn.decision_models.fit_decision_model`). Both are
registered as one version: the behaviour model scores the snapshot's users
(:func:`gnn.scoring.score_users`), the onboarding model new applicants (``RiskModel.for_applicants``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from gnn.asof import ONBOARDING, REFRESH
from gnn.backtest import BacktestConfig, BacktestResult, fit_point_models, onboarding_times, run_backtest
from gnn.data.dataset import NodeDataset
from gnn.decision_models import DecisionModel, known_by
from gnn.lineage import event_log_hash, label_set_hash
from gnn.model_card import save_card_inputs
from gnn.models.base import tabular_features
from gnn.monitor.reference import save_decision_references
from gnn.registry import ModelMeta, ModelRegistry
from gnn.training import RiskModel
from pipelines.event_log import EventLog


class DecisionPointError(ValueError):
    """A decision point's model could not be fitted from the history given."""


class DecisionScorer:
    """A decision-point booster behind the scorer interface serving reads (inputs, predictions).

    Its rows come from the same feature functions as training: refresh rows are
    :func:`gnn.models.base.tabular_features` of the graph, onboarding rows the API's star.
    """

    serves_new_graph = True
    serves_applicants = True
    serving_limit = ""

    def __init__(self, model: DecisionModel) -> None:
        self.name = f"gbdt-{model.point}"
        self.point = model.point
        self.features = model.options
        self.feature_names = list(model.feature_names)
        self.booster_ = model.booster
        self._best_iteration = None
        self.extra_features = None
        self.validation_scores_: np.ndarray | None = None

    @property
    def config(self) -> dict[str, Any]:
        """What was fitted, JSON-able."""
        return {"name": self.name, "point": self.point, "features": vars(self.features),
                "rounds": self.booster_.current_iteration()}  # fmt: skip

    def fit(self, dataset: NodeDataset, split: Any) -> DecisionScorer:
        """Not fitted on a split: see :func:`gnn.decision_models.fit_decision_model`."""
        raise TypeError("decision-point models are fitted from replayed rows (graphrisk train --events)")

    def inputs(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """Rows the trees read for every user of ``dataset`` (the models read no labels)."""
        return tabular_features(dataset, np.zeros(dataset.num_nodes, dtype=bool), self.features)[0]

    def predict_inputs(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """Uncalibrated scores of rows from :meth:`inputs`."""
        return self.booster_.predict(x, num_threads=threads).astype(np.float64)

    def predict_proba(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated scores of every user of ``dataset``."""
        return self.predict_inputs(self.inputs(dataset))


def _risk_model(model: DecisionModel, labels: pd.DataFrame) -> RiskModel:
    return RiskModel(
        DecisionScorer(model), model.calibrator, model.review_threshold, model.block_threshold,
        list(model.feature_names), labels,
    )  # fmt: skip


def fit_served_models(
    result: BacktestResult, cutoff_ms: int, cfg: BacktestConfig, labels: pd.DataFrame, label_delay_h: float
) -> tuple[dict[str, DecisionModel], RiskModel, dict[str, float], list[dict[str, Any]]]:
    """Both decision-point models fitted from rows decided before ``cutoff_ms``, bundled as served.

    Returns the models by point, the behaviour model carrying the onboarding model for
    applicants (both with the labels known by the cut-off), the metrics a registry records, and
    each point's fit report.

    Raises:
        DecisionPointError: a point had too few rows or labels to fit.
    """
    fits: list[dict[str, Any]] = []
    models = fit_point_models(result.rows, cutoff_ms, cfg, labels, result.onboarded_at, fits)
    if any(p not in models for p in (ONBOARDING, REFRESH)):
        raise DecisionPointError("; ".join(str(f.get("error")) for f in fits if "error" in f))
    onboarded = onboarding_times(result.onboarded_at, labels["user_id"].to_numpy(object))
    known = labels[known_by(onboarded, cutoff_ms, label_delay_h)][["user_id", "is_fraud"]].reset_index(
        drop=True
    )
    behaviour = _risk_model(models[REFRESH], known)
    behaviour.applicant_model = _risk_model(models[ONBOARDING], known)
    metrics = {
        "val_auprc": models[REFRESH].metrics["val_auprc"],
        **{f"{p}_{k}": v for p, m in models.items() for k, v in m.metrics.items()},
    }
    return models, behaviour, metrics, fits


def register_served_models(
    registry: ModelRegistry,
    log: EventLog,
    labels: pd.DataFrame,
    result: BacktestResult,
    cutoff_ms: int,
    models: dict[str, DecisionModel],
    behaviour: RiskModel,
    metrics: dict[str, float],
    dataset: str,
    label_sources: dict[str, Any] | None,
    notes: dict[str, Any] | None = None,
) -> ModelMeta:
    """Register both decision-point models as one version, with what monitoring and the card read.

    Beside the model: the training rows' monitoring reference (gnn/monitor/reference.py) and the
    held-out scores and label counts the model card reads (gnn/model_card.py).
    """
    meta = registry.register(
        behaviour,
        {
            "model_name": "decision-points",
            "snapshot_hash": event_log_hash(log.clean),
            "label_set_hash": label_set_hash(labels),
            "feature_names": list(models[REFRESH].feature_names),
            "hyperparameters": {
                p: json.loads(json.dumps(DecisionScorer(m).config, default=str)) for p, m in models.items()
            },
            "metrics": metrics,
            "dataset": dataset,
            "threshold": models[REFRESH].block_threshold,
            "notes": {
                **(notes or {}),
                "moments": {
                    p: {"block": m.block_threshold, "review": m.review_threshold, "cutoff": m.cutoff_ms}
                    for p, m in models.items()
                },
                "applicant_features": list(models[ONBOARDING].feature_names),
            },
        },
    )
    save_decision_references(registry.root / meta.version, meta.version, models, result.rows, labels,
                             result.onboarded_at)  # fmt: skip
    save_card_inputs(registry.root / meta.version, models, result.rows, labels, result.onboarded_at, log.clean,
                     cutoff_ms, label_sources)  # fmt: skip
    return meta


def train_decision_point_models(
    log: EventLog,
    labels: pd.DataFrame,
    registry: ModelRegistry,
    config: BacktestConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    label_sources: dict[str, Any] | None = None,
) -> tuple[ModelMeta, dict[str, Any]]:
    """Replay ``log``, fit both decision points' models at its last hour, register them.

    ``label_sources`` says where ``labels`` came from (the label file, investigator decisions);
    the model card reports it.

    Raises:
        DecisionPointError: a point lacks labels known by the cut-off.
    """
    cfg = replace(config or BacktestConfig(), train_hours=10**7)  # collect rows only: no test period
    result = run_backtest(log, labels, cfg, progress)
    models, behaviour, metrics, fits = fit_served_models(result, result.end, cfg, labels, cfg.label_delay_h)
    dataset = (
        f"event history to {result.end} (epoch ms): onboarding rows at each application, refresh rows "
        f"every {cfg.sample_every_h} h; time-ordered validation (latest 30 %), labels known "
        f"{cfg.label_delay_h} h after onboarding"
    )
    meta = register_served_models(registry, log, labels, result, result.end, models, behaviour, metrics,
                                  dataset, label_sources)  # fmt: skip
    return meta, {"models": fits, "timings_s": result.timings_s, "cutoff": result.end}
