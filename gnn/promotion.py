"""Champion against challenger: metrics on the same backtest period, the promotion gate, recorded
promotion and rollback, and the probation check that rolls a promoted model back.

The gate compares the metrics of :func:`holdout_metrics` (both models scored on the same latest
labelled period, which neither was fitted on) and lets the challenger through only if it is no
worse than the champion on every gated metric, within a tolerance each (settings ``gate_*``).
Its decision and numbers go to the registry (``<version>/gate.json``, and the promotion's history
entry) and to the audit trail. The audit trail is reached through an :data:`Audit` callable, so
this module does not import ``api`` (``graphrisk`` and ``gnn`` stay free of it; the CLI wires
:class:`api.audit.AuditLog` in with :func:`audit_to`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss

from gnn.asof import ONBOARDING, REFRESH
from gnn.backtest import BacktestConfig, BacktestResult, post_application_users
from gnn.registry import ModelRegistry, RegistryError
from graphrisk.config import Settings

HOUR_MS = 3_600_000
FLAG_BANDS = ("review", "block")

# (actor, action, target, detail) -> the audit entry's seq (None where nothing durable was written).
Audit = Callable[[str, str, str, dict[str, Any]], int | None]


@dataclass(frozen=True)
class GatedMetric:
    """One metric the gate compares: its direction and the setting holding its tolerance."""

    name: str
    higher_is_better: bool
    tolerance_setting: str
    meaning: str


GATED: tuple[GatedMetric, ...] = (
    GatedMetric("onboarding_auprc", True, "gate_auprc_tolerance",
                "average precision of the onboarding model on the period's applicants"),
    # Not in the list, gated all the same: the behaviour model re-scores every user hourly.
    GatedMetric("refresh_auprc", True, "gate_auprc_tolerance",
                "average precision of the behaviour model on the period's refresh rows"),
    GatedMetric("ring_detection_h", False, "gate_ring_detection_tolerance_h",
                "median hours from a planted ring's detection anchor in the period (the backtest's "
                "milestone: third application, first pass-through, burst start) to the moment half "
                "its members are flagged at onboarding or refresh (never: the period's end); where "
                "milestones are not available, the proxy: hours from its first application in the "
                "period to its first member flagged at onboarding"),
    GatedMetric("review_load", False, "gate_review_load_tolerance",
                "share of the period's decisions (onboarding and refresh rows) in review or block"),
    GatedMetric("calibration_ece", False, "gate_ece_tolerance",
                "expected calibration error (10 equal-width bins) over the period's decisions"),
    GatedMetric("skew_exposure", False, "gate_skew_tolerance",
                "onboarding model's gain importance times the last monitoring run's per-feature "
                "served-vs-batch mismatch rate"),
)  # fmt: skip


@dataclass
class GateCheck:
    """One gated metric: both values, the tolerance and the verdict (None: not measured)."""

    metric: str
    champion: float | None
    challenger: float | None
    tolerance: float
    higher_is_better: bool
    passed: bool | None
    note: str = ""


@dataclass
class GateDecision:
    """The gate's decision on a challenger, with the numbers behind it."""

    challenger: str
    champion: str | None
    passed: bool
    checks: list[GateCheck]
    window: dict[str, int]
    at_ms: int
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for gate.json, the registry's history and the audit entry."""
        return asdict(self)

    def failed(self) -> list[str]:
        """The metrics on which the challenger was worse beyond tolerance."""
        return [c.metric for c in self.checks if c.passed is False]


def tolerances(settings: Settings) -> dict[str, float]:
    """The tolerance of each gated metric, from the settings."""
    return {m.name: float(getattr(settings, m.tolerance_setting)) for m in GATED}


