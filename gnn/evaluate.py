"""Metrics, per-dataset model choice on validation, test report with plots and JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

from gnn.calibration import Calibrator
from gnn.data.dataset import NodeDataset, Split, carve_validation
from gnn.thresholds import threshold_for_f1

ModelFactory = Callable[[int], Any]  # seed -> unfitted scorer


def recall_at_k(y: np.ndarray, scores: np.ndarray, k: int | None = None) -> float:
    """Share of positives among the ``k`` top scores' positives; ``k`` = number of positives."""
    k = int(y.sum()) if k is None else k
    if k == 0:
        return float("nan")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(y[top].sum() / y.sum())


def metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """AUROC, AUPRC (average precision), Rec@K (K = positives) and F1-macro at ``threshold``."""
    return {
        "auroc": float(roc_auc_score(y, scores)),
        "auprc": float(average_precision_score(y, scores)),
        "rec_at_k": recall_at_k(y, scores),
        "f1_macro": float(f1_score(y, (scores >= threshold).astype(int), average="macro")),
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation per metric over seeds."""
    keys = rows[0].keys()
    return {
        k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows]))}
        for k in keys
    }


def plot_pr_curve(y: np.ndarray, scores: np.ndarray, path: Path, title: str) -> None:
    """Precision-recall curve PNG."""
    p, r, _ = precision_recall_curve(y, scores)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(r, p)
    ax.axhline(y.mean(), ls="--", c="grey", label=f"base rate {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_score_histogram(y: np.ndarray, scores: np.ndarray, path: Path, title: str) -> None:
    """Score histogram PNG, positives and negatives apart (log counts)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    bins = np.linspace(float(scores.min()), float(scores.max()) + 1e-9, 41)
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, label="legitimate", log=True)
    ax.hist(scores[y == 1], bins=bins, alpha=0.6, label="fraud", log=True)
    ax.set(xlabel="calibrated score", ylabel="count", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_split(
    dataset: NodeDataset, split: Split, factory: ModelFactory, seed: int
) -> tuple[dict[str, float], np.ndarray, Any]:
    """Fit one model on one split; test metrics with the F1 threshold and isotonic calibration
    chosen on the validation scores. Returns ``(row, calibrated test scores, model)``."""
    t0 = time.perf_counter()
    model = factory(seed).fit(dataset, split)
    fit_s = time.perf_counter() - t0
    scores = model.predict_proba(dataset)
    y_val = dataset.y[split.val]
    cal = Calibrator("isotonic").fit(model.validation_scores_, y_val)
    # Threshold on raw validation scores (isotonic ties would make it coarse).
    thr = threshold_for_f1(model.validation_scores_, y_val)
    y_test = dataset.y[split.test]
    row = metrics(y_test, scores[split.test], thr)
    row["val_auprc"] = float(average_precision_score(y_val, model.validation_scores_))
    row["fit_s"] = fit_s
    return row, cal.transform(scores[split.test]), model


def evaluate_dataset(
    dataset: NodeDataset,
    models: dict[str, ModelFactory],
    seeds: list[int] | None = None,
    out_dir: str | Path | None = None,
    val_fraction: float = 0.25,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train each candidate on each split, pick the best on mean validation AUPRC, report test.

    Args:
        dataset: With ``splits``; a split with an empty validation part gets ``val_fraction``
            of its training nodes carved out as validation.
        models: Name -> factory ``seed -> scorer``.
        seeds: Indices into ``dataset.splits`` (default: all).
        out_dir: Where to write ``<dataset>_report.json`` and the chosen model's PR-curve and
            score-histogram PNGs (first split); nothing written when ``None``.
        val_fraction: See ``dataset``.
        log: Progress callback (for example ``print``).

    Returns:
        ``{"dataset", "chosen", "models": {name: {"seeds": [...], "summary": {...}}}}``.
    """
    seeds = list(range(len(dataset.splits))) if seeds is None else seeds
    report: dict[str, Any] = {"dataset": dataset.name, "models": {}}
    test_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, factory in models.items():
        rows = []
        for s in seeds:
            split = dataset.splits[s]
            if not split.val.any():
                split = carve_validation(split, dataset.y, val_fraction)
            row, cal_scores, model = evaluate_split(dataset, split, factory, split.seed)
            rows.append(row)
            if s == seeds[0]:
                test_scores[name] = (dataset.y[split.test], cal_scores)
            if log:
                log(
                    f"  {dataset.name} {name} split {s}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items())
                )
        report["models"][name] = {"seeds": rows, "summary": summarise(rows), "repr": repr(model)}
    chosen = max(report["models"], key=lambda n: report["models"][n]["summary"]["val_auprc"]["mean"])
    report["chosen"] = chosen
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = dataset.name.replace("/", "_")
        y, s = test_scores[chosen]
        plot_pr_curve(y, s, out / f"{stem}_pr_curve.png", f"{dataset.name}: {chosen}")
        plot_score_histogram(y, s, out / f"{stem}_scores.png", f"{dataset.name}: {chosen}")
        (out / f"{stem}_report.json").write_text(json.dumps(report, indent=2))
    return report
