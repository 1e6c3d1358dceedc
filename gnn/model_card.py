"""Model cards a model-risk reviewer accepts: Markdown plus PNG charts, one per registered version.

Two halves:

* :func:`save_card_inputs` runs at registration (``graphrisk train --events``) and keeps, in
  ``<version>/card_inputs/``, what the card needs and the registry does not store: the held-out
  scores of each decision point (user, decision time, calibrated score, label, typology, segment
  columns) on a held-out period of its own (:func:`evaluation_rows`: not the rows that chose early
  stopping or thresholds) and a ``training.json`` (event window, cut-off, label sources and counts, label delay).
* :func:`write_model_card` reads those, the version's ``meta.json`` and the registry's promotion
  history, and writes ``MODEL_CARD.md``, ``card.json`` (every number in the card) and the PNGs.

Every performance figure names the moment it measures: ``onboarding`` (the applicant's row at its
application) or ``refresh`` (a user's row at a daily re-score). Confidence intervals come from a
bootstrap over users (a user's rows are resampled together), seeded so a card is reproducible.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from gnn.feature_registry import describe
from gnn.monitor.families import family_of

INPUTS_DIR = "card_inputs"
HELDOUT_FILE = "heldout.parquet"
TRAINING_FILE = "training.json"
GATE_FILE = "gate.json"
POINTS = ("onboarding", "refresh")
MOMENT = {
    "onboarding": "at onboarding (the applicant's row at its application)",
    "refresh": "at refresh (a user's row at a daily re-score)",
}
HOUR_MS = 3_600_000
# Account-age buckets for refresh rows (onboarding rows are all age 0: the bucket says nothing).
AGE_BUCKETS: tuple[tuple[float, str], ...] = ((24.0, "< 1 day"), (24.0 * 7, "1-7 days"),
                                              (24.0 * 30, "7-30 days"), (np.inf, "> 30 days"))  # fmt: skip
# Clean event-log columns that, where present, define segments (the v1 schema has no channel).
SEGMENT_SOURCES: dict[str, str] = {"country": "country", "channel": "channel"}
# One line per feature family, for a reviewer: what the family measures, in words.
FAMILY_TEXT: dict[str, str] = {
    "account_age": "how old the account is",
    "onboarded": "whether the user went through onboarding",
    "events": "how many events the user has",
    "first_payment": "time from onboarding to the first payment",
    "transfer_in_count": "how many users sent the user money",
    "transfer_in_amount": "how much money the user received in transfers",
    "degree": "how many identifiers, merchants and counterparties of each kind the user has",
    "rel_events": "events over each kind of link",
    "amount_max": "the largest amount over each kind of money link",
    "amount": "amounts moved over each kind of money link",
    "shared_max": "the most other users sharing one of the user's identifiers, per identifier kind",
    "shared_sum": "other users sharing the user's identifiers in total, per identifier kind",
    "velocity": "users linked to the same identifier shortly before the user (1 h, 24 h, 7 d)",
    "log_degree": "the user's number of links (log)",
    "neighbour_degree": "how connected the user's neighbours are",
    "hop2_degree": "how connected the users two hops away are",
    "clustering": "how closely the user's neighbours are linked to each other",
    "spectral": "the user's position in the graph (spectral components)",
    "neighbour_count": "how many neighbours of each kind the user reaches",
    "node_aggregate": "columns of the identifiers and merchants the user reaches (users, events, age)",
    "via_count": "user links on the user's identifiers",
    "via_labels": "training labels of users sharing the user's identifiers (reads labels)",
    "hop_labels": "training labels one and two hops away (reads labels)",
    "via_mean": "averages of other users' features over shared identifiers (features, not labels)",
    "hop2_mean": "averages of features two hops away",
    "neighbour_aggregate": "mean, max and sum of neighbours' features per relation",
    "history_labels": "earlier labels of the same history key (reads labels)",
}
BOOTSTRAP_RESAMPLES = 200


# --- at registration: the inputs the card reads ----------------------------------------------


def heldout_indices(
    decided_ms: np.ndarray,
    y: np.ndarray,
    onboarded_ms: np.ndarray,
    cutoff_ms: int,
    label_delay_h: float,
    validation_fraction: float = 0.3,
) -> np.ndarray:
    """Row indices :func:`gnn.decision_models.fit_decision_model` validated on, in time order.

    The same rule as the fit (usable rows decided before the cut-off with a label known by it, the
    latest ``validation_fraction`` of them by decision time); the caller checks the count against
    the model's recorded ``val_rows`` so a change to the fit cannot silently skew the card.
    """
    from gnn.decision_models import known_by

    usable = (decided_ms < cutoff_ms) & (y >= 0) & known_by(onboarded_ms, cutoff_ms, label_delay_h)
    idx = np.flatnonzero(usable)
    order = idx[np.argsort(decided_ms[idx], kind="stable")]
    n_val = int(len(order) * validation_fraction)
    return order[len(order) - n_val :]


# The card's own held-out period: the latest share of the rows the served model could use.
CARD_HOLDOUT_FRACTION = 0.2
# Fewest fraud and honest rows a period needs for the card to measure on it.
MIN_CLASS_ROWS = 2


def evaluation_rows(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    decided: np.ndarray,
    onboarded: np.ndarray,
    end_ms: int,
    holdout_fraction: float = CARD_HOLDOUT_FRACTION,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Rows and scores the card measures a decision-point model on: a period that chose neither
    its early stopping, nor its calibration, nor its thresholds.

    In order of preference:

    1. ``served_after_cutoff``: rows decided after the model's cut-off (up to ``end_ms``, the
       history's end) whose labels are known by ``end_ms``, scored by the served model (a
       challenger fitted before the latest labelled period has them).
    2. ``evaluation_twin``: the model is fitted at the history's end, so no later row exists. The
       same fit (:func:`gnn.decision_models.fit_decision_model`, same options and label delay) is
       repeated at an earlier cut-off, the start of the latest ``holdout_fraction`` of the rows the
       served model could use; that twin trains, stops early, calibrates and sets thresholds on the
       rows before it, and is scored on the held-out slice (labels known by the served cut-off).
       The figures estimate the fitting procedure's performance on unseen data, the served model
       being the same procedure refitted with that slice.
    3. ``validation_fallback``: too few labels for a twin; the fit's own validation rows, which
       chose early stopping and thresholds (optimistic; the card says so).

    Returns:
        ``(row indices, calibrated scores, info)``; ``info`` has ``kind``, ``from_ms``, ``to_ms``
        (the period), and for a twin its cut-off, boosting rounds and thresholds.
    """
    from gnn.decision_models import NotEnoughLabelsError, fit_decision_model, known_by

    delay = model.label_delay_h
    after = (decided >= model.cutoff_ms) & (decided < end_ms) & (y >= 0) & known_by(onboarded, end_ms, delay)
    idx = np.flatnonzero(after)
    if (y[idx] == 1).sum() >= MIN_CLASS_ROWS and (y[idx] == 0).sum() >= MIN_CLASS_ROWS:
        return idx, model.predict(x[idx]), {
            "kind": "served_after_cutoff", "from_ms": int(model.cutoff_ms), "to_ms": int(decided[idx].max()) + 1,
            "labels_known_by_ms": int(end_ms),
        }  # fmt: skip
    usable = (decided < model.cutoff_ms) & (y >= 0) & known_by(onboarded, model.cutoff_ms, delay)
    order = np.flatnonzero(usable)
    order = order[np.argsort(decided[order], kind="stable")]
    n_hold = int(len(order) * holdout_fraction)
    if n_hold:
        twin_cutoff = int(decided[order[len(order) - n_hold]])
        held = order[decided[order] >= twin_cutoff]
        try:
            twin = fit_decision_model(
                model.point, x, y, decided, onboarded, twin_cutoff, list(model.feature_names), model.options,
                label_delay_h=delay,
            )  # fmt: skip
        except NotEnoughLabelsError:
            twin = None
        if (
            twin is not None
            and (y[held] == 1).sum() >= MIN_CLASS_ROWS
            and (y[held] == 0).sum() >= MIN_CLASS_ROWS
        ):
            return held, twin.predict(x[held]), {
                "kind": "evaluation_twin", "from_ms": twin_cutoff, "to_ms": int(model.cutoff_ms),
                "twin_cutoff_ms": twin_cutoff, "twin_rounds": float(twin.metrics.get("rounds", 0)),
                "twin_review_threshold": twin.review_threshold, "twin_block_threshold": twin.block_threshold,
                "labels_known_by_ms": int(model.cutoff_ms),
            }  # fmt: skip
    val = heldout_indices(decided, y, onboarded, model.cutoff_ms, delay)
    if "val_rows" in model.metrics and len(val) != int(model.metrics["val_rows"]):
        raise RuntimeError(
            f"{model.point}: held-out rows {len(val)} != the fit's {model.metrics['val_rows']}"
        )
    span = decided[val] if len(val) else np.array([model.cutoff_ms])
    return val, model.predict(x[val]), {
        "kind": "validation_fallback", "from_ms": int(span.min()), "to_ms": int(model.cutoff_ms),
        "labels_known_by_ms": int(model.cutoff_ms),
    }  # fmt: skip


