"""Training-serving skew of the production model: the rows it was served, against batch rows.

Two comparisons, each a :class:`gnn.monitor.skew.SkewReport`:

* **applicants** (:func:`applicant_skew`): the model-input row the API served each new applicant
  (``api.served_rows``, logged by ``POST /v1/score``) against the batch as-of onboarding row of the
  same user at the same moment (:func:`gnn.asof.onboarding_rows`, the definition the decision
  models are trained on), once the applicant's onboarding event is in the event log. An
  applicant served but not yet in the log counts as ``only_online``.
* **known users** (:func:`known_user_skew`): a known user's row built online from the store (its
  identifier links, read as the API reads them for explanations) against the row the last
  scoring run published for it (``user_inputs.parquet``). Only users of the applicant shape (at
  most one identifier per relation) are compared, on the columns the online path defines (own
  features and identifier relations): for others the online definition differs by design (a
  known user's two devices are folded into one device node; transfers are not read online).

The batch side is read-only use of :mod:`gnn.asof` (the hour's graph folded from the event log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gnn.monitor.skew import SkewReport, compare_rows

HOUR_MS = 3_600_000
APPLICANT = "applicant"
KNOWN_USER = "known_user"


def load_served_rows(audit_url: str, since_ms: int | None = None) -> dict[str, pd.DataFrame]:
    """Served applicant rows per model version (:meth:`api.served_rows.ServedRows.rows`).

    The table is the API's (its audit database); read here as ``graphrisk trace`` reads the audit
    trail, so the monitoring run needs no API process.
    """
    from api.served_rows import ServedRows

    if audit_url.startswith("sqlite:///") and not Path(audit_url.removeprefix("sqlite:///")).exists():
        return {}  # no API has written there: nothing served, and nothing to create
    served = ServedRows(audit_url)
    try:
        return served.rows(since_ms)
    finally:
        served.close()


def batch_onboarding_rows(
    log: Any, users: pd.Index, options: Any, labels: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Batch as-of onboarding rows of ``users`` whose onboarding event is in ``log``.

    Each hour holding one of their applications is replayed as :func:`gnn.backtest.run_backtest`
    does (the graph as the refresh at the hour leaves it, every application of the hour for the
    links since the refresh), and the rows of ``users`` kept.

    Args:
        log: The event history (:class:`pipelines.event_log.EventLog`).
        users: User ids wanted.
        options: The onboarding model's :class:`gnn.models.base.FeatureOptions`.
        labels: Labels the served star reads (the model's training labels; None: no labels, as
            :func:`gnn.asof.star_of`).

    Returns:
        One row per user found (index ``user_id``; ``decided_ms`` then the feature columns).
    """
    from gnn.asof import HourState, applicants, onboarding_feature_names, onboarding_rows, star_of
    from gnn.online_features import StarFeatures
    from pipelines.event_log import FactLog, GraphTimeline

    apps = applicants(log.clean)
    first = apps.drop_duplicates("user_id", keep="first")
    wanted = first[first["user_id"].isin(users)]
    if wanted.empty:
        return pd.DataFrame(index=pd.Index([], name="user_id"))
    wanted_ids = set(wanted["user_id"])
    hours = sorted({int(t) // HOUR_MS * HOUR_MS for t in wanted["time"]})
    timeline = GraphTimeline(FactLog.of(log.clean))
    parts = []
    for h in hours:
        timeline.advance(h)
        state = HourState.of(timeline)
        if labels is None:
            star = star_of(state, options)
        else:
            own = state.published
            names = onboarding_feature_names(list(own.columns), options)
            star = StarFeatures(own, labels, options, names)
        hour_apps = apps[(apps["time"] >= h) & (apps["time"] < h + HOUR_MS)].reset_index(drop=True)
        x = onboarding_rows(state, hour_apps, star)
        keep = (
            hour_apps["user_id"].isin(wanted_ids).to_numpy() & ~hour_apps["user_id"].duplicated().to_numpy()
        )
        frame = pd.DataFrame(x[keep].astype(np.float64), columns=star.names)
        frame.insert(0, "decided_ms", hour_apps["time"].to_numpy(np.int64)[keep])
        frame.index = pd.Index(hour_apps["user_id"].to_numpy(object)[keep], name="user_id")
        parts.append(frame)
    out = pd.concat(parts)
    return out[~out.index.duplicated(keep="first")]


def applicant_skew(
    served: pd.DataFrame,
    log: Any,
    options: Any,
    labels: pd.DataFrame | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> SkewReport:
    """Served applicant rows (one model version's frame from :func:`load_served_rows`) against
    their batch as-of onboarding rows.

    A user is compared only where the served row and the log's application are the same decision
    (same moment); a served user not (yet) in the log is counted in ``only_online``.
    """
    features = [c for c in served.columns if c not in ("at_ms", "row_hash")]
    batch = batch_onboarding_rows(log, served.index, options, labels)
    if len(batch):
        same = served["at_ms"].reindex(batch.index).to_numpy(np.float64) == batch["decided_ms"].to_numpy(
            np.float64
        )
        batch = batch[same]
    return compare_rows(served[features], batch.drop(columns=["decided_ms"], errors="ignore"), rtol, atol)


def online_columns(names: list[str], identifier_rels: list[str]) -> list[str]:
    """The columns a known user's online row defines as its batch row does: its own features and
    those of its identifier relations (``rev_<REL>_...``), not transfers or merchants."""
    # The rule of tests/test_online_features.py (star row == batch row of a real user).
    keep = []
    for n in names:
        head = n.split("_", 1)[0]
        if head not in ("rev", "TRANSFERRED") or any(n.startswith(f"rev_{rel}_") for rel in identifier_rels):
            keep.append(n)
    return keep


def applicant_shaped(published_features: pd.DataFrame, identifier_rels: list[str]) -> np.ndarray:
    """Users with at most one identifier of each kind (the shape the online path builds exactly)."""
    ok = np.ones(len(published_features), dtype=bool)
    for rel in identifier_rels:
        col = f"deg_{rel.lower()}"
        if col in published_features.columns:
            ok &= published_features[col].to_numpy() <= 1
    return ok


def known_user_skew(
    store: Any,
    model: Any,
    user_features: pd.DataFrame,
    published_inputs: pd.DataFrame,
    sample: int,
    now_ms: int,
    seed: int = 0,
) -> SkewReport | None:
    """Known users' rows built online from ``store`` against their published rows.

    Args:
        store: The graph store (``serving/user_links`` is read per user).
        model: The production :class:`gnn.training.RiskModel` (its applicant scorer's columns).
        user_features: Published own features (``user_features.parquet``, index ``id``).
        published_inputs: Published input rows (``user_inputs.parquet``: ``id``, ``model_version``, columns).
        sample: Users compared at most (a seeded sample of the applicant-shaped ones).
        now_ms: The moment the online rows are built at.

    Returns:
        None when the applicant scorer is not a tree model over such rows.
    """
    from gnn.online import APPLICANT_IDENTIFIERS, identifier_links
    from gnn.online_features import StarFeatures

    scorer = model.for_applicants.scorer
    options = getattr(scorer, "features", None)
    if getattr(scorer, "booster_", None) is None or options is None:
        return None
    names = list(scorer.feature_names)
    star = StarFeatures(user_features, model.train_labels, options, names)
    rels = [r.value for r in APPLICANT_IDENTIFIERS]
    inputs = published_inputs.set_index("id")
    ids = inputs.index.intersection(user_features.index)
    shaped = ids[applicant_shaped(user_features.loc[ids], rels)]
    rng = np.random.default_rng(seed)
    chosen = (
        shaped if len(shaped) <= sample else pd.Index(rng.choice(np.asarray(shaped), sample, replace=False))
    )
    rows = []
    for user in chosen:
        links = store.read("serving/user_links", id=user, rels=rels, limit=500)
        identifiers = identifier_links(star, links, now_ms)
        rows.append(star.row(star.features_of(user), identifiers, now_ms))
    online = pd.DataFrame(np.array(rows).reshape(len(rows), len(names)), columns=names, index=chosen)
    cols = [c for c in online_columns(names, rels) if c in inputs.columns]
    return compare_rows(online[cols], inputs.loc[chosen, cols].astype(np.float64), rtol=1e-4, atol=1e-4)


def serving_skew(
    settings: Any,
    model: Any,
    version: str,
    log: Any = None,
    store: Any = None,
    now_ms: int | None = None,
    served: dict[str, pd.DataFrame] | None = None,
) -> tuple[dict[str, SkewReport], list[str]]:
    """Both comparisons for the production model ``version``, as far as their inputs are given.

    Args:
        settings: ``audit_url`` (served rows), ``data_dir`` (published rows), ``skew_window_h``,
            ``skew_known_users``.
        model: The production model.
        version: Its version (served rows of other versions are not its rows).
        log: The event history; None: no applicant comparison.
        store: The graph store; None: no known-user comparison.
        now_ms: The run's moment.
        served: Served rows already read (tests); default :func:`load_served_rows`.

    Returns:
        ``{"applicant": ..., "known_user": ...}`` (those measured) and notes on what was not.
    """
    import time

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out: dict[str, SkewReport] = {}
    notes: list[str] = []
    options = getattr(model.for_applicants.scorer, "features", None)
    if log is None:
        # Nothing to compare served rows with: they are not even read (no audit database touched).
        notes.append("served applicant rows not compared: no event log given")
        mine = None
    else:
        if served is None:
            served = load_served_rows(settings.audit_db_url, now_ms - int(settings.skew_window_h * HOUR_MS))
        mine = served.get(version)
    if log is None:
        pass
    elif mine is None or mine.empty:
        notes.append(f"no applicant rows served by {version} in the last {settings.skew_window_h} h")
    elif options is None:
        notes.append("the applicant scorer has no feature options: applicant skew not measured")
    else:
        out[APPLICANT] = applicant_skew(mine, log, options, model.train_labels)
    if store is not None and settings.skew_known_users > 0:
        scores = Path(settings.data_dir) / "scores"
        feats, inputs = scores / "user_features.parquet", scores / "user_inputs.parquet"
        if feats.exists() and inputs.exists():
            from graphrisk.errors import StoreError

            try:
                report = known_user_skew(store, model, pd.read_parquet(feats).set_index("id"),
                                         pd.read_parquet(inputs), settings.skew_known_users, now_ms)  # fmt: skip
            except StoreError as exc:
                # A store that is down costs this comparison only, not the applicants' one.
                notes.append(f"known-user skew not measured: the graph store failed: {exc}"[:300])
                report = None
            if report is not None:
                out[KNOWN_USER] = report
        else:
            notes.append("no published rows: known-user skew not measured")
    return out, notes
