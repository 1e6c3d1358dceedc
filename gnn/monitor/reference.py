"""The training reference a production model is monitored against, stored with its version.

At training time (:func:`save_decision_references`, called by
:func:`gnn.decision_training.train_decision_point_models`) each decision point's training rows
are reduced to :class:`Reference`: per-feature percentiles and bin counts
(:class:`gnn.monitor.binning.FeatureBins`), the same for the calibrated score, the share of
rows per band at the model's thresholds, and the fraud rate of the labelled rows. It is a few
hundred kB whatever the number of rows, and lives beside the model::

    <data_dir>/models/<version>/monitor/refresh.npz
    <data_dir>/models/<version>/monitor/onboarding.npz
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gnn.monitor.binning import FeatureBins

REFERENCE_DIR = "monitor"
BANDS = ("allow", "review", "block")


class ReferenceMissingError(FileNotFoundError):
    """The model version has no monitoring reference (trained before monitoring existed)."""


@dataclass
class Reference:
    """What one decision point's model was trained on, compactly.

    Attributes:
        point: ``refresh`` (behaviour model) or ``onboarding``.
        version: The model version.
        features: Per-feature reference bins of the training rows.
        scores: Bins of the calibrated scores of the training rows (one column, ``score``).
        band_shares: Share of training rows per band (``allow``, ``review``, ``block``).
        thresholds: ``review`` and ``block`` score thresholds.
        rows: Training rows summarised.
        fraud_rate: Fraud share among the labelled training rows.
        meta: Anything else worth keeping (cut-off, label delay).
    """

    point: str
    version: str
    features: FeatureBins
    scores: FeatureBins
    band_shares: dict[str, float]
    thresholds: dict[str, float]
    rows: int
    fraud_rate: float
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write to ``path`` (``.npz``, no pickles) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        head = {
            "point": self.point, "version": self.version, "band_shares": self.band_shares,
            "thresholds": self.thresholds, "rows": self.rows, "fraud_rate": self.fraud_rate, "meta": self.meta,
        }  # fmt: skip
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            head=np.array(json.dumps(head, default=str)),
            names=np.array(self.features.names, dtype=str),
            quantiles=self.features.quantiles,
            counts=self.features.counts,
            score_quantiles=self.scores.quantiles,
            score_counts=self.scores.counts,
        )
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> Reference:
        """Read a reference written by :meth:`save`.

        Raises:
            ReferenceMissingError: no file at ``path``.
        """
        if not Path(path).exists():
            raise ReferenceMissingError(f"no monitoring reference at {path}")
        with np.load(path, allow_pickle=False) as z:
            head = json.loads(str(z["head"]))
            features = FeatureBins([str(n) for n in z["names"]], z["quantiles"], z["counts"])
            scores = FeatureBins(["score"], z["score_quantiles"], z["score_counts"])
        return Reference(
            head["point"], head["version"], features, scores, head["band_shares"], head["thresholds"],
            int(head["rows"]), float(head["fraud_rate"]), head.get("meta", {}),
        )  # fmt: skip


def band_of(scores: np.ndarray, review: float, block: float) -> np.ndarray:
    """``allow``, ``review`` or ``block`` per score, as the models band them."""
    return np.where(scores >= block, "block", np.where(scores >= review, "review", "allow"))


def band_shares(bands: np.ndarray) -> dict[str, float]:
    """Share of rows in each of the three bands (zero for an absent band)."""
    bands = np.asarray(bands)
    n = max(len(bands), 1)
    return {b: float(np.count_nonzero(bands == b) / n) for b in BANDS}


def build_reference(
    point: str,
    version: str,
    x: np.ndarray,
    names: list[str],
    scores: np.ndarray,
    review: float,
    block: float,
    y: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> Reference:
    """Summarise training rows ``x`` and their calibrated ``scores`` (``y``: 0/1, -1 unlabelled)."""
    labelled = np.asarray(y)[np.asarray(y) >= 0] if y is not None else np.zeros(0)
    return Reference(
        point=point,
        version=version,
        features=FeatureBins.fit(x, names),
        scores=FeatureBins.fit(np.asarray(scores, dtype=np.float64).reshape(-1, 1), ["score"]),
        band_shares=band_shares(band_of(np.asarray(scores), review, block)),
        thresholds={"review": float(review), "block": float(block)},
        rows=len(x),
        fraud_rate=float(labelled.mean()) if len(labelled) else float("nan"),
        meta=dict(meta or {}),
    )


def reference_path(model_dir: Path, point: str) -> Path:
    """Where a version folder keeps the reference of ``point``."""
    return Path(model_dir) / REFERENCE_DIR / f"{point}.npz"


def load_reference(model_dir: Path, point: str) -> Reference:
    """The reference of ``point`` stored in a version folder.

    Raises:
        ReferenceMissingError: the version has none.
    """
    return Reference.load(reference_path(model_dir, point))


def save_decision_references(
    model_dir: Path,
    version: str,
    models: dict[str, Any],
    rows: dict[str, Any],
    labels: Any,
    onboarded_at: Any,
) -> dict[str, Path]:
    """Save each decision point's reference from the rows its model was fitted on.

    The rows are those :func:`gnn.decision_models.fit_decision_model` could use: decided before
    the cut-off, with a label known by then. Args are what
    :func:`gnn.decision_training.train_decision_point_models` holds: ``models`` point ->
    :class:`gnn.decision_models.DecisionModel`, ``rows`` point -> :class:`gnn.backtest.DecisionRows`,
    ``labels`` (``user_id, is_fraud``), ``onboarded_at`` (user -> epoch ms).
    """
    from gnn.backtest import onboarding_times
    from gnn.decision_models import known_by

    label_of = labels.set_index("user_id")["is_fraud"]
    out: dict[str, Path] = {}
    for point, model in models.items():
        x, users, decided = rows[point].arrays()
        y = label_of.reindex(users).fillna(-1).to_numpy(np.int64)
        usable = (decided < model.cutoff_ms) & (y >= 0)
        usable &= known_by(onboarding_times(onboarded_at, users), model.cutoff_ms, model.label_delay_h)
        if not usable.any():
            continue  # the model could not have been fitted either; nothing to describe
        xs = x[usable]
        ref = build_reference(
            point, version, xs, list(model.feature_names), model.predict(xs), model.review_threshold,
            model.block_threshold, y[usable], {"cutoff_ms": int(model.cutoff_ms), "label_delay_h": model.label_delay_h},
        )  # fmt: skip
        path = reference_path(model_dir, point)
        ref.save(path)
        out[point] = path
    return out


def save_entity_reference(
    model_dir: Path, version: str, model: Any, dataset: Any, train_rows: np.ndarray
) -> Path | None:
    """Save the reference of a snapshot-trained model (:func:`gnn.training.train_entity_model`).

    Its rows are the model's inputs for the training split's users, read the way serving reads
    them (:meth:`gnn.training.RiskModel.predict_with_inputs`), so the hourly re-score's rows
    compare like with like. Returns None for a scorer without input rows (nothing to bin).
    """
    scores, x = model.predict_with_inputs(dataset)
    if x is None:
        return None
    y = np.asarray(dataset.y)[train_rows]
    ref = build_reference(
        "refresh", version, x[train_rows], list(model.scorer.feature_names), scores[train_rows],
        model.review_threshold, model.block_threshold, y, {"split": "train"},
    )  # fmt: skip
    path = reference_path(model_dir, "refresh")
    ref.save(path)
    return path