def _segment_columns(clean: Any) -> pd.DataFrame:
    """Per user, segment values read from its first onboarding event (``user_id`` index)."""
    names = [c for c in SEGMENT_SOURCES.values() if c in clean.column_names]
    if not names:
        return pd.DataFrame()
    frame = clean.select(["user_id", "event_type", "time", *names]).to_pandas()
    onb = frame[frame["event_type"] == "onboarding"].sort_values("time").drop_duplicates("user_id")
    out = onb.set_index("user_id")[names]
    return out.rename(columns={v: k for k, v in SEGMENT_SOURCES.items()})


def save_card_inputs(
    model_dir: Path,
    models: Mapping[str, Any],
    rows: Mapping[str, Any],
    labels: pd.DataFrame,
    onboarded_at: pd.Series,
    clean_events: Any,
    cutoff_ms: int,
    label_sources: Mapping[str, Any] | None = None,
) -> Path:
    """Keep what the model card needs beside a decision-point version (``card_inputs/``).

    Args:
        model_dir: The version's folder in the registry.
        models: Point -> :class:`gnn.decision_models.DecisionModel`.
        rows: Point -> :class:`gnn.backtest.DecisionRows` the models were fitted from.
        labels: The training labels (``user_id, is_fraud`` and maybe ``typology``, ``ring_id``,
            ``source``).
        onboarded_at: User -> onboarding time (epoch ms).
        clean_events: The event log's clean table (window and segment columns).
        cutoff_ms: The training cut-off.
        label_sources: Where the labels came from (the label file, investigator decisions merged).

    Returns:
        The folder written.
    """
    from gnn.backtest import onboarding_times
    from gnn.decision_models import known_by

    out = model_dir / INPUTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    label_of = labels.drop_duplicates("user_id", keep="last").set_index("user_id")
    segments = _segment_columns(clean_events)
    end_ms = int(clean_events.column("time").to_numpy().max()) + 1
    parts = []
    evaluation: dict[str, dict[str, Any]] = {}
    for point, model in models.items():
        x, users, decided = rows[point].arrays()
        y = label_of["is_fraud"].reindex(users).fillna(-1).to_numpy(np.int64)
        onboarded = onboarding_times(onboarded_at, users)
        val, scores, info = evaluation_rows(model, x, y, decided, onboarded, end_ms)
        evaluation[point] = info
        part = pd.DataFrame({
            "point": point, "user_id": users[val], "decided_ms": decided[val],
            "score": scores, "is_fraud": y[val],
        })  # fmt: skip
        part["evaluation"] = info["kind"]
        part["eval_from_ms"], part["eval_to_ms"] = info["from_ms"], info["to_ms"]
        part["twin_review_threshold"] = info.get("twin_review_threshold", np.nan)
        part["twin_block_threshold"] = info.get("twin_block_threshold", np.nan)
        part["typology"] = (
            label_of["typology"].reindex(users[val]).to_numpy(object) if "typology" in label_of else None
        )
        for column in segments.columns:
            part[column] = segments[column].reindex(users[val]).to_numpy(object)
        if "account_age_h" in model.feature_names:
            part["account_age_h"] = x[val, list(model.feature_names).index("account_age_h")]
        parts.append(part)
    pd.concat(parts, ignore_index=True).to_parquet(out / HELDOUT_FILE, index=False)

    times = clean_events.column("time").to_numpy()
    # A challenger is fitted at a cut-off before the history's end: its window ends there.
    times = times[times < cutoff_ms] if (times < cutoff_ms).any() else times
    users_all = labels["user_id"].to_numpy(object)
    known = known_by(onboarding_times(onboarded_at, users_all), cutoff_ms, _delay(models))
    fraud = labels["is_fraud"].to_numpy(np.int64) == 1
    counts: dict[str, Any] = {
        "users": len(labels), "fraud": int(fraud.sum()),
        "known_by_cutoff": int(known.sum()), "fraud_known_by_cutoff": int((known & fraud).sum()),
    }  # fmt: skip
    if "ring_id" in labels:
        counts["planted_ring_members"] = int((fraud & labels["ring_id"].notna().to_numpy()).sum())
    if "typology" in labels:
        counts["fraud_by_typology"] = {
            str(k): int(v) for k, v in labels.loc[fraud, "typology"].value_counts().items()
        }
    if "source" in labels:
        counts["by_source"] = {str(k): int(v) for k, v in labels["source"].value_counts().items()}
    training = {
        "window": {"first_event_ms": int(times.min()), "last_event_ms": int(times.max())},
        "cutoff_ms": int(cutoff_ms),
        "label_delay_h": _delay(models),
        "labels": counts,
        "label_sources": dict(label_sources or {}),
        "evaluation": evaluation,
        "points": {
            p: {
                "rows": int(rows[p].arrays()[0].shape[0]),
                "features": len(m.feature_names),
                **m.metrics,
                "review_threshold": m.review_threshold,
                "block_threshold": m.block_threshold,
            }
            for p, m in models.items()
        },
    }
    (out / TRAINING_FILE).write_text(json.dumps(training, indent=2, default=_json_default))
    return out


def _delay(models: Mapping[str, Any]) -> float:
    return float(next(iter(models.values())).label_delay_h)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# --- statistics ------------------------------------------------------------------------------


def _trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return ((x[:, 1:] - x[:, :-1]) * (y[:, 1:] + y[:, :-1]) / 2).sum(axis=1)


