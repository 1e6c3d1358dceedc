"""``backtest``: replay history hour by hour and score every decision as of its moment.

At each hour ``h`` the graph is folded forward by one hour (:class:`pipelines.event_log.GraphTimeline`,
the pipeline's own merges), then:

* the applicants of ``[h, h + 1)`` are scored at their application with the onboarding model
  (:func:`gnn.asof.onboarding_rows`, the API's row definition);
* on refresh hours every user with history is re-scored with the behaviour model, and rings are
  found on the graph as of ``h`` and scored with the ring model;
* on the retraining schedule, each model is refitted from the rows decided before ``h`` whose
  labels were known by ``h``.

The first cut-off is ``train_hours`` after the replay's start; everything before it only feeds
training. Quality is reported per decision point over the decisions after the first cut-off,
beside the end-of-window scores of the same users (the moment earlier figures measured).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from gnn.asof import ONBOARDING, REFRESH, HourState, applicants, onboarding_rows, refresh_rows, star_of
from gnn.decision_models import DecisionModel, NotEnoughLabelsError, fit_decision_model, known_by
from gnn.models.base import FeatureOptions
from gnn.rings.candidates import Candidates, find_candidates
from gnn.rings.features import cluster_features
from gnn.rings.model import RingModel, best_ring_match, train_ring_model
from gnn.rings.moments import ClusterSample, stable_share, training_rows
from graphrisk.arrow import arrow_to_pandas
from pipelines.event_log import EventLog, FactLog, GraphTimeline

HOUR_MS = 3_600_000
FLAG_BANDS = ("review", "block")


@dataclass
class BacktestConfig:
    """How the replay runs.

    Attributes:
        train_hours: Hours from the replay's start to the first cut-off.
        retrain_every_h: Hours between refits (every model) after the first cut-off.
        label_delay_h: Hours from a user's onboarding until its label is known.
        refresh_every_h: Hours between refreshes (behaviour re-score and rings).
        sample_every_h: Hours between the refresh rows kept for training the behaviour model.
        sample_share: Share of users (drawn by id, whatever the label) whose refresh rows are kept.
        ring_sample_every_h: Hours between the moments whose candidate clusters are kept for
            training the ring model. It is used on young clusters (a farm two hours old), so it
            learns from clusters as past refreshes saw them, not only from the graph at the cut-off,
            where every ring it knows is grown.
        ring_negative_share: Share of the honest clusters of each kept moment that are trained on
            (an honest cluster barely changes from one moment to the next).
        target_precision: Precision the block threshold targets on validation.
        post_application_typologies: Fraud typologies that begin after the application (a recruited
            mule, a bust-out customer: honest-looking when they apply). The onboarding model does not
            train on their rows; the behaviour model and the rings are there to catch them.
        block_base_rate: Per decision point, the fraud share at which the block threshold must
            still reach ``target_precision`` (validation's own share when lower; absent: validation's).
        review_fraction: Review capacity per scored user, under the block band.
        onboarding_options: Features of the onboarding rows.
        refresh_options: Features of the refresh rows.
        seed: Model seed.
    """

    train_hours: int = 7 * 24
    retrain_every_h: int = 24
    label_delay_h: float = 72.0
    refresh_every_h: int = 1
    sample_every_h: int = 24
    sample_share: float = 0.3
    ring_sample_every_h: int = 6
    ring_negative_share: float = 0.2
    target_precision: float = 0.9
    block_base_rate: dict[str, float] = field(default_factory=lambda: {ONBOARDING: 0.002})
    post_application_typologies: tuple[str, ...] = ("mule_ring", "bust_out")
    review_fraction: float = 0.01
    onboarding_options: FeatureOptions = field(
        default_factory=lambda: FeatureOptions(label_hops=0, history_labels=False)
    )
    refresh_options: FeatureOptions = field(
        default_factory=lambda: FeatureOptions(
            label_hops=0, history_labels=False, reduces=("mean", "max", "sum")
        )
    )
    seed: int = 0


@dataclass
class DecisionRows:
    """Rows of one decision point (features, user, decision time), kept for training."""

    x: list[np.ndarray] = field(default_factory=list)
    users: list[np.ndarray] = field(default_factory=list)
    decided: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, x: np.ndarray, users: np.ndarray, decided: np.ndarray) -> None:
        if len(x):
            self.x.append(x)
            self.users.append(np.asarray(users, dtype=object))
            self.decided.append(np.asarray(decided, dtype=np.int64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.x:
            return np.zeros((0, len(self.names)), np.float32), np.zeros(0, object), np.zeros(0, np.int64)
        return np.concatenate(self.x), np.concatenate(self.users), np.concatenate(self.decided)


@dataclass
class BacktestResult:
    """Every scored decision after the first cut-off, and what the replay did."""

    onboarding: pd.DataFrame  # user_id, time, score, band, model_cutoff
    refresh: pd.DataFrame  # user_id, hour, score, band (every user on each evaluated refresh)
    flagged_users: pd.DataFrame  # user_id, hour, point: first hour a user entered review or block
    ring_flags: pd.DataFrame  # ring_id, hour: planted rings matched by a listed cluster
    end_of_window: pd.DataFrame  # user_id, score: refresh rows at the last hour, last model
    models: list[dict[str, Any]]
    rows: dict[str, DecisionRows]
    onboarded_at: pd.Series  # user_id -> onboarding time (epoch ms)
    timings_s: dict[str, float]
    first_cutoff: int
    end: int


def run_backtest(
    log: EventLog,
    labels: pd.DataFrame,
    config: BacktestConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Replay ``log`` hour by hour (see the module docstring).

    Args:
        log: Clean unique events (:func:`pipelines.event_log.read_event_log`).
        labels: ``user_id, is_fraud`` and, for ring figures, ``ring_id``.
        config: Replay settings.
        progress: Called with ``(hours done, hours in all)``.
    """
    cfg = config or BacktestConfig()
    t_start = time.perf_counter()
    timings: dict[str, float] = {"fold": 0.0, "state": 0.0, "onboarding": 0.0, "refresh": 0.0, "rings": 0.0,
                                 "train": 0.0}  # fmt: skip
    facts = FactLog.of(log.clean)
    apps = applicants(log.clean)
    times = log.clean.column("time").to_numpy()
    start = (int(times.min()) // HOUR_MS + 1) * HOUR_MS
    end = (int(times.max()) // HOUR_MS + 1) * HOUR_MS
    first_cutoff = start + cfg.train_hours * HOUR_MS
    onboarded_at = apps.groupby("user_id")["time"].min()
    timeline = GraphTimeline(facts)
    onb, beh = DecisionRows(), DecisionRows()
    models: dict[str, DecisionModel] = {}
    ring_model: RingModel | None = None
    model_log: list[dict[str, Any]] = []
    onb_out: list[pd.DataFrame] = []
    ref_out: list[pd.DataFrame] = []
    ring_out: list[pd.DataFrame] = []
    ring_samples: list[ClusterSample] = []
    first_flag: dict[str, tuple[int, str]] = {}
    hours = list(range(start, end + 1, HOUR_MS))
    app_times = apps["time"].to_numpy(np.int64)
    last_fit = None
    work: _HourWork | None = None
    for i, h in enumerate(hours):
        t0 = time.perf_counter()
        timeline.advance(h)
        t1 = time.perf_counter()
        state = HourState.of(timeline)
        work = _HourWork(state, cfg.refresh_options)
        t2 = time.perf_counter()
        timings["fold"] += t1 - t0
        timings["state"] += t2 - t1
        lo, hi = np.searchsorted(app_times, [h, h + HOUR_MS], side="left")
        hour_apps = apps.iloc[lo:hi]
        if len(hour_apps):
            star = star_of(state, cfg.onboarding_options)
            onb.names = star.names
            x = onboarding_rows(state, hour_apps, star)
            users = hour_apps["user_id"].to_numpy(object)
            onb.add(x, users, hour_apps["time"].to_numpy(np.int64))
        t3 = time.perf_counter()
        timings["onboarding"] += t3 - t2

        testing = h >= first_cutoff
        if testing and (last_fit is None or h - last_fit >= cfg.retrain_every_h * HOUR_MS):
            t_fit = time.perf_counter()
            models |= fit_point_models(
                {ONBOARDING: onb, REFRESH: beh}, h, cfg, labels, onboarded_at, model_log
            )
            last_fit = h
            timings["train"] += time.perf_counter() - t_fit
            ring_model = _fit_ring_model(
                work, models.get(REFRESH), ring_samples, labels, onboarded_at, h, cfg, model_log
            )

        if testing and len(hour_apps) and ONBOARDING in models:
            m = models[ONBOARDING]
            s = m.predict(x)
            bands = m.band(s)
            onb_out.append(pd.DataFrame({"user_id": users, "time": hour_apps["time"].to_numpy(), "score": s,
                                         "band": bands, "model_cutoff": m.cutoff_ms}))  # fmt: skip
            for u, b, t in zip(users, bands, hour_apps["time"].to_numpy(np.int64), strict=True):
                if b in FLAG_BANDS and u not in first_flag:
                    first_flag[u] = (int(t), ONBOARDING)  # decided at the application, not the hour

        refresh_due = (h - start) % (cfg.refresh_every_h * HOUR_MS) == 0
        sample_due = (h - start) % (cfg.sample_every_h * HOUR_MS) == 0
        t4 = time.perf_counter()
        if refresh_due and (sample_due or (testing and REFRESH in models)):
            xr, names, ur = work.rows()
            beh.names = names
            if sample_due:
                keep = stable_share(ur, cfg.sample_share)
                beh.add(xr[keep], ur[keep], np.full(int(keep.sum()), h, dtype=np.int64))
            if testing and REFRESH in models:
                m = models[REFRESH]
                s = m.predict(xr)
                bands = m.band(s)
                ref_out.append(pd.DataFrame({"user_id": ur, "hour": h, "score": s.astype(np.float32),
                                             "band": bands}))  # fmt: skip
                for u in ur[np.isin(bands, FLAG_BANDS)]:
                    if u not in first_flag:
                        first_flag[u] = (h, REFRESH)
                t5 = time.perf_counter()
                timings["refresh"] += t5 - t4
                if ring_model is not None:
                    ring_out.append(
                        _ring_flags(work, ring_model, pd.DataFrame({"id": ur, "score": s}), labels, h)
                    )
                timings["rings"] += time.perf_counter() - t5
            else:
                timings["refresh"] += time.perf_counter() - t4
        if "ring_id" in labels and (h - start) % (cfg.ring_sample_every_h * HOUR_MS) == 0:
            t6 = time.perf_counter()
            ring_samples.append(work.sample(h))
            timings["rings"] += time.perf_counter() - t6
        if progress is not None:
            progress(i + 1, len(hours))

    end_scores = pd.DataFrame({"user_id": [], "score": []})
    if work is not None and REFRESH in models:
        xr, _, ur = work.rows()
        end_scores = pd.DataFrame({"user_id": ur, "score": models[REFRESH].predict(xr)})
    timings = {k: round(v, 2) for k, v in timings.items()} | {
        "total": round(time.perf_counter() - t_start, 2)
    }
    return BacktestResult(
        onboarding=pd.concat(onb_out, ignore_index=True) if onb_out else pd.DataFrame(),
        refresh=pd.concat(ref_out, ignore_index=True) if ref_out else pd.DataFrame(),
        flagged_users=pd.DataFrame(
            [(u, h, p) for u, (h, p) in first_flag.items()], columns=["user_id", "hour", "point"]
        ),
        ring_flags=pd.concat(ring_out, ignore_index=True)
        if ring_out
        else pd.DataFrame(columns=["ring_id", "hour"]),
        end_of_window=end_scores,
        models=model_log,
        rows={ONBOARDING: onb, REFRESH: beh},
        onboarded_at=onboarded_at,
        timings_s=timings,
        first_cutoff=first_cutoff,
        end=end,
    )


def onboarding_times(onboarded_at: pd.Series, users: np.ndarray) -> np.ndarray:
    """Onboarding time of each user; never, for users without one (their labels never arrive)."""
    return onboarded_at.reindex(users).fillna(np.iinfo(np.int64).max // 2).to_numpy(np.float64)


def post_application_users(labels: pd.DataFrame, typologies: tuple[str, ...]) -> np.ndarray:
    """Users whose fraud begins after they apply (their ``typology`` is one of ``typologies``);
    none when ``labels`` carry no typology. The onboarding model neither trains nor is gated on them."""
    if "typology" not in labels:
        return np.zeros(0, dtype=object)
    return labels.loc[labels["typology"].isin(typologies), "user_id"].to_numpy(object)


def fit_point_models(
    rows: dict[str, DecisionRows],
    cutoff: int,
    cfg: BacktestConfig,
    labels: pd.DataFrame,
    onboarded_at: pd.Series,
    model_log: list[dict[str, Any]],
) -> dict[str, DecisionModel]:
    """Each decision point's model at ``cutoff``; a point without enough known labels is logged
    in ``model_log`` and left out."""
    label_of = labels.set_index("user_id")["is_fraud"]
    later = post_application_users(labels, cfg.post_application_typologies)
    out: dict[str, DecisionModel] = {}
    for point, kept in rows.items():
        x, users, decided = kept.arrays()
        y = label_of.reindex(users).fillna(-1).to_numpy(np.int64, copy=True)
        if point == ONBOARDING:
            # Their fraud starts after they apply: at the application they are neither fraud
            # the model can see nor honest customers, so their rows teach it nothing.
            y[np.isin(users, later)] = -1
        onboarded = onboarding_times(onboarded_at, users)
        opts = cfg.onboarding_options if point == ONBOARDING else cfg.refresh_options
        try:
            model = fit_decision_model(
                point, x, y, decided, onboarded, cutoff, kept.names, opts, label_delay_h=cfg.label_delay_h,
                target_precision=cfg.target_precision, block_base_rate=cfg.block_base_rate.get(point),
                review_fraction=cfg.review_fraction, seed=cfg.seed,
            )  # fmt: skip
        except NotEnoughLabelsError as exc:
            model_log.append({"point": point, "cutoff": cutoff, "error": str(exc)})
            continue
        out[point] = model
        model_log.append({"point": point, "cutoff": cutoff, **model.metrics, "block": model.block_threshold,
                          "review": model.review_threshold})  # fmt: skip
    return out


class _HourWork:
    """What an hour's steps share, computed once: the refresh rows and the ring candidates."""

    def __init__(self, state: HourState, options: FeatureOptions) -> None:
        self.state = state
        self._options = options
        self._rows: tuple[np.ndarray, list[str], np.ndarray] | None = None
        self._candidates: Candidates | None = None
        self._features: pd.DataFrame | None = None

    def rows(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        """:func:`gnn.asof.refresh_rows` of the hour."""
        if self._rows is None:
            self._rows = refresh_rows(self.state, self._options)
        return self._rows

    def candidates(self) -> Candidates:
        """Ring candidates of the graph as of the hour."""
        if self._candidates is None:
            self._candidates = find_candidates(self.state.nodes, self.state.edges)
        return self._candidates

    def cluster_features(self, scores: pd.DataFrame | None) -> pd.DataFrame:
        """Features of the hour's candidates; the last call's are kept for :meth:`sample`."""
        self._features = cluster_features(self.candidates(), self.state.nodes, self.state.edges, scores)
        return self._features

    def sample(self, hour: int) -> ClusterSample:
        """The hour's clusters, with the features they were scored on (without node scores when
        none were given this hour)."""
        feats = self._features if self._features is not None else self.cluster_features(None)
        return ClusterSample.of(hour, self.candidates(), feats)


def _fit_ring_model(
    work: _HourWork,
    behaviour: DecisionModel | None,
    samples: list[ClusterSample],
    labels: pd.DataFrame,
    onboarded_at: pd.Series,
    cutoff: int,
    cfg: BacktestConfig,
    model_log: list[dict[str, Any]],
) -> RingModel | None:
    """The ring model at ``cutoff``: the clusters of the graph as of then and of the kept past
    moments (``samples``), labelled with the labels known by then."""
    if "ring_id" not in labels:
        return None
    scores = None
    if behaviour is not None:
        x, _, users = work.rows()
        scores = pd.DataFrame({"id": users, "score": behaviour.predict(x)})
    feats = work.cluster_features(scores)
    users = labels["user_id"].to_numpy(object)
    seen = labels[known_by(onboarding_times(onboarded_at, users), cutoff, cfg.label_delay_h)]
    now = ClusterSample.of(cutoff, work.candidates(), feats)
    past = [p for p in samples if p.hour < cutoff]
    x_all, y_all, groups = training_rows(now, past, seen, cfg.ring_negative_share)
    moments = 1 + len(past)
    try:
        model = train_ring_model(x_all, y_all, seed=cfg.seed, version=f"rings@{cutoff}", groups=groups)
    except ValueError as exc:
        model_log.append({"point": "rings", "cutoff": cutoff, "error": str(exc)})
        return None
    model_log.append(
        {
            "point": "rings",
            "cutoff": cutoff,
            **model.metrics,
            "threshold": model.threshold,
            "moments": moments,
        }
    )
    return model


def _ring_flags(
    work: _HourWork, model: RingModel, scores: pd.DataFrame, labels: pd.DataFrame, hour: int
) -> pd.DataFrame:
    """Planted rings matched by a cluster the ring model lists at ``hour``."""
    cand = work.candidates()
    listed = model.predict(work.cluster_features(scores)) >= model.threshold
    match = best_ring_match(cand, labels)
    hit = match[listed & match["ring_id"].notna().to_numpy()]
    return pd.DataFrame({"ring_id": hit["ring_id"].unique(), "hour": hour})


# --- the report ------------------------------------------------------------------------------


def _quality(y: np.ndarray, s: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {"rows": float(len(y)), "fraud": float(y.sum())}
    if len(np.unique(y)) == 2:
        out["auroc"] = float(roc_auc_score(y, s))
        out["auprc"] = float(average_precision_score(y, s))
    tp = float((flagged & (y == 1)).sum())
    out["recall_at_block"] = tp / max(float(y.sum()), 1.0)
    out["precision_at_block"] = tp / max(float(flagged.sum()), 1.0) if flagged.any() else float("nan")
    return out


def _by_typology(frame: pd.DataFrame, score: str, flag: str) -> dict[str, Any]:
    """Overall figures, then per typology (its members against every honest row)."""
    y = frame["is_fraud"].to_numpy(np.int64)
    out: dict[str, Any] = {"overall": _quality(y, frame[score].to_numpy(), frame[flag].to_numpy(bool))}
    honest = frame[y == 0]
    for typ, members in frame[y == 1].groupby("typology"):
        part = pd.concat([members, honest])
        out[str(typ)] = _quality(
            part["is_fraud"].to_numpy(np.int64), part[score].to_numpy(), part[flag].to_numpy(bool)
        )
        # Precision over every flagged row: honest ones are what a typology's flags cost.
        out[str(typ)]["precision_at_block"] = out["overall"]["precision_at_block"]
    return out


def ring_milestones(log: EventLog, labels: pd.DataFrame) -> pd.DataFrame:
    """Per planted ring: the moments its detection targets count from.

    ``third_onboarding``: its third member's application (device farms, synthetic identities);
    ``first_pass_through``: its first member-to-member transfer (mule rings); ``burst_start``:
    the ring's planted burst start where ``labels`` carry one (a ``burst_start`` column, as the
    synthetic generator's ring labels do), else :func:`burst_start_of` its members' payments.
    """
    planted = (
        labels.dropna(subset=["ring_id"]).groupby("ring_id")["burst_start"].min()
        if "burst_start" in labels
        else pd.Series(dtype=np.float64)
    )
    clean = _ring_events(log, labels)
    onb = clean[(clean["event_type"] == "onboarding") & clean["ring"].notna()]
    rows = []
    for ring, members in labels.dropna(subset=["ring_id"]).groupby("ring_id"):
        times = np.sort(onb.loc[onb["ring"] == ring, "time"].to_numpy())
        pay = clean[(clean["event_type"] == "payment") & (clean["ring"] == ring)].sort_values("time")
        inside = pay[pay["cp_ring"] == ring]
        m = len(members)
        burst = float(planted.get(ring, np.nan))
        if np.isnan(burst):
            burst = burst_start_of(pay["time"].to_numpy(), m)
        rows.append({
            "ring_id": ring, "typology": members["typology"].iloc[0], "size": m,
            "first_onboarding": float(times[0]) if len(times) else np.nan,
            "third_onboarding": float(times[2]) if len(times) >= 3 else np.nan,
            "first_pass_through": float(inside["time"].min()) if len(inside) else np.nan,
            "burst_start": burst,
        })  # fmt: skip
    return pd.DataFrame(rows)


def burst_start_of(times: np.ndarray, members: int, window_h: float = 6.0) -> float:
    """An early bound on when a ring of ``members`` starts its bust, from its members' payment
    ``times`` (sorted): the first payment from which they make ``members`` payments within
    ``window_h`` hours (the bust is several purchases per member within hours).

    Members also shop in sessions of purchases minutes apart, so the rule can fire hours or
    days before the bust: measured from it, "flagged before the burst" is stricter than the
    truth. Planted bursts (the generator's ring labels) replace it where they exist.
    """
    n = len(times)
    if n < members:
        return float("nan")
    within = np.searchsorted(times, times + int(window_h * HOUR_MS), side="left") - np.arange(n)
    hits = np.flatnonzero(within >= members)
    return float(times[hits[0]]) if len(hits) else float("nan")


def _ring_events(log: EventLog, labels: pd.DataFrame) -> pd.DataFrame:
    """Events with the planted ring of their user (``ring``) and of their counterparty (``cp_ring``)."""
    ring_of = labels.dropna(subset=["ring_id"]).set_index("user_id")["ring_id"]
    clean = arrow_to_pandas(log.clean.select(["event_type", "user_id", "time", "counterparty_id", "amount"]))
    clean["ring"] = clean["user_id"].map(ring_of)
    clean["cp_ring"] = clean["counterparty_id"].map(ring_of)
    return clean


def _money_out(log: EventLog, labels: pd.DataFrame) -> pd.DataFrame:
    """Payments by ring members to anyone outside their ring: ``ring_id, time, amount``."""
    events = _ring_events(log, labels)
    pay = events[(events["event_type"] == "payment") & events["ring"].notna()]
    out = pay[pay["cp_ring"] != pay["ring"]]
    return out.rename(columns={"ring": "ring_id"})[["ring_id", "time", "amount"]]


def backtest_report(
    result: BacktestResult, log: EventLog, labels: pd.DataFrame, cfg: BacktestConfig
) -> dict[str, Any]:
    """The JSON report: per decision point, per typology, per ring, and the review load."""
    lab = labels[["user_id", "is_fraud"]].assign(typology=labels.get("typology"))
    report: dict[str, Any] = {
        "config": {k: (asdict(v) if isinstance(v, FeatureOptions) else v) for k, v in vars(cfg).items()},
        "test_period": {"from": result.first_cutoff, "to": result.end},
        "models": result.models,
        "timings_s": result.timings_s,
    }
    onb = result.onboarding.merge(lab, on="user_id", how="inner")
    if len(onb):
        onb["flag"] = onb["band"] == "block"
        report["onboarding"] = _by_typology(onb, "score", "flag")
        report["onboarding"]["after_second_member"] = after_second_member(onb, labels, result.onboarded_at)
        eow = onb[["user_id", "is_fraud", "typology"]].merge(result.end_of_window, on="user_id")
        if len(eow):
            eow["flag"] = False
            report["onboarding_users_end_of_window"] = _by_typology(eow, "score", "flag")
    if len(result.refresh):
        ref = result.refresh.merge(lab, on="user_id", how="inner")
        ref["flag"] = ref["band"] == "block"
        report["refresh"] = _by_typology(ref, "score", "flag")
    report["rings"] = _ring_report(result, log, labels, cfg)
    flagged = result.flagged_users
    # Applicants are flagged at their application; count them in the hour they applied. The first
    # refresh after the cut-off flags the whole existing book at once: a backlog, counted apart.
    first = (flagged["hour"] // HOUR_MS * HOUR_MS == result.first_cutoff) & (flagged["point"] == REFRESH)
    backlog = int(first.sum())
    flagged = flagged[~first]
    load = (
        flagged.groupby(flagged["hour"] // HOUR_MS * HOUR_MS).size() if len(flagged) else pd.Series(dtype=int)
    )
    report["review_load"] = {
        "backlog_at_first_refresh": backlog,
        "users_flagged_after_it": len(flagged),
        "per_hour_mean": float(load.reindex(range(result.first_cutoff, result.end + 1, HOUR_MS), fill_value=0).mean())
        if len(load) else 0.0,
        "per_hour_max": int(load.max()) if len(load) else 0,
        "fraud_share": float(flagged["user_id"].map(labels.set_index("user_id")["is_fraud"]).mean())
        if len(flagged) else float("nan"),
    }  # fmt: skip
    return report


def after_second_member(onb: pd.DataFrame, labels: pd.DataFrame, onboarded_at: pd.Series) -> dict[str, Any]:
    """Device-farm and synthetic-identity applicants after their ring's second member (counted
    over every application, those before the first cut-off included)."""
    ring_of = labels.set_index("user_id")["ring_id"]
    frame = onb.assign(ring_id=onb["user_id"].map(ring_of))
    every = pd.DataFrame({"user_id": onboarded_at.index, "time": onboarded_at.to_numpy()})
    every["ring_id"] = every["user_id"].map(ring_of)
    every = every.dropna(subset=["ring_id"]).sort_values(["time", "user_id"], kind="stable")
    every["rank"] = every.groupby("ring_id").cumcount()
    frame["rank"] = frame["user_id"].map(every.set_index("user_id")["rank"])
    targets = frame[frame["typology"].isin(["device_farm", "synthetic_identity"])]
    out: dict[str, Any] = {}
    flagged_total = int(frame["flag"].sum())
    flagged_fraud = int((frame["flag"] & (frame["is_fraud"] == 1)).sum())
    for typ, part in targets.groupby("typology"):
        late = part[part["rank"] >= 2]
        out[str(typ)] = {
            "applicants": len(late),
            "recall_at_block": float(late["flag"].mean()) if len(late) else float("nan"),
        }
    # Every flagged applicant counts against precision, whatever it is.
    out["precision_at_block_all_applicants"] = flagged_fraud / max(flagged_total, 1)
    # The best any threshold could do on this period's own curve (chosen looking at the period's
    # labels, so not an operating point: it separates ranking from threshold choice).
    target = (frame["typology"].isin(["device_farm", "synthetic_identity"]) & (frame["rank"] >= 2)).to_numpy()
    order = np.argsort(-frame["score"].to_numpy(), kind="stable")
    fraud = np.cumsum(frame["is_fraud"].to_numpy()[order] == 1)
    hits = np.cumsum(target[order])
    precision = fraud / np.arange(1, len(order) + 1)
    ok = precision >= 0.9
    out["best_recall_at_precision_0.9_on_period_curve"] = (
        float(hits[ok].max() / max(target.sum(), 1)) if ok.any() else 0.0
    )
    out["fraud_rate_of_applicants"] = float(frame["is_fraud"].mean())
    return out


def _ring_report(
    result: BacktestResult, log: EventLog, labels: pd.DataFrame, cfg: BacktestConfig
) -> dict[str, Any]:
    if "ring_id" not in labels:
        return {}
    miles = ring_milestones(log, labels)
    flags = (
        result.ring_flags.groupby("ring_id")["hour"].min()
        if len(result.ring_flags)
        else pd.Series(dtype=float)
    )
    member_flags = result.flagged_users.merge(labels[["user_id", "ring_id"]], on="user_id")
    sizes = labels.dropna(subset=["ring_id"]).groupby("ring_id").size()
    # Half the members in review or block: the hour the half-th member was first flagged.
    half = {}
    for ring, part in member_flags.dropna(subset=["ring_id"]).groupby("ring_id"):
        hours = np.sort(part["hour"].to_numpy())
        need = int(np.ceil(sizes[ring] / 2))
        if len(hours) >= need:
            half[ring] = hours[need - 1]
    onb_times = result.onboarding  # only for members onboarding after the cut-off
    money = _money_out(log, labels)
    step = cfg.refresh_every_h * HOUR_MS
    rows = []
    for r in miles.itertuples():
        detected = min(
            [v for v in (flags.get(r.ring_id), half.get(r.ring_id)) if v is not None], default=np.nan
        )
        anchor = {"device_farm": r.third_onboarding, "synthetic_identity": r.third_onboarding,
                  "mule_ring": r.first_pass_through, "bust_out": r.burst_start}.get(r.typology, np.nan)  # fmt: skip
        if np.isnan(anchor) or anchor < result.first_cutoff:
            continue  # its moment fell before the replay's test period
        onboarded = labels.loc[labels["ring_id"] == r.ring_id, "user_id"]
        ring_money = money[money["ring_id"] == r.ring_id]
        rows.append({
            "ring_id": r.ring_id, "typology": r.typology, "size": int(r.size),
            "anchor": anchor, "detected": detected,
            "hours_from_first_onboarding": (detected - r.first_onboarding) / HOUR_MS,
            "refreshes_after_anchor": np.ceil((detected - anchor) / step) if not np.isnan(detected) else np.nan,
            "members_onboarded_by_detection": int((onb_times[onb_times["user_id"].isin(onboarded)]["time"] < detected).sum())
            if not np.isnan(detected) and len(onb_times) else 0,
            "money_out_before": float(ring_money.loc[ring_money["time"] < detected, "amount"].sum())
            if not np.isnan(detected) else float(ring_money["amount"].sum()),
            "money_out_total": float(ring_money["amount"].sum()),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return {"rings": []}
    limits = {"device_farm": 2, "synthetic_identity": 2, "mule_ring": 6}
    summary = {}
    for typ, part in table.groupby("typology"):
        if typ == "bust_out":
            ok = part["detected"] < part["anchor"]
            target = "flagged before the burst"
        else:
            ok = part["refreshes_after_anchor"] <= limits[typ]
            target = f"flagged <= {limits[typ]} refreshes after the anchor"
        summary[str(typ)] = {
            "rings": len(part),
            "met": float(ok.mean()),
            "target": target,
            "detected": int(part["detected"].notna().sum()),
            "median_hours_from_first_onboarding": float(part["hours_from_first_onboarding"].median()),
            "money_out_before_share": float(
                part["money_out_before"].sum() / max(part["money_out_total"].sum(), 1e-9)
            ),
        }
    return {"summary": summary, "rings": table.replace({np.nan: None}).to_dict("records")}
