"""Scheduled retraining: a challenger from the labels known at a cut-off, gated against the
champion on the latest labelled period, shadowed, then promoted; a promoted model on probation.

One replay of the history (:func:`gnn.backtest.run_backtest`, rows only) serves it all:

1. the challenger's two decision-point models are fitted at the cut-off, the start of the latest
   labelled period (:func:`gnn.promotion.holdout_window`), from rows decided before it whose
   labels were known by then, investigators' decisions included (the caller merges them:
   :func:`api.decisions.training_labels`);
2. the challenger and the production model (the champion) are scored on that period's rows and
   compared by the promotion gate (:func:`gnn.promotion.decide`), recorded in the registry and
   the audit trail;
3. a challenger the gate lets through is put in shadow for ``shadow_h`` hours: each scoring run
   scores it beside the champion (:func:`gnn.shadow.shadow_score`), logged, never served;
4. when its shadow period is over, :func:`conclude_shadow` promotes it (with the shadow agreement
   in the record) and writes its model card (approval record, gate numbers, comparison with the
   model it replaces); :func:`gnn.promotion.check_probation` rolls a promoted model back if
   monitoring breaches a threshold within ``probation_h``.

:func:`run_cycle` is what ``graphrisk retrain`` and the hourly job run: probation, shadow, then a
retrain when due (every ``retrain_every_h`` hours, or on drift alarms of the last monitoring run).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from gnn.backtest import BacktestConfig, BacktestResult, ring_milestones, run_backtest
from gnn.decision_training import DecisionPointError, fit_served_models, register_served_models
from gnn.monitor.run import monitor_dir
from gnn.promotion import (
    HOUR_MS,
    Audit,
    check_probation,
    decide,
    holdout_metrics,
    holdout_window,
    promote,
    record_gate,
    tolerances,
)
from gnn.registry import ModelMeta, ModelRegistry, RegistryError
from gnn.shadow import SHADOW_DIR, shadow_summary
from graphrisk.config import Settings
from pipelines.event_log import EventLog

STATE_FILE = "retrain.json"
# Alarm kinds that mean the data or the scores moved (gnn/monitor/alerts.py); graph-structure
# alarms (new hubs, ring inputs) call for a look, not a refit.
DRIFT_KINDS = frozenset({"feature_psi", "feature_ks", "score_psi", "band_shift", "label_rate", "skew"})


@dataclass
class RetrainReport:
    """What one retrain did."""

    version: str
    champion: str | None
    cutoff_ms: int
    window: dict[str, int]
    passed: bool
    failed: list[str]
    gate: dict[str, Any]
    shadow_until_ms: int | None
    labels: dict[str, Any]
    fits: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the JSON report."""
        return json.loads(json.dumps(asdict(self), default=str))


def replay(
    log: EventLog,
    labels: pd.DataFrame,
    label_delay_h: float,
    sample_every_h: int = BacktestConfig.sample_every_h,
    sample_share: float = BacktestConfig.sample_share,
) -> BacktestResult:
    """The history's decision rows (no test period: nothing is scored during the replay).

    ``sample_every_h`` and ``sample_share``: how often, and for which share of users, refresh rows
    are kept (:class:`gnn.backtest.BacktestConfig`); a short history needs them denser.
    """
    cfg = BacktestConfig(
        label_delay_h=label_delay_h, sample_every_h=sample_every_h, sample_share=sample_share
    )
    return run_backtest(log, labels, replace(cfg, train_hours=10**7))


def fit_challenger(
    log: EventLog,
    result: BacktestResult,
    labels: pd.DataFrame,
    registry: ModelRegistry,
    cutoff_ms: int,
    label_delay_h: float,
    label_sources: dict[str, Any] | None = None,
) -> tuple[ModelMeta, list[dict[str, Any]]]:
    """Fit both decision points' models at ``cutoff_ms`` from ``result``'s rows and register them
    (as :func:`gnn.decision_training.train_decision_point_models` does at the history's end).

    Raises:
        DecisionPointError: a point lacks labels known by the cut-off.
    """
    cfg = replace(BacktestConfig(label_delay_h=label_delay_h), train_hours=10**7)
    models, behaviour, metrics, fits = fit_served_models(result, cutoff_ms, cfg, labels, label_delay_h)
    dataset = (
        f"challenger: event history to {cutoff_ms} (epoch ms, the cut-off before the latest labelled "
        f"period); labels known {label_delay_h} h after onboarding, investigator decisions merged"
    )
    meta = register_served_models(registry, log, labels, result, cutoff_ms, models, behaviour, metrics, dataset,
                                  label_sources, notes={"role": "challenger", "label_sources": label_sources or {}})  # fmt: skip
    return meta, fits