def decide(
    challenger: str,
    champion: str | None,
    challenger_metrics: dict[str, float | None],
    champion_metrics: dict[str, float | None] | None,
    tol: dict[str, float],
    window: dict[str, int],
) -> GateDecision:
    """Gate ``challenger``: no worse than the champion on every gated metric, within ``tol``.

    A metric neither model has (no rings in the period, no skew measured) is recorded as not
    measured and does not block; one only the champion has blocks (the challenger cannot show it
    is no worse). With no champion every check passes: there is nothing to be worse than.
    """
    checks = []
    for m in GATED:
        new = _finite(challenger_metrics.get(m.name))
        old = _finite(champion_metrics.get(m.name)) if champion_metrics is not None else None
        t = tol[m.name]
        if champion_metrics is None:
            checks.append(GateCheck(m.name, None, new, t, m.higher_is_better, True, "no champion"))
        elif old is None and new is None:
            checks.append(GateCheck(m.name, None, None, t, m.higher_is_better, None, "not measured"))
        elif new is None:
            checks.append(
                GateCheck(m.name, old, None, t, m.higher_is_better, False, "challenger not measured")
            )
        elif old is None:
            checks.append(GateCheck(m.name, None, new, t, m.higher_is_better, True, "champion not measured"))
        else:
            ok = new >= old - t if m.higher_is_better else new <= old + t
            checks.append(GateCheck(m.name, old, new, t, m.higher_is_better, bool(ok)))
    passed = all(c.passed is not False for c in checks)
    metrics = {"challenger": dict(challenger_metrics), "champion": dict(champion_metrics or {})}
    return GateDecision(challenger, champion, passed, checks, window, int(time.time() * 1000), metrics)