def ranking_metrics(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted AUPRC (average precision) and AUROC for each row of weights ``w`` ``[B, n]``.

    Ties are grouped as scikit-learn groups them, so with unit weights the figures equal
    ``average_precision_score`` and ``roc_auc_score``; vectorised over resamples, because 200
    resamples per typology and segment through scikit-learn took most of a card's time.
    """
    order = np.argsort(-s, kind="mergesort")
    y, s, w = y[order].astype(np.float64), s[order], w[:, order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(w * y, axis=1)[:, ends]
    fp = np.cumsum(w * (1 - y), axis=1)[:, ends]
    pos, neg = tp[:, -1:], fp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / np.maximum(tp + fp, 1e-300)
        recall = tp / pos
        zeros = np.zeros((len(w), 1))
        ap = (np.diff(np.hstack([zeros, recall]), axis=1) * precision).sum(axis=1)
        auc = _trapezoid(np.hstack([zeros, tp / pos]), np.hstack([zeros, fp / neg]))
    bad = (pos[:, 0] <= 0) | (neg[:, 0] <= 0)
    ap[bad] = np.nan
    auc[bad] = np.nan
    return {"auprc": ap, "auroc": auc}


def flag_metrics(y: np.ndarray, flagged: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted precision, recall and flagged share of alerts ``flagged`` for each weight row."""
    y = y.astype(np.float64)
    f = flagged.astype(np.float64)
    tp = (w * (f * y)).sum(axis=1)
    nflag = (w * f).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "precision": np.where(nflag > 0, tp / nflag, np.nan),
            "recall": tp / (w * y).sum(axis=1),
            "flagged_share": nflag / w.sum(axis=1),
        }


@dataclass
class Estimate:
    """A point estimate with a bootstrap percentile interval (NaN where undefined)."""

    point: float
    low: float
    high: float

    def text(self, fmt: str = ".3f") -> str:
        """``0.812 [0.774, 0.850]``, or ``n/a``."""
        if not np.isfinite(self.point):
            return "n/a"
        return f"{self.point:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def _user_weights(codes: np.ndarray, n_users: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``[resamples, rows]`` weights: how often each row's user was drawn (users resampled whole,
    so a user's several refresh rows move together and intervals are not too narrow)."""
    draws = rng.integers(0, n_users, size=(resamples, n_users))
    counts = np.stack([np.bincount(d, minlength=n_users) for d in draws]).astype(np.float64)
    return counts[:, codes]