def retrain(
    settings: Settings,
    registry: ModelRegistry,
    log: EventLog,
    labels: pd.DataFrame,
    *,
    audit: Audit | None,
    result: BacktestResult | None = None,
    eval_labels: pd.DataFrame | None = None,
    label_sources: dict[str, Any] | None = None,
    now_ms: int | None = None,
) -> RetrainReport:
    """Train a challenger, gate it against the champion on the latest period, shadow it if it passes.

    Args:
        settings: Schedule, holdout, shadow and tolerance settings; where the monitor's skew is.
        registry: Where the champion is and the challenger goes.
        log: The event history (:func:`pipelines.event_log.read_event_log`).
        labels: Training labels (``user_id, is_fraud``, ``ring_id`` for ring detection), the
            investigators' decisions already merged in.
        audit: Where the gate's decision is recorded (None: the registry only).
        result: A replay of ``log`` already made (:func:`replay`); made here when None.
        eval_labels: Labels the period is scored against (default ``labels``; apart only when the
            training labels are known to differ, such as a test of a corrupted label feed).
        label_sources: Where ``labels`` came from, kept with the version.
        now_ms: The run's time (default now).

    Raises:
        DecisionPointError: a decision point lacks labels known by the cut-off.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    t0 = time.perf_counter()
    if result is None:
        result = replay(log, labels, settings.label_delay_h)
    t1 = time.perf_counter()
    lo, hi = holdout_window(result, settings.retrain_holdout_h, settings.label_delay_h)
    window = {"from": lo, "to": hi}
    meta, fits = fit_challenger(log, result, labels, registry, lo, settings.label_delay_h, label_sources)
    t2 = time.perf_counter()
    truth = labels if eval_labels is None else eval_labels
    skew = _last_skew(settings.data_dir)
    # Ring detection as the backtest measures it, from the rings' milestones in the event log.
    miles = ring_milestones(log, truth) if {"ring_id", "typology"} <= set(truth.columns) else None
    challenger_model, _ = registry.load(meta.version)
    new = holdout_metrics(challenger_model, result, truth, (lo, hi), skew, miles)
    champion = registry.production()
    old = None
    if champion is not None:
        old = holdout_metrics(registry.load(champion)[0], result, truth, (lo, hi), skew, miles)
    decision = decide(meta.version, champion, new, old, tolerances(settings), window)
    gate = record_gate(registry, decision, audit)
    until = None
    if decision.passed:
        until = now_ms + int(settings.shadow_h * HOUR_MS)
        registry.set_challenger(meta.version, {"since_ms": now_ms, "until_ms": until, "champion": champion})
    _save_state(registry, {"last_run_ms": now_ms, "version": meta.version, "passed": decision.passed})
    t3 = time.perf_counter()
    return RetrainReport(
        meta.version, champion, lo, window, decision.passed, decision.failed(), gate, until,
        label_sources or {}, fits,
        {"replay": round(t1 - t0, 2), "fit": round(t2 - t1, 2), "gate": round(t3 - t2, 2)},
    )  # fmt: skip


def conclude_shadow(
    settings: Settings, registry: ModelRegistry, *, audit: Audit | None, now_ms: int | None = None
) -> dict[str, Any] | None:
    """Promote the challenger whose shadow period is over (its gate passed), with the shadow's
    agreement in the record; None while none is in shadow or its period runs."""
    state = registry.challenger()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if state is None or now_ms < int(state.get("until_ms", 0)):
        return None
    version = str(state["version"])
    shadow = shadow_summary(settings.data_dir / SHADOW_DIR, version)
    registry.clear_challenger()
    try:
        record = promote(registry, version, actor="retrain", audit=audit,
                         reason=f"challenger passed the gate and {settings.shadow_h} h in shadow",
                         extra={"shadow": shadow})  # fmt: skip
    except RegistryError as exc:
        return {"promoted": False, "version": version, "error": str(exc), "shadow": shadow}
    return {
        "promoted": True,
        "version": version,
        "record": record,
        "card": write_card(settings, registry, version),
    }


def write_card(settings: Settings, registry: ModelRegistry, version: str) -> str:
    """Write the model card of a version just promoted (:func:`gnn.model_card.write_model_card`):
    its approval record (who promoted it, when, the gate's numbers, the shadow's agreement) and
    the comparison with the model it replaces. Returns the card's path, or why none was written
    (the promotion stands either way: a card can be written again with ``graphrisk models card``).
    """
    from gnn.model_card import write_model_card

    try:
        return str(write_model_card(registry, version, settings=settings))
    except (OSError, ValueError, KeyError) as exc:
        return f"not written: {type(exc).__name__}: {exc}"


def is_due(settings: Settings, registry: ModelRegistry, now_ms: int | None = None) -> tuple[bool, str]:
    """Whether a retrain is due: never run, ``retrain_every_h`` passed, or (``retrain_on_drift``)
    the last monitoring run, newer than the last retrain, raised drift alarms. A challenger in
    shadow is left to finish first."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if registry.challenger() is not None:
        return False, f"challenger {registry.challenger()['version']} is in shadow"  # type: ignore[index]
    state = _load_state(registry)
    last = state.get("last_run_ms")
    if last is None:
        return True, "never retrained"
    if now_ms - int(last) >= settings.retrain_every_h * HOUR_MS:
        return True, f"{settings.retrain_every_h} h since the last retrain"
    if settings.retrain_on_drift:
        monitor = last_monitor(settings.data_dir)
        if monitor and int(monitor.get("at_ms", 0)) > int(last):
            kinds = sorted({a["kind"] for a in monitor.get("alarm_list", []) if a.get("kind") in DRIFT_KINDS})
            if kinds:
                return True, f"drift alarms: {', '.join(kinds)}"
    return False, "not due"