def _finite(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


# --- metrics on the period -------------------------------------------------------------------


def holdout_window(result: BacktestResult, holdout_h: int, label_delay_h: float) -> tuple[int, int]:
    """The latest labelled period of a replay: ``[start, end)`` in epoch ms.

    Its end is the last moment whose applicants' labels have arrived by the replay's end (the
    label delay before it); it spans ``holdout_h`` hours before that. A model fitted at ``start``
    (the challenger's cut-off) has read no row decided in it.
    """
    end = int(result.end - label_delay_h * HOUR_MS) // HOUR_MS * HOUR_MS
    return end - holdout_h * HOUR_MS, end


def holdout_metrics(
    model: Any,
    result: BacktestResult,
    labels: pd.DataFrame,
    window: tuple[int, int],
    skew: pd.DataFrame | None = None,
    milestones: pd.DataFrame | None = None,
) -> dict[str, float | None]:
    """A registered decision-point model's figures on the replay's rows decided in ``window``.

    Args:
        model: A :class:`gnn.training.RiskModel` whose scorer and applicant model are
            :class:`gnn.decision_training.DecisionScorer` (others cannot score replay rows:
            every figure is None).
        result: The replay (:func:`gnn.backtest.run_backtest`) holding both points' rows.
        labels: ``user_id, is_fraud`` (and ``ring_id`` for ring detection) the rows are scored against.
        window: ``[start, end)`` epoch ms (:func:`holdout_window`).
        skew: The last monitoring run's ``feature, mismatch_rate`` table (None: not measured).
        milestones: The planted rings' detection anchors (:func:`gnn.backtest.ring_milestones`):
            ring detection is measured as the backtest measures it (:func:`ring_detection`);
            None, or no ring anchored in the period: the onboarding-only proxy.
    """
    out: dict[str, float | None] = {m.name: None for m in GATED}
    applicant = getattr(model, "for_applicants", model)
    if not (hasattr(model.scorer, "predict_inputs") and hasattr(applicant.scorer, "predict_inputs")):
        return out
    label_of = labels.drop_duplicates("user_id", keep="last").set_index("user_id")["is_fraud"]
    lo, hi = window
    parts: dict[str, pd.DataFrame] = {}
    for point, m in ((ONBOARDING, applicant), (REFRESH, model)):
        x, users, decided = result.rows[point].arrays()
        y = label_of.reindex(users).fillna(-1).to_numpy(np.int64)
        keep = (decided >= lo) & (decided < hi) & (y >= 0)
        if not keep.any():
            continue
        scores = m.calibrator.transform(m.scorer.predict_inputs(_columns(x[keep], result.rows[point].names,
                                                                         m.scorer.feature_names)))  # fmt: skip
        parts[point] = pd.DataFrame({"user_id": users[keep], "decided": decided[keep], "y": y[keep],
                                     "score": scores, "band": m.band(scores)})  # fmt: skip
    onb = parts.get(ONBOARDING)
    if onb is not None:
        # The onboarding model learns application fraud; users whose fraud starts after they
        # apply are judged by the behaviour model and the rings, not counted against it here.
        onb = onb[
            ~onb["user_id"].isin(post_application_users(labels, BacktestConfig().post_application_typologies))
        ]
    if onb is not None and onb["y"].nunique() == 2:
        out["onboarding_auprc"] = float(average_precision_score(onb["y"], onb["score"]))
        out["onboarding_brier"] = float(brier_score_loss(onb["y"], onb["score"]))
    if REFRESH in parts and parts[REFRESH]["y"].nunique() == 2:
        out["refresh_auprc"] = float(average_precision_score(parts[REFRESH]["y"], parts[REFRESH]["score"]))
    both = pd.concat(list(parts.values()), ignore_index=True) if parts else None
    if both is not None and len(both):
        out["review_load"] = float(both["band"].isin(FLAG_BANDS).mean())
        out["calibration_ece"] = expected_calibration_error(both["y"].to_numpy(), both["score"].to_numpy())
        out["brier"] = float(brier_score_loss(both["y"], both["score"]))
        out["decisions"] = float(len(both))
        out["fraud"] = float(both["y"].sum())
    if "ring_id" in labels and parts:
        measured = ring_detection(parts, labels, milestones, window) if milestones is not None else None
        if measured is not None:
            out.update(measured)
        elif onb is not None:
            out.update(_ring_detection(onb, labels, hi))
            out["ring_detection_backtest"] = 0.0
    if skew is not None and len(skew):
        out["skew_exposure"] = _skew_exposure(applicant, skew)
    return out


def _columns(x: np.ndarray, names: list[str], wanted: list[str]) -> np.ndarray:
    """``x``'s columns in ``wanted`` order; a column the rows lack is missing (NaN) to the trees."""
    if list(names) == list(wanted):
        return x
    pos = pd.Index(names).get_indexer(wanted)
    out = np.full((len(x), len(wanted)), np.nan, dtype=np.float32)
    out[:, pos >= 0] = x[:, pos[pos >= 0]]
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Share-weighted mean gap between predicted and observed fraud rate over equal-width bins."""
    idx = np.minimum((np.asarray(p) * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        sel = idx == b
        total += sel.mean() * abs(float(np.mean(p[sel])) - float(np.mean(y[sel])))
    return float(total)


ANCHOR_OF_TYPOLOGY = {"device_farm": "third_onboarding", "synthetic_identity": "third_onboarding",
                      "mule_ring": "first_pass_through", "bust_out": "burst_start"}  # fmt: skip


def ring_detection(
    parts: dict[str, pd.DataFrame], labels: pd.DataFrame, milestones: pd.DataFrame, window: tuple[int, int]
) -> dict[str, float | None] | None:
    """Ring detection time on the period, as the backtest measures it (:func:`gnn.backtest.backtest_report`).

    Each planted ring whose detection anchor (its typology's milestone of
    :func:`gnn.backtest.ring_milestones`: the third application for device farms and synthetic
    identities, the first member-to-member transfer for mule rings, the burst's first payment for
    bust-outs) falls in ``window`` is detected when half its members (rounded up) have been flagged
    (review or block) by the model, at onboarding or at a refresh in the period. Its figure is the
    hours from the anchor to that moment (negative: flagged before the anchor, the goal for
    bust-outs); never detected in the period: the hours to the period's end. The backtest also
    counts the ring model's flags; the gate leaves them out, being the same ring model for both
    decision-point models under comparison.

    Args:
        parts: Point -> the model's scored rows in the period (``user_id, decided, band``).
        labels: ``user_id`` and ``ring_id`` (ring sizes).
        milestones: :func:`gnn.backtest.ring_milestones`.
        window: ``[start, end)`` epoch ms.

    Returns:
        ``ring_detection_h`` (median), ``rings_in_period``, ``rings_flagged``,
        ``ring_detection_backtest`` (1.0), or None when no ring is anchored in the period.
    """
    lo, hi = window
    anchors = []
    for r in milestones.itertuples():
        column = ANCHOR_OF_TYPOLOGY.get(str(r.typology))
        anchor = getattr(r, column) if column else np.nan
        if anchor == anchor and lo <= anchor < hi:  # not NaN, in the period
            anchors.append((r.ring_id, float(anchor)))
    if not anchors:
        return None
    rows = pd.concat([p[["user_id", "decided", "band"]] for p in parts.values()], ignore_index=True)
    flagged = rows[rows["band"].isin(FLAG_BANDS)].groupby("user_id")["decided"].min()
    members = labels.dropna(subset=["ring_id"]).drop_duplicates("user_id")
    hours, detected = [], 0
    for ring, anchor in anchors:
        ids = members.loc[members["ring_id"] == ring, "user_id"]
        need = int(np.ceil(len(ids) / 2))
        times = np.sort(flagged.reindex(ids).dropna().to_numpy(np.float64))
        at = times[need - 1] if need and len(times) >= need else np.nan
        detected += int(at == at)
        hours.append(((at if at == at else hi) - anchor) / HOUR_MS)
    return {"ring_detection_h": float(np.median(hours)), "rings_in_period": float(len(hours)),
            "rings_flagged": float(detected), "ring_detection_backtest": 1.0}  # fmt: skip


def _ring_detection(onb: pd.DataFrame, labels: pd.DataFrame, end: int) -> dict[str, float | None]:
    """The proxy, where ring milestones are not available (no event log or typologies): hours from
    each planted ring's first application in the period to its first member flagged at onboarding.

    Onboarding decisions only; a ring never flagged counts the hours to the period's end. The gate
    records which measure it used (``ring_detection_backtest``: 1 the backtest's, 0 this proxy).
    """
    ring_of = labels.dropna(subset=["ring_id"]).drop_duplicates("user_id").set_index("user_id")["ring_id"]
    rows = onb.assign(ring_id=onb["user_id"].map(ring_of)).dropna(subset=["ring_id"])
    if rows.empty:
        return {"ring_detection_h": None, "rings_in_period": 0.0, "rings_flagged": 0.0}
    hours = []
    flagged = 0
    for _, part in rows.groupby("ring_id"):
        first = part["decided"].min()
        hit = part.loc[part["band"].isin(FLAG_BANDS), "decided"]
        flagged += int(len(hit) > 0)
        hours.append(((hit.min() if len(hit) else end) - first) / HOUR_MS)
    return {"ring_detection_h": float(np.median(hours)), "rings_in_period": float(len(hours)),
            "rings_flagged": float(flagged)}  # fmt: skip


def _skew_exposure(model: Any, skew: pd.DataFrame) -> float | None:
    """Gain-importance-weighted mismatch rate of the model's features (0: it reads none that skew)."""
    booster = getattr(model.scorer, "booster_", None)
    if booster is None:
        return None
    gain = booster.feature_importance("gain").astype(np.float64)
    if gain.sum() <= 0:
        return 0.0
    rate = skew.drop_duplicates("feature").set_index("feature")["mismatch_rate"]
    mismatch = rate.reindex(list(model.scorer.feature_names)).fillna(0.0).to_numpy(np.float64)
    return float((gain / gain.sum() * mismatch).sum())


# --- recorded promotion and rollback ---------------------------------------------------------


def audit_to(log: Any, role: str = "admin", timeout_s: float = 60.0) -> Audit:
    """An :data:`Audit` writing to an :class:`api.audit.AuditLog` (anything with its ``append``),
    waiting until each entry is committed (a promotion is not done until it is recorded)."""

    def write(actor: str, action: str, target: str, detail: dict[str, Any]) -> int | None:
        return log.append(actor, role, action, target, detail).result(timeout=timeout_s)

    return write


def record_gate(
    registry: ModelRegistry, decision: GateDecision, audit: Audit | None, actor: str = "retrain"
) -> dict[str, Any]:
    """Keep the gate's decision beside the challenger and in the audit trail."""
    body = decision.to_dict()
    registry.write_gate(decision.challenger, body)
    if audit is not None:
        body["audit_seq"] = audit(
            actor,
            "model_gate", f"model:{decision.challenger}",
            {"passed": decision.passed, "champion": decision.champion, "failed": decision.failed(),
             "checks": [asdict(c) for c in decision.checks], "window": decision.window},
        )  # fmt: skip
        registry.write_gate(decision.challenger, body)
    return body


def promote(
    registry: ModelRegistry,
    version: str,
    *,
    actor: str,
    audit: Audit | None,
    force: bool = False,
    reason: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Promote ``version`` through its recorded gate (or past it with ``force``), recorded in the
    registry's history and the audit trail.

    Returns:
        The history entry's record (actor, reason, forced, the gate's verdict and failures).

    Raises:
        RegistryError: the gate refused it and ``force`` is not set (the refusal is audited).
    """
    gate = registry.read_gate(version)
    record: dict[str, Any] = {
        "actor": actor, "reason": reason, "forced": force,
        "gate": None if gate is None else {"passed": gate["passed"], "champion": gate.get("champion"),
                                           "failed": [c["metric"] for c in gate["checks"] if c["passed"] is False],
                                           "audit_seq": gate.get("audit_seq")},
    } | (extra or {})  # fmt: skip
    previous = registry.production()
    try:
        registry.promote(version, force=force, record=record)
    except RegistryError as exc:
        if audit is not None:
            audit(actor, "model_promotion_refused", f"model:{version}", record | {"error": str(exc)})
        raise
    if audit is not None:
        record["audit_seq"] = audit(
            actor, "model_promotion", f"model:{version}", record | {"previous": previous}
        )
    return record


def rollback(
    registry: ModelRegistry,
    *,
    actor: str,
    audit: Audit | None,
    reason: str,
    automatic: bool = False,
    evidence: dict[str, Any] | None = None,
) -> str:
    """Return production to the previously promoted version, recorded in the registry and the audit trail.

    Raises:
        RegistryError: nothing to roll back to.
    """
    undone = registry.production()
    record = {"actor": actor, "reason": reason, "automatic": automatic, "evidence": evidence or {}}
    version = registry.rollback(record)
    if audit is not None:
        audit(actor, "model_rollback", f"model:{undone}", record | {"to": version})
    return version


def probation_breaches(settings: Settings, monitor: dict[str, Any]) -> list[dict[str, Any]]:
    """What in a monitoring summary (:meth:`gnn.monitor.run.MonitorResult.summary`) crosses the
    rollback thresholds: the score PSI, or a band's share moving against the training reference."""
    pred = monitor.get("prediction") or {}
    out = []
    psi = pred.get("score_psi")
    if psi is not None and psi >= settings.rollback_score_psi:
        out.append({"metric": "score_psi", "value": psi, "threshold": settings.rollback_score_psi})
    for band, shift in (pred.get("band_shift") or {}).items():
        if abs(shift) >= settings.rollback_band_shift:
            out.append(
                {"metric": f"band_shift:{band}", "value": shift, "threshold": settings.rollback_band_shift}
            )
    return out


def check_probation(
    settings: Settings,
    registry: ModelRegistry,
    monitor: dict[str, Any] | None,
    *,
    audit: Audit | None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """Roll the production model back when monitoring breaches a threshold within its probation.

    Only a monitoring run of the production version, taken after its promotion and within
    ``probation_h`` hours of it, counts: an older run measured another model.

    Returns:
        ``{"rolled_back": bool, ...}`` with the breaches and versions, or why nothing was checked.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    production = registry.production()
    last = registry.last_promotion()
    if production is None or last is None or last.get("previous") is None:
        return {"rolled_back": False, "why": "no promotion to undo"}
    promoted_at = int(last["at"])
    if now_ms - promoted_at > settings.probation_h * HOUR_MS:
        return {"rolled_back": False, "why": f"{production} is past its {settings.probation_h} h probation"}
    if not monitor or monitor.get("version") != production or int(monitor.get("at_ms", 0)) < promoted_at:
        return {"rolled_back": False, "why": f"no monitoring run of {production} since its promotion"}
    breaches = probation_breaches(settings, monitor)
    if not breaches:
        return {"rolled_back": False, "why": "within thresholds", "version": production}
    hours = (now_ms - promoted_at) / HOUR_MS
    to = rollback(registry, actor="probation", audit=audit, automatic=True,
                  reason=f"monitoring breached the rollback thresholds {hours:.1f} h after promotion",
                  evidence={"breaches": breaches, "monitor_at_ms": monitor.get("at_ms")})  # fmt: skip
    return {
        "rolled_back": True,
        "from": production,
        "to": to,
        "breaches": breaches,
        "hours_after_promotion": hours,
    }