def bootstrap(
    frame: pd.DataFrame,
    thresholds: Mapping[str, float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Estimate]:
    """AUPRC, AUROC, fraud rate and, per threshold, precision/recall/flagged share, with
    ``level`` bootstrap intervals over users.

    Args:
        frame: ``user_id, score, is_fraud`` rows.
        thresholds: Name -> threshold; alerts are ``score >= threshold``.
        resamples: Bootstrap resamples.
        seed: Seed of the resampling.
        level: Interval coverage.
    """
    y = frame["is_fraud"].to_numpy(np.int64)
    s = frame["score"].to_numpy(np.float64)
    codes, uniques = pd.factorize(frame["user_id"])
    rng = np.random.default_rng(seed)
    one = np.ones((1, len(y)))
    stats: dict[str, list[np.ndarray]] = {}
    point: dict[str, float] = {}

    def measure(w: np.ndarray) -> dict[str, np.ndarray]:
        out = ranking_metrics(y, s, w) | {"fraud_rate": (w * y).sum(axis=1) / w.sum(axis=1)}
        for name, t in thresholds.items():
            out |= {f"{k}@{name}": v for k, v in flag_metrics(y, s >= t, w).items()}
        return out

    point = {k: float(v[0]) for k, v in measure(one).items()}
    # In chunks: [resamples, rows] weights for a large held-out period would not fit in memory.
    for start in range(0, resamples, 25):
        w = _user_weights(codes, len(uniques), min(25, resamples - start), rng)
        for k, v in measure(w).items():
            stats.setdefault(k, []).append(v)
    alpha = (1 - level) / 2
    out = {}
    for k, parts in stats.items():
        values = np.concatenate(parts)
        values = values[np.isfinite(values)]
        p = point[k]
        if not np.isfinite(p) or len(values) == 0:
            out[k] = Estimate(p, np.nan, np.nan)
            continue
        low, high = np.quantile(values, [alpha, 1 - alpha])
        # A percentile interval of a skewed statistic (AUPRC near 1) can miss the point estimate
        # by a hair; widening it to include the estimate is the conservative reading.
        out[k] = Estimate(p, float(min(low, p)), float(max(high, p)))
    return out


def reliability(frame: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Reliability-diagram bins (equal counts by score): mean score, observed fraud rate with a
    Wilson 95 % interval, and the rows in each."""
    s = frame["score"].to_numpy(np.float64)
    y = frame["is_fraud"].to_numpy(np.float64)
    edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in np.unique(which):
        m = which == b
        n = int(m.sum())
        rate = float(y[m].mean())
        z = 1.96
        centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        # Rounding can put a Wilson end a hair past the observed rate at 0 or 1: clamp.
        low, high = min(max(centre - half, 0.0), rate), max(min(centre + half, 1.0), rate)
        rows.append({"mean_score": float(s[m].mean()), "observed": rate, "low": low, "high": high,
                     "rows": n})  # fmt: skip
    return pd.DataFrame(rows)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Row-weighted mean gap between mean score and observed rate over reliability bins."""
    if table.empty:
        return float("nan")
    w = table["rows"] / table["rows"].sum()
    return float((w * (table["mean_score"] - table["observed"]).abs()).sum())


# --- the card --------------------------------------------------------------------------------


def feature_families(names: list[str]) -> pd.DataFrame:
    """Feature counts per family (``gnn.feature_registry``; unknown names by prefix)."""
    rows = []
    for n in names:
        d = describe(n)
        rows.append({"family": d.family if d else family_of(n), "reads_labels": bool(d and d.reads_labels),
                     "noun": d.noun if d else n})  # fmt: skip
    frame = pd.DataFrame(rows, columns=["family", "reads_labels", "noun"])
    return frame.groupby("family", sort=False).agg(
        features=("noun", "size"), reads_labels=("reads_labels", "any"), example=("noun", "first")
    )


def _utc(ms: float | None) -> str:
    if ms is None or not np.isfinite(ms):
        return "n/a"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def _fmt(v: Any, fmt: str = ".4f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    if isinstance(v, (float, np.floating)):
        return format(v, fmt) if np.isfinite(v) else "n/a"
    return str(v)


def _age_bucket(hours: pd.Series) -> pd.Series:
    edges = [-np.inf, *[e for e, _ in AGE_BUCKETS]]
    return pd.cut(hours, edges, labels=[n for _, n in AGE_BUCKETS], right=False).astype(object)


def _settings_defaults() -> dict[str, Any]:
    from graphrisk.config import Settings

    return {k: f.default for k, f in Settings.model_fields.items()}


MONITOR_FIELDS: dict[str, str] = {
    "drift_psi_alert": "feature drift: PSI over decile bins of a feature, per feature and family",
    "drift_ks_alert": "feature drift: KS statistic of a continuous feature",
    "drift_score_psi_alert": "prediction drift: PSI of the score distribution",
    "drift_band_shift_alert": "prediction drift: a band's (review, block) share moving by more than this",
    "drift_label_z_alert": "label drift: a cohort's fraud rate this many standard errors from training's",
    "skew_mismatch_alert": "training-serving skew: share of users whose served row differs from the batch row",
    "monitor_hub_users": "graph structure: an identifier with more users than this is a hub",
    "ring_input_outside_max": "ring model: share of inputs outside the training p0.5-p99.5 range above which "
    "rings are not stored",
}


class CardError(ValueError):
    """A model card could not be written (unknown version)."""


def _previous_production(index: dict[str, Any], version: str) -> str | None:
    """The version this one replaced: production before its last promotion, else today's
    production when that is another version."""
    for entry in reversed(index.get("history", [])):
        if entry.get("version") == version:
            return entry.get("previous")
    prod = index.get("production")
    return prod if prod != version else None


def _heldout(model_dir: Path) -> pd.DataFrame:
    path = model_dir / INPUTS_DIR / HELDOUT_FILE
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def _thresholds(meta: Any, point: str) -> dict[str, float]:
    moments = (meta.notes or {}).get("moments", {})
    m = moments.get(point, {})
    out = {}
    if m.get("review") is not None:
        out["review"] = float(m["review"])
    if m.get("block") is not None:
        out["block"] = float(m["block"])
    if not out and meta.threshold is not None:
        out["block"] = float(meta.threshold)
    return out


def _eval_thresholds(meta: Any, frame: pd.DataFrame, point: str) -> dict[str, float]:
    """The thresholds the held-out scores are banded with: an evaluation twin's own (its scores
    are its calibration's: the served thresholds belong to another fit), else the served ones."""
    if "twin_block_threshold" in frame and len(frame) and frame["twin_block_threshold"].notna().any():
        return {"review": float(frame["twin_review_threshold"].iloc[0]),
                "block": float(frame["twin_block_threshold"].iloc[0])}  # fmt: skip
    return _thresholds(meta, point)


def write_model_card(
    registry: Any,
    version: str,
    out_dir: Path | None = None,
    settings: Any | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Path:
    """Write the model card of ``version``: ``MODEL_CARD.md``, ``card.json`` and PNGs.

    Args:
        registry: A :class:`gnn.registry.ModelRegistry`.
        version: The version to describe.
        out_dir: Where to write (default ``<registry>/<version>/card``).
        settings: :class:`graphrisk.config.Settings` for the monitoring plan (default: the
            settings' defaults).
        resamples: Bootstrap resamples over users.
        seed: Bootstrap seed.

    Returns:
        The Markdown file.

    Raises:
        CardError: no such version.
    """
    model_dir = registry.root / version
    if not (model_dir / "meta.json").exists():
        raise CardError(f"no model version {version!r} in {registry.root}")
    meta = registry.meta(version)
    out = out_dir or model_dir / "card"
    out.mkdir(parents=True, exist_ok=True)
    index_path = registry.root / "registry.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"production": None, "history": []}
    training_path = model_dir / INPUTS_DIR / TRAINING_FILE
    training = json.loads(training_path.read_text()) if training_path.exists() else {}
    heldout = _heldout(model_dir)
    card: dict[str, Any] = {"version": version, "model": meta.model_name}
    md: list[str] = []
    md += _header(meta, index)
    md += _intended_use()
    md += _training_section(meta, training, card)
    md += _features_section(meta, card)
    md += _performance_section(meta, heldout, out, card, resamples, seed)
    md += _calibration_section(heldout, out, card)
    md += _thresholds_section(meta, heldout, training, out, card, resamples, seed)
    md += _segments_section(meta, heldout, card, resamples, seed)
    md += _comparison_section(registry, meta, index, heldout, card)
    md += _monitoring_section(settings, model_dir, card)
    md += _limitations_section(meta, training, heldout, card)
    md += _approval_section(meta, index, model_dir, card)
    path = out / "MODEL_CARD.md"
    path.write_text("\n".join(md) + "\n")
    (out / "card.json").write_text(json.dumps(card, indent=2, default=_json_default, allow_nan=True))
    return path


def _header(meta: Any, index: dict[str, Any]) -> list[str]:
    status = "production" if index.get("production") == meta.version else "not in production"
    return [
        f"# Model card: {meta.version}",
        "",
        "| | |",
        "|---|---|",
        f"| Model | {meta.model_name} |",
        f"| Status | {status} |",
        f"| Registered | {_utc(meta.created_at)} |",
        f"| Code version | `{meta.code_version}` |",
        f"| Training snapshot (event log hash) | `{meta.snapshot_hash[:16]}` |",
        f"| Label set hash | `{(meta.label_set_hash or 'not recorded')[:16]}` |",
        "",
    ]


def _intended_use() -> list[str]:
    return [
        "## Intended use",
        "",
        "- **Onboarding model**: scores each applicant at its application (the API's online row) so that "
        "applicants re-using identifiers of known fraud rings (device farms, synthetic identities) go to "
        "review or are blocked before the account opens.",
        "- **Behaviour model**: re-scores every known user at each refresh (the batch row as of the hour) "
        "so that mule rings and bust-outs reach investigators while money can still be stopped.",
        "- Scores are calibrated probabilities of fraud; bands (review, block) route cases to fraud "
        "investigators, who decide. Every score carries its reasons and evidence paths.",
        "",
        "## Out-of-scope uses",
        "",
        "- A sole basis for an adverse decision about a person (closing an account, refusing credit) "
        "without an investigator's review.",
        "- Credit scoring, pricing, marketing, employment or any purpose other than fraud-ring detection.",
        "- Populations, products or countries unlike the training events (the graph's identifier mix "
        "and payment patterns); a graph from another source needs its own training and backtest.",
        "- Ranking investigators or measuring their work.",
        "- Scores of a model whose monitoring alarms are open (drift or skew above the thresholds "
        "below) without a reviewer's sign-off.",
        "",
    ]


def _training_section(meta: Any, training: dict[str, Any], card: dict[str, Any]) -> list[str]:
    md = ["## Training data", ""]
    if not training:
        md += [f"Recorded: {meta.dataset}. This version was registered without card inputs (window, label "
               "counts per source are not stored for it).", ""]  # fmt: skip
        card["training"] = None
        return md
    win = training["window"]
    labels = training["labels"]
    sources = training.get("label_sources") or (meta.notes or {}).get("label_sources") or {}
    decisions = sources.get("decisions") or {}
    card["training"] = training
    md += [
        f"- **Event window**: {_utc(win['first_event_ms'])} to {_utc(win['last_event_ms'])} "
        f"({(win['last_event_ms'] - win['first_event_ms']) / HOUR_MS / 24:.1f} days).",
        f"- **Cut-off** (the moment of training): {_utc(training['cutoff_ms'])}.",
        f"- **Label delay**: {training['label_delay_h']:g} h — a user's label counts only if the user was "
        "onboarded at least this long before the cut-off (labels arrive days after the fact).",
        f"- **How**: {meta.dataset}.",
        "",
        "| label source | users | fraud | known by the cut-off |",
        "|---|---|---|---|",
    ]
    file_rows = sources.get("file_labels", labels["users"] - decisions.get("added", 0))
    md.append(f"| label file `{Path(str(sources.get('file', 'labels'))).name}` (planted / synthetic and "
              f"confirmed labels) | {_fmt(int(file_rows))} | "
              f"{_fmt(labels['fraud'])} (planted ring members: {_fmt(labels.get('planted_ring_members', 'n/a'))}) "
              f"| {_fmt(labels['known_by_cutoff'])} ({_fmt(labels['fraud_known_by_cutoff'])} fraud) |")  # fmt: skip
    md.append(f"| investigator decisions (decision store) | {_fmt(int(decisions.get('decided', 0)))} "
              f"({_fmt(int(decisions.get('changed', 0)))} changed an earlier label, "
              f"{_fmt(int(decisions.get('added', 0)))} new users) | included above | included above |")  # fmt: skip
    for source, n in labels.get("by_source", {}).items():
        md.append(f"| source column: `{source}` | {_fmt(int(n))} | | |")
    md.append("")
    if labels.get("fraud_by_typology"):
        md += ["Fraud labels by typology: " + ", ".join(
            f"{k} {_fmt(int(v))}" for k, v in sorted(labels["fraud_by_typology"].items())) + ".", ""]  # fmt: skip
    md += ["| decision point | rows kept | training rows (fraud) | held-out rows (fraud) | boosting rounds |",
           "|---|---|---|---|---|"]  # fmt: skip
    for p, info in training.get("points", {}).items():
        md.append(f"| {p} | {_fmt(info['rows'])} | {_fmt(int(info.get('train_rows', 0)))} "
                  f"({_fmt(int(info.get('train_fraud', 0)))}) | {_fmt(int(info.get('val_rows', 0)))} "
                  f"({_fmt(int(info.get('val_fraud', 0)))}) | {_fmt(int(info.get('rounds', 0)))} |")  # fmt: skip
    md.append("")
    return md


def _features_section(meta: Any, card: dict[str, Any]) -> list[str]:
    lists = {"refresh": list(meta.feature_names)}
    applicant = (meta.notes or {}).get("applicant_features")
    if applicant:
        lists = {"onboarding": list(applicant), "refresh": list(meta.feature_names)}
    tables = {p: feature_families(names) for p, names in lists.items()}
    families = list(dict.fromkeys(f for t in tables.values() for f in t.index))
    total = " and ".join(f"{len(n):,} features at {p}" for p, n in lists.items())
    md = [
        "## Features",
        "",
        f"{total}, in {len(families)} families (`gnn/feature_registry.py` names every one and gives "
        "each value a sentence in explanations). No feature reads anyone's fraud label unless marked.",
        "",
        "| family | what it measures | " + " | ".join(f"{p} features" for p in lists) + " | reads labels |",
        "|---|---|" + "---|" * len(lists) + "---|",
    ]
    card["feature_families"] = {}
    for fam in families:
        counts = [int(tables[p].loc[fam, "features"]) if fam in tables[p].index else 0 for p in lists]
        reads = any(bool(tables[p].loc[fam, "reads_labels"]) for p in lists if fam in tables[p].index)
        example = next(str(tables[p].loc[fam, "example"]) for p in lists if fam in tables[p].index)
        text = FAMILY_TEXT.get(fam, f"e.g. {example}")
        md.append(
            f"| `{fam}` | {text} | "
            + " | ".join(_fmt(c) for c in counts)
            + f" | {'yes' if reads else 'no'} |"
        )
        card["feature_families"][fam] = {
            "text": text,
            **dict(zip(lists, counts, strict=True)),
            "reads_labels": reads,
        }
    md.append("")
    return md


EVALUATION_TEXT = {
    "served_after_cutoff": "the served model itself on rows decided after its cut-off, which it never "
    "read (labels known by the history's end)",
    "evaluation_twin": "an evaluation twin: the same fit repeated at the period's start, so that its "
    "training, early stopping, calibration and thresholds read only earlier rows; the served model is "
    "that procedure refitted with the period",
    "validation_fallback": "the fit's validation rows (too few labels for a period of their own): the "
    "same rows chose early stopping, calibration and thresholds, so the figures are optimistic",
}


def _evaluation_note(heldout: pd.DataFrame) -> str:
    """Which period, measured how, per decision point (the moment each figure measures)."""
    lines = []
    for point in POINTS:
        part = heldout[heldout["point"] == point] if len(heldout) else heldout
        if not len(part):
            continue
        if "evaluation" in part:
            kind = str(part["evaluation"].iloc[0])
            lo, hi = part["eval_from_ms"].iloc[0], part["eval_to_ms"].iloc[0]
        else:  # inputs saved before the card had a period of its own
            kind, lo, hi = "validation_fallback", part["decided_ms"].min(), part["decided_ms"].max()
        lines.append(f"- **{point}** ({MOMENT[point]}): held-out period {_utc(lo)} to {_utc(hi)}, "
                     f"{len(part):,} rows; measured on {EVALUATION_TEXT.get(kind, kind)}.")  # fmt: skip
    return "\n".join([
        "Measured on each decision point's **own held-out period**, not used for early stopping or "
        "threshold choice where labels allow (`graphrisk backtest` replays later periods with refits):",
        "", *lines, "",
        f"Intervals: 95 % bootstrap over users ({BOOTSTRAP_RESAMPLES} resamples, seeded; a user's rows "
        "move together). Each typology's figures compare its members with every honest row.",
    ])  # fmt: skip


def _performance_section(
    meta: Any, heldout: pd.DataFrame, out: Path, card: dict[str, Any], resamples: int, seed: int
) -> list[str]:
    md = ["## Performance by decision point and typology", ""]
    if heldout.empty:
        md += ["No held-out scores were stored for this version: recorded metrics only.", "",
               "| metric | value |", "|---|---|"]  # fmt: skip
        md += [f"| {k} | {_fmt(v)} |" for k, v in sorted(meta.metrics.items())]
        card["performance"] = None
        return [*md, ""]
    md += [_evaluation_note(heldout), ""]
    card["performance"] = {}
    for point in [p for p in POINTS if p in set(heldout["point"])]:
        frame = heldout[heldout["point"] == point]
        thresholds = _eval_thresholds(meta, frame, point)
        md += [f"### Measured {MOMENT[point]}", "",
               "| group | rows | fraud | AUPRC [95 % CI] | AUROC [95 % CI] | recall at block [95 % CI] |",
               "|---|---|---|---|---|---|"]  # fmt: skip
        groups: dict[str, pd.DataFrame] = {"all": frame}
        if frame["typology"].notna().any():
            honest = frame[frame["is_fraud"] == 0]
            for typ, members in frame[frame["is_fraud"] == 1].groupby("typology"):
                groups[str(typ)] = pd.concat([members, honest])
        card["performance"][point] = {}
        for name, part in groups.items():
            est = bootstrap(part, {k: v for k, v in thresholds.items() if k == "block"}, resamples, seed)
            recall = est.get("recall@block", Estimate(np.nan, np.nan, np.nan))
            card["performance"][point][name] = {
                "rows": len(part), "fraud": int(part["is_fraud"].sum()),
                **{k: vars(est[k]) for k in ("auprc", "auroc")}, "recall_at_block": vars(recall),
            }  # fmt: skip
            fraud = int((part["is_fraud"] == 1).sum())
            md.append(f"| {name} | {_fmt(len(part))} | {_fmt(fraud)} | {est['auprc'].text()} | "
                      f"{est['auroc'].text()} | {recall.text()} |")  # fmt: skip
        md.append("")
    png = _performance_plot(card["performance"], out / "performance_by_typology.png")
    card["figures"] = {"performance": png.name}
    md += [f"![AUPRC by typology with 95 % intervals, per decision moment]({png.name})", ""]
    return md


def _performance_plot(perf: dict[str, dict[str, Any]], path: Path) -> Path:
    points = list(perf)
    fig, axes = plt.subplots(1, len(points), figsize=(5.5 * len(points), 3.8), squeeze=False)
    for ax, point in zip(axes[0], points, strict=True):
        names = list(perf[point])
        vals = [perf[point][n]["auprc"] for n in names]
        y = np.array([v["point"] for v in vals], dtype=float)
        lo = np.array([v["low"] for v in vals], dtype=float)
        hi = np.array([v["high"] for v in vals], dtype=float)
        ax.barh(names, np.nan_to_num(y), color="#4c72b0", alpha=0.8)
        ax.errorbar(np.nan_to_num(y), names, xerr=[np.nan_to_num(y - lo), np.nan_to_num(hi - y)],
                    fmt="none", ecolor="black", capsize=3)  # fmt: skip
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("AUPRC (held-out period, 95 % bootstrap CI)")
        ax.set_title(
            f"Measured at {point}" + (" (application)" if point == "onboarding" else " (daily re-score)")
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _calibration_section(heldout: pd.DataFrame, out: Path, card: dict[str, Any]) -> list[str]:
    md = ["## Calibration", ""]
    if heldout.empty:
        card["calibration"] = None
        return [*md, "No held-out scores were stored for this version.", ""]
    points = [p for p in POINTS if p in set(heldout["point"])]
    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 4.4), squeeze=False)
    card["calibration"] = {}
    lines = []
    for ax, point in zip(axes[0], points, strict=True):
        frame = heldout[heldout["point"] == point]
        table = reliability(frame)
        ece = expected_calibration_error(table)
        card["calibration"][point] = {"ece": ece, "bins": table.to_dict("records")}
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
        ax.errorbar(table["mean_score"], table["observed"],
                    yerr=[table["observed"] - table["low"], table["high"] - table["observed"]],
                    fmt="o-", capsize=3, color="#c44e52", label="observed fraud rate (Wilson 95 %)")  # fmt: skip
        # Fraud is rare: on 0..1 axes every bin sits in the corner, so zoom to where the bins are.
        top = float(min(1.0, max(table["high"].max(), table["mean_score"].max(), 0.01) * 1.1))
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("mean calibrated score in bin")
        ax.set_ylabel("observed fraud rate")
        moment = "onboarding (application)" if point == "onboarding" else "refresh (daily re-score)"
        ax.set_title(f"Calibration at {moment}\nheld-out period, ECE {ece:.3f}", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        lines.append(f"- Measured {MOMENT[point]}: expected calibration error **{ece:.4f}** over "
                     f"{len(table)} equal-count bins of {_fmt(len(frame))} held-out rows.")  # fmt: skip
    fig.tight_layout()
    path = out / "calibration.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    card.setdefault("figures", {})["calibration"] = path.name
    return [*md, "Platt scaling fitted on rows before the card's held-out period (on the period itself only in "
            "the validation fallback); reliability diagram over the held-out rows (points near the "
            "diagonal: a score of 0.3 means about 30 % fraud).", "", *lines, "",
            f"![Reliability diagram]({path.name})", ""]  # fmt: skip


def _thresholds_section(
    meta: Any,
    heldout: pd.DataFrame,
    training: dict[str, Any],
    out: Path,
    card: dict[str, Any],
    resamples: int,
    seed: int,
) -> list[str]:
    md = ["## Thresholds and expected review volume", ""]
    card["thresholds"] = {}
    if heldout.empty:
        for point in POINTS:
            t = _thresholds(meta, point)
            if t:
                md.append(f"- {point}: " + ", ".join(f"{k} >= {v:.4f}" for k, v in t.items()))
        return [*md, "", "No held-out scores were stored: volumes and precision are not available.", ""]
    md += [
        "Alerts are `score >= threshold`: **block** targets the configured precision on the fit's "
        "validation rows (before the card's held-out period); **review** sits under it, sized by the "
        "review capacity. Volumes are shares of "
        "decisions at that moment on the held-out period, per 1,000 decisions and per day of the "
        "period. Precision and recall with 95 % bootstrap intervals over users.",
        "",
        "| moment | threshold | value | flagged share [95 % CI] | per 1,000 decisions | per day | "
        "precision [95 % CI] | recall [95 % CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    for ax, point in zip(axes[0], POINTS, strict=True):
        frame = heldout[heldout["point"] == point]
        thresholds = _eval_thresholds(meta, frame, point)
        if frame.empty or not thresholds:
            ax.set_visible(False)
            continue
        days = _days(frame["decided_ms"])
        est = bootstrap(frame, thresholds, resamples, seed)
        card["thresholds"][point] = {}
        for name, t in thresholds.items():
            share = est[f"flagged_share@{name}"]
            flagged = int((frame["score"] >= t).sum())
            card["thresholds"][point][name] = {
                "threshold": t, "flagged_share": vars(share), "per_1000": 1000 * share.point,
                "per_day": flagged / days, "precision": vars(est[f"precision@{name}"]),
                "recall": vars(est[f"recall@{name}"]),
            }  # fmt: skip
            served = _thresholds(meta, point).get(name)
            if served is not None and abs(served - t) > 1e-12:
                card["thresholds"][point][name]["served_threshold"] = served
            md.append(f"| {point} | {name} | {t:.4f} | {share.text('.4f')} | {1000 * share.point:.1f} | "
                      f"{flagged / days:.1f} | {est[f'precision@{name}'].text()} | {est[f'recall@{name}'].text()} |")  # fmt: skip
        _threshold_plot(ax, frame, thresholds, point)
    fig.tight_layout()
    path = out / "thresholds.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    card.setdefault("figures", {})["thresholds"] = path.name
    twins = {p: _thresholds(meta, p) for p in POINTS if p in card["thresholds"]
             and _eval_thresholds(meta, heldout[heldout["point"] == p], p) != _thresholds(meta, p)}  # fmt: skip
    if twins:
        md += ["", "Where the figures come from an evaluation twin, the rows above are at the twin's own "
               "thresholds (chosen by the same rule on its earlier rows: its scores are its calibration's). "
               "The served thresholds: " + "; ".join(f"{p}: " + ", ".join(f"{k} >= {v:.4f}" for k, v in t.items())
                                                    for p, t in twins.items()) + "."]  # fmt: skip
    md += ["", "The review band alone (`review <= score < block`) adds the difference between the two "
           "rows of a moment. Refresh volumes count rows of the users sampled for training "
           "(a share of the book each day); scale per 1,000 decisions to the book scored.", "",
           f"![Precision and review volume against the threshold]({path.name})", ""]  # fmt: skip
    return md


def _days(decided_ms: pd.Series) -> float:
    """Days a held-out period covers: its span, and at least its distinct calendar days (refresh
    rows are taken at one hour a day, so a one-day slice has no span)."""
    span = (decided_ms.max() - decided_ms.min()) / (24 * HOUR_MS)
    return float(max(span, (decided_ms // (24 * HOUR_MS)).nunique(), 1 / 24))


def _threshold_plot(ax: Any, frame: pd.DataFrame, thresholds: Mapping[str, float], point: str) -> None:
    s = np.sort(frame["score"].to_numpy())[::-1]
    y = frame["is_fraud"].to_numpy()[np.argsort(-frame["score"].to_numpy(), kind="stable")]
    k = np.arange(1, len(s) + 1)
    ax.plot(s, np.cumsum(y) / k, color="#c44e52", label="precision of alerts")
    ax2 = ax.twinx()
    ax2.plot(s, k / len(s), color="#4c72b0", label="flagged share")
    ax2.set_yscale("log")
    ax2.set_ylabel("flagged share (log)")
    for name, t in thresholds.items():
        ax.axvline(t, ls="--", color="black" if name == "block" else "grey", lw=1)
        ax.text(t, 0.02, f" {name}", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("threshold on the calibrated score")
    ax.set_ylabel("precision")
    ax.set_title(f"Thresholds at {point} (held-out period)", fontsize=10)
    lines = ax.get_lines()[:1] + ax2.get_lines()[:1]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center left", fontsize=8)


def _segments_section(
    meta: Any, heldout: pd.DataFrame, card: dict[str, Any], resamples: int, seed: int
) -> list[str]:
    md = ["## Performance by segment", ""]
    card["segments"] = {}
    if heldout.empty:
        return [*md, "No held-out scores were stored for this version.", ""]
    frame = heldout.copy()
    segments = [c for c in SEGMENT_SOURCES if c in frame and frame[c].notna().any()]
    if "account_age_h" in frame and frame["account_age_h"].notna().any():
        frame["account_age"] = _age_bucket(frame["account_age_h"])
        segments.append("account_age")
    absent = [c for c in SEGMENT_SOURCES if c not in segments]
    md += [f"Segments with data: {', '.join(segments) or 'none'}"
           + (f"; not in the events: {', '.join(absent)}." if absent else "."),
           "Country is the applicant's address country at onboarding; account age is measured at the "
           "refresh (every applicant is 0 h old at onboarding). Segments with fewer than 20 rows or "
           "without both classes show no AUPRC.", "",
           "| moment | segment | value | rows | fraud | AUPRC [95 % CI] | flagged at block | precision at block |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for point in POINTS:
        rows = frame[frame["point"] == point]
        block = _eval_thresholds(meta, rows, point).get("block")
        for seg in segments:
            if seg == "account_age" and point == "onboarding":
                continue
            for value, part in rows.groupby(seg, dropna=False, observed=True):
                fraud = int(part["is_fraud"].sum())
                enough = len(part) >= 20 and 0 < fraud < len(part)
                est = (
                    bootstrap(part, {}, resamples, seed)["auprc"]
                    if enough
                    else Estimate(np.nan, np.nan, np.nan)
                )
                flagged = part["score"] >= block if block is not None else pd.Series(False, index=part.index)
                prec = float(part.loc[flagged, "is_fraud"].mean()) if flagged.any() else float("nan")
                card["segments"].setdefault(point, {}).setdefault(seg, {})[str(value)] = {
                    "rows": len(part), "fraud": fraud, "auprc": vars(est),
                    "flagged_share": float(flagged.mean()), "precision_at_block": prec,
                }  # fmt: skip
                md.append(f"| {point} | {seg} | {value} | {_fmt(len(part))} | {_fmt(fraud)} | {est.text()} | "
                          f"{flagged.mean():.2%} | {_fmt(prec, '.3f')} |")  # fmt: skip
    return [*md, ""]


def _point_metrics(heldout: pd.DataFrame, meta: Any) -> dict[str, dict[str, float]]:
    out = {}
    for point in POINTS:
        frame = heldout[heldout["point"] == point] if len(heldout) else heldout
        if frame.empty:
            continue
        y = frame["is_fraud"].to_numpy(np.int64)
        s = frame["score"].to_numpy(np.float64)
        m = {k: float(v[0]) for k, v in ranking_metrics(y, s, np.ones((1, len(y)))).items()}
        block = _eval_thresholds(meta, frame, point).get("block")
        if block is not None:
            f = flag_metrics(y, s >= block, np.ones((1, len(y))))
            m |= {"precision_at_block": float(f["precision"][0]), "recall_at_block": float(f["recall"][0]),
                  "flagged_share_at_block": float(f["flagged_share"][0])}  # fmt: skip
        out[point] = m
    return out


def _comparison_section(
    registry: Any, meta: Any, index: dict[str, Any], heldout: pd.DataFrame, card: dict[str, Any]
) -> list[str]:
    md = ["## Comparison with the model it replaces", ""]
    previous = _previous_production(index, meta.version)
    if previous is None:
        card["comparison"] = None
        return [*md, "No earlier production version in the registry: this is the first model.", ""]
    try:
        prev = registry.meta(previous)
    except Exception:  # a deleted folder must not stop the card
        card["comparison"] = {"previous": previous, "missing": True}
        return [*md, f"Replaces `{previous}`, whose record is no longer in the registry.", ""]
    md += [f"Replaces **`{previous}`** ({prev.model_name}, registered {_utc(prev.created_at)}, code "
           f"`{prev.code_version}`). Each model's figures are on its own held-out period, so the deltas "
           "mix model and period; the promotion gate compares both models on the same period.", "",
           "| metric | this version | replaced | delta |", "|---|---|---|---|"]  # fmt: skip
    rows = []
    mine, theirs = _point_metrics(heldout, meta), _point_metrics(_heldout(registry.root / previous), prev)
    for point in POINTS:
        for k in ("auprc", "auroc", "precision_at_block", "recall_at_block", "flagged_share_at_block"):
            a, b = mine.get(point, {}).get(k), theirs.get(point, {}).get(k)
            if a is not None and b is not None:
                rows.append((f"{point} held-out {k}", a, b))
    seen = {r[0] for r in rows}
    for k in sorted(set(meta.metrics) & set(prev.metrics)):
        if k not in seen:
            rows.append((f"recorded {k}", float(meta.metrics[k]), float(prev.metrics[k])))
    card["comparison"] = {"previous": previous, "metrics": {}}
    for name, a, b in rows:
        card["comparison"]["metrics"][name] = {"this": a, "previous": b, "delta": a - b}
        md.append(f"| {name} | {_fmt(a)} | {_fmt(b)} | {a - b:+.4f} |")
    md += _same_period(registry.root / meta.version, previous, card)
    if set(meta.feature_names) != set(prev.feature_names):
        added = len(set(meta.feature_names) - set(prev.feature_names))
        removed = len(set(prev.feature_names) - set(meta.feature_names))
        md += ["", f"Features: {added} added, {removed} removed (behaviour model)."]
    return [*md, ""]


def _same_period(model_dir: Path, previous: str, card: dict[str, Any]) -> list[str]:
    """The promotion gate's figures of both models on the same period, when the gate compared this
    version with the one it replaces (``gate.json``, written by ``graphrisk retrain``)."""
    path = model_dir / GATE_FILE
    gate = json.loads(path.read_text()) if path.exists() else None
    if not gate or gate.get("champion") != previous:
        return []
    window = gate.get("window") or {}
    mine, theirs = (
        (gate.get("metrics") or {}).get("challenger", {}),
        (gate.get("metrics") or {}).get("champion", {}),
    )
    md = ["", f"On the same period ({_utc(window.get('from'))} to {_utc(window.get('to'))}, the promotion "
              "gate's replay; neither model was fitted on it):", "",
          "| metric (same period) | this version | replaced | delta |", "|---|---|---|---|"]  # fmt: skip
    same: dict[str, Any] = {}
    for k in sorted(set(mine) & set(theirs)):
        a, b = mine[k], theirs[k]
        if isinstance(a, int | float) and isinstance(b, int | float):
            same[k] = {"this": a, "previous": b, "delta": a - b}
            md.append(f"| {k} | {_fmt(a)} | {_fmt(b)} | {a - b:+.4f} |")
    card.setdefault("comparison", {})["same_period"] = {"window": window, "metrics": same}
    return md


def _monitoring_section(settings: Any | None, model_dir: Path, card: dict[str, Any]) -> list[str]:
    values = {
        k: getattr(settings, k) if settings is not None else _settings_defaults()[k] for k in MONITOR_FIELDS
    }
    # gnn/monitor/reference.py saves each decision point's training reference under monitor/.
    refs = sorted(str(p.relative_to(model_dir)) for p in (model_dir / "monitor").glob("*") if p.is_file())
    card["monitoring"] = {"thresholds": values, "references": refs}
    md = [
        "## Monitoring plan and alert thresholds",
        "",
        "Every refresh compares the served population with this version's training reference "
        f"({', '.join(f'`{r}`' for r in refs) or 'no reference saved beside this version'}; "
        "`gnn/monitor`): feature drift per feature and family, the score distribution and band shares, "
        "fraud rate by cohort as labels arrive, online rows against batch rows of the same users, and "
        "the graph's structure. Results go to Prometheus (API metrics and a Pushgateway text file for "
        "batch jobs); `graphrisk monitor report` writes the HTML report with charts. An alarm opens a "
        "retrain; a promoted model breaching its thresholds within its probation window is rolled back "
        "(`graphrisk models rollback` at any time).",
        "",
        "| signal | setting | alert when above |",
        "|---|---|---|",
    ]
    md += [f"| {text} | `{k}` | {values[k]} |" for k, text in MONITOR_FIELDS.items()]
    return [*md, ""]


def _limitations_section(
    meta: Any, training: dict[str, Any], heldout: pd.DataFrame, card: dict[str, Any]
) -> list[str]:
    labels = training.get("labels", {})
    decided = int((training.get("label_sources", {}).get("decisions") or {}).get("decided", 0))
    items = []
    if labels.get("planted_ring_members") and not decided:
        items.append("**Synthetic training data**: the labels are rings planted by the synthetic generator "
                     "and no investigator decision was merged; real fraud is more varied, and real figures "
                     "will be lower.")  # fmt: skip
    items += [
        "**Labels are incomplete**: only fraud someone found is labelled; undiscovered rings count as "
        "honest in training and in every figure here.",
        f"**Label delay**: users onboarded in the last {training.get('label_delay_h', 'n/a')} h before the "
        "cut-off are unlabelled, so the newest patterns are learned late.",
        "**Prior shift in thresholds**: the block threshold reaches its precision at the held-out "
        "period's fraud rate; when the share of fraud in traffic changes, precision and review volume "
        "at the same threshold change with it (watch the band shares and label drift).",
        "**Optimistic held-out figures**: the held-out period also chose early stopping, calibration "
        "and thresholds, and is a short, recent slice; small typologies have wide intervals.",
        "**Correlated errors within rings**: the bootstrap resamples users, not rings; ring members' "
        "scores move together, so intervals for ring typologies are narrower than ring-level ones.",
        "**Graph dependence**: features describe the user's neighbourhood; a new identifier hub (a "
        "busy public IP, a shared office device) raises honest users' scores until it is seen in "
        "training (hub monitoring alarms on it).",
    ]
    if not heldout.empty and heldout["typology"].notna().any():
        small = heldout[heldout["is_fraud"] == 1].groupby(["point", "typology"]).size()
        few = [f"{t} at {p} ({n})" for (p, t), n in small.items() if n < 30]
        if few:
            items.append("**Few held-out fraud rows**: " + ", ".join(few) + ".")
    card["limitations"] = items
    return ["## Known limitations", "", *[f"- {i}" for i in items], ""]


def _approval_section(meta: Any, index: dict[str, Any], model_dir: Path, card: dict[str, Any]) -> list[str]:
    md = ["## Approval record", ""]
    entries = [e for e in index.get("history", []) if e.get("version") == meta.version]
    rollbacks = [r for r in index.get("rollbacks", []) if meta.version in (r.get("from"), r.get("to"))]
    gate = _gate_record(meta, entries, model_dir)
    card["approval"] = {"promotions": entries, "rollbacks": rollbacks, "gate": gate}
    if not entries:
        md.append("Not in the promotion history: this version is not production now (a candidate, a "
                  "challenger, or a promotion since rolled back).")  # fmt: skip
    else:
        md += ["| promoted at | by | reason | replaced | forced past the gate | audit entry |",
               "|---|---|---|---|---|---|"]  # fmt: skip
        for e in entries:
            actor = e.get("actor") or e.get("by") or "not recorded by the registry"
            forced = e.get("forced", e.get("force"))
            md.append(f"| {_utc(e.get('at'))} | {actor} | {e.get('reason') or '-'} | "
                      f"{e.get('previous') or 'none (first model)'} | "
                      f"{'yes' if forced else 'no' if forced is not None else 'not recorded'} | "
                      f"{e.get('audit_seq') if e.get('audit_seq') is not None else '-'} |")  # fmt: skip
    for e in entries:
        sh = e.get("shadow")
        if isinstance(sh, dict):
            md.append(f"\nShadow before the promotion of {_utc(e.get('at'))}: {sh.get('runs', 0)} scoring runs "
                      f"beside the champion, mean rank correlation {_fmt(sh.get('spearman_mean'))}, mean band "
                      f"agreement {_fmt(sh.get('band_agreement_mean'))}"
                      + (f", users changing band at the last run {sh.get('flips_last')}" if sh.get("flips_last") else "")
                      + ".")  # fmt: skip
    for r in rollbacks:
        md.append(f"\nRolled back from `{r.get('from')}` to `{r.get('to')}` at {_utc(r.get('at'))} by "
                  f"{r.get('actor', 'not recorded')}"
                  f"{' (automatic)' if r.get('automatic') else ''}: {r.get('reason') or 'no reason given'}.")  # fmt: skip
    md.append("")
    if gate is None:
        md.append("Promotion gate: **no gate record** for this version (it did not go through the "
                  "champion-challenger gate; the registry's fallback compares validation AUPRC only).")  # fmt: skip
        return [*md, ""]
    md.append(
        f"Promotion gate: **{'passed' if gate.get('passed') else 'refused'}** against champion "
        f"`{gate.get('champion') or 'none'}`"
        + (f", decided {_utc(gate['at_ms'])}" if gate.get("at_ms") else "")
        + (
            f" on the period {_utc(gate['window'].get('from'))} to {_utc(gate['window'].get('to'))}"
            if isinstance(gate.get("window"), dict) and gate["window"].get("from")
            else ""
        )
        + (f", audit entry {gate['audit_seq']}" if gate.get("audit_seq") is not None else "")
        + "."
    )
    checks = gate.get("checks") or []
    if checks:
        md += ["", "| gated metric | champion | challenger (this version) | tolerance | better when | passed |",
               "|---|---|---|---|---|---|"]  # fmt: skip
        for c in checks:
            verdict = {True: "yes", False: "**no**", None: "not measured"}[c.get("passed")]
            md.append(f"| {c.get('metric')} | {_fmt(c.get('champion'))} | {_fmt(c.get('challenger'))} | "
                      f"{_fmt(c.get('tolerance'))} | {'higher' if c.get('higher_is_better') else 'lower'} | "
                      f"{verdict}{' (' + c['note'] + ')' if c.get('note') else ''} |")  # fmt: skip
    elif gate.get("failed") is not None:
        md.append(f"Failed metrics: {', '.join(gate['failed']) or 'none'}.")
    return [*md, ""]


def _gate_record(meta: Any, entries: list[dict[str, Any]], model_dir: Path) -> Any:
    """The promotion gate's decision and numbers, wherever the registry keeps them (a
    ``gate.json`` beside the model, the version's notes, or the promotion entry)."""
    path = model_dir / GATE_FILE
    if path.exists():
        return json.loads(path.read_text())
    for key in ("gate", "promotion_gate"):
        if key in (meta.notes or {}):
            return meta.notes[key]
    for e in reversed(entries):
        if e.get("gate") is not None:
            return e["gate"]
    return None