def run_cycle(
    settings: Settings,
    registry: ModelRegistry,
    *,
    audit: Audit | None,
    load_history: Any,
    now_ms: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Probation, then the shadow's end, then a retrain when due (or ``force``).

    Args:
        load_history: Called with no argument when a retrain runs; returns ``(log, labels,
            label_sources)`` (the event history, training labels with decisions merged, their
            counts), so nothing is read when nothing is due.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out: dict[str, Any] = {
        "probation": check_probation(
            settings, registry, last_monitor(settings.data_dir), audit=audit, now_ms=now_ms
        )
    }
    out["shadow"] = conclude_shadow(settings, registry, audit=audit, now_ms=now_ms)
    due, why = is_due(settings, registry, now_ms)
    out["due"] = {"due": due or force, "why": "forced" if force and not due else why}
    if due or force:
        log, labels, sources = load_history()
        try:
            out["retrain"] = retrain(settings, registry, log, labels, audit=audit, label_sources=sources,
                                     now_ms=now_ms).to_dict()  # fmt: skip
        except DecisionPointError as exc:
            _save_state(registry, {"last_run_ms": now_ms, "error": str(exc)})
            out["retrain"] = f"failed: {exc}"
        if out["retrain"] and settings.shadow_h == 0:
            out["shadow"] = conclude_shadow(settings, registry, audit=audit, now_ms=now_ms)
    return out


def last_monitor(data_dir: Path) -> dict[str, Any] | None:
    """The last monitoring run's summary (``<data_dir>/monitor/latest.json``), if any."""
    path = monitor_dir(data_dir) / "latest.json"
    return json.loads(path.read_text()) if path.exists() else None


def _last_skew(data_dir: Path) -> pd.DataFrame | None:
    """The last monitoring run's skew of rows that decide (served applicants), for the gate."""
    path = monitor_dir(data_dir) / "skew.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path)
    if "comparison" in table:
        # Known users' online rows feed explanations only: not the onboarding model's exposure.
        table = table[table["comparison"] != "known_user"]
    return table


def _load_state(registry: ModelRegistry) -> dict[str, Any]:
    path = registry.root / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(registry: ModelRegistry, state: dict[str, Any]) -> None:
    path = registry.root / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)
