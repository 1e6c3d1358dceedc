"""What the API holds in memory: store client, model, published scores, audit log, limits.

Scores are published by ``graphrisk score`` as Parquet and read here into a dict, so a known
user's score is a lookup that does not touch the store: it keeps working (marked stale) when
the store is down.

What a publication changes (scores, rings, the production model and what serves it) is one
immutable :class:`Snapshot`. A refresh, a train or a rollback publishes new files; the API
notices (:meth:`AppState.reload_if_changed`, polled by ``api.main`` and run by ``POST
/v1/admin/reload``), builds a whole new snapshot off the event loop and swaps the one
reference. A request reads ``state.snapshot`` once and works on that object to the end, so a
request in flight during a swap finishes on the old state and never sees half of each.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import HTTPException, status

from api.applications import RecentApplications
from api.audit import AuditLog
from api.auth import KeyRing
from api.decisions import DecisionStore
from api.ratelimit import RateLimiter
from api.schemas import RingSummary
from api.served_rows import ServedRows
from api.store_calls import StoreCalls
from gnn.online import ApplicantScorer
from gnn.registry import ModelMeta, ModelRegistry, RegistryError
from gnn.scoring import INPUTS_FILE
from gnn.training import RiskModel
from graphrisk.clean_event import RepeatedIdentifiers
from graphrisk.config import Settings
from graphrisk.pseudonymise import Pseudonymiser
from graphrisk.store import GraphStore

log = logging.getLogger("graphrisk.api")
RING_COLUMNS = ["ring_id", "score", "size", "status", "model_version", "first_seen", "last_seen"]


@dataclass(frozen=True)
class CachedScore:
    """A user's last computed score."""

    score: float
    band: str
    model_version: str


@dataclass(frozen=True)
class Snapshot:
    """One publication as served: scores, rings, the production model and what it explains.

    Never mutated once built (its dicts and arrays included): a reload builds a new one.
    """

    scores: dict[str, CachedScore] = field(default_factory=dict)
    # Identifies the published scores served ("<model version>@<hash of the files' stamps>").
    scores_snapshot: str | None = None
    rings_snapshot: str | None = None
    loaded_at: float = 0.0
    model_meta: ModelMeta | None = None
    applicant_scorer: ApplicantScorer | None = None
    known_fraud: frozenset[str] = frozenset()
    ring_of: dict[str, str] = field(default_factory=dict)
    ring_members: dict[str, list[str]] = field(default_factory=dict)
    # The live ring table as response models, by score descending (ties by id): a page is a
    # slice, built once per publication. ``ring_scores`` is the same order's scores, negated so
    # that a min_score filter is one ascending binary search; ``ring_index`` finds one by id.
    ring_summaries: list[RingSummary] = field(default_factory=list)
    ring_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ring_index: dict[str, RingSummary] = field(default_factory=dict)
    # Typology guess per ring, where the ring table has one (kept with ring decisions).
    ring_typology: dict[str, str] = field(default_factory=dict)
    # Input rows the batch scored for users in the review and block bands, for exact
    # explanations (gnn.scoring.INPUTS_FILE): row per user id, and the model they came from.
    input_row: dict[str, int] = field(default_factory=dict)
    inputs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    inputs_version: str | None = None
    # The published files' stamps this snapshot was built from (see published_stamps).
    stamps: tuple[tuple[str, int, int], ...] = ()

    def published_inputs(self, user_id: str) -> np.ndarray | None:
        """The row the batch scored ``user_id`` from, when it was kept and the production model
        is the one that scored it; else ``None``."""
        i = self.input_row.get(user_id)
        if i is None or self.model_meta is None or self.inputs_version != self.model_meta.version:
            return None
        return self.inputs[i]

    def ring_by_id(self, ring_id: str) -> RingSummary:
        """One live ring.

        Raises:
            HTTPException: 404 when unknown.
        """
        hit = self.ring_index.get(ring_id)
        if hit is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no live ring with this id")
        return hit

    def rings_above(self, min_score: float) -> list[RingSummary]:
        """Live rings scoring at least ``min_score``, highest first (a prefix of the table)."""
        return self.ring_summaries[: int(np.searchsorted(self.ring_scores, -min_score, side="right"))]

    def members_of(self, ring_id: str) -> list[str]:
        """Members of a ring at the last publication."""
        return self.ring_members.get(ring_id, [])

    def describe(self) -> dict[str, Any]:
        """What is served, for /readyz."""
        return {
            "model_version": self.model_meta.version if self.model_meta else None,
            "scores_snapshot": self.scores_snapshot,
            "rings_snapshot": self.rings_snapshot,
            "loaded_at": round(self.loaded_at, 3),
            "scores": len(self.scores),
            "online_scoring": self.applicant_scorer is not None,
        }


def published_files(settings: Settings) -> list[Path]:
    """The files a snapshot is built from: what ``graphrisk score``, ``rings``, ``train``,
    ``models promote`` and ``models rollback`` publish (each replaced by a rename)."""
    scores_dir, rings_dir = settings.data_dir / "scores", settings.data_dir / "rings"
    return [
        scores_dir / "user_scores.parquet", scores_dir / "user_features.parquet", scores_dir / INPUTS_FILE,
        rings_dir / "rings.parquet", rings_dir / "members.parquet",
        settings.data_dir / "models" / "registry.json",
    ]  # fmt: skip


def published_stamps(settings: Settings) -> tuple[tuple[str, int, int], ...]:
    """``(name, mtime_ns, size)`` of each published file (``-1, -1`` when absent): a change of
    any means a new publication. A stat each, cheap enough to poll every few seconds."""
    out = []
    for path in published_files(settings):
        try:
            st = path.stat()
            out.append((path.name, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append((path.name, -1, -1))
    return tuple(out)


def _stamp_id(stamps: tuple[tuple[str, int, int], ...], names: tuple[str, ...]) -> str | None:
    chosen = [s for s in stamps if s[0] in names]
    if all(s[1] < 0 for s in chosen):
        return None
    return hashlib.sha256(repr(chosen).encode()).hexdigest()[:12]


def build_snapshot(settings: Settings) -> Snapshot:
    """Read the published scores, rings and production model into a new :class:`Snapshot`.

    Raises:
        OSError, ValueError, pyarrow.ArrowException: a published file could not be read
            (the caller keeps serving its current snapshot).
    """
    stamps = published_stamps(settings)
    scores_dir = settings.data_dir / "scores"
    fields: dict[str, Any] = {"stamps": stamps, "loaded_at": time.time()}
    path = scores_dir / "user_scores.parquet"
    if path.exists():
        table = pd.read_parquet(path)
        fields["scores"] = {
            i: CachedScore(float(s), str(b), str(v))
            for i, s, b, v in zip(table["id"], table["score"], table["band"], table["model_version"], strict=True)
        }  # fmt: skip
        version = str(table["model_version"].iloc[0]) if len(table) else "none"
        stamp = _stamp_id(stamps, ("user_scores.parquet", "user_features.parquet", INPUTS_FILE))
        fields["scores_snapshot"] = f"{version}@{stamp}"
    rings_dir = settings.data_dir / "rings"
    if (rings_dir / "rings.parquet").exists() and (rings_dir / "members.parquet").exists():
        fields.update(_rings(rings_dir))
        fields["rings_snapshot"] = _stamp_id(stamps, ("rings.parquet", "members.parquet"))
    try:
        model, meta = ModelRegistry(settings.data_dir / "models").load()
    except RegistryError as exc:
        log.warning("no production model: %s", exc)
        return Snapshot(**fields)
    fields["model_meta"] = meta
    fields["known_fraud"] = model.known_fraud
    feats_path = scores_dir / "user_features.parquet"
    if feats_path.exists():
        feats = pd.read_parquet(feats_path).set_index("id")
        ids = RepeatedIdentifiers(Pseudonymiser(settings.pseudonymisation_key.get_secret_value().encode()))
        fields["applicant_scorer"] = ApplicantScorer(
            model.for_applicants, feats, ids, settings.fx_rates, settings.default_phone_region,
            min_contribution=settings.explain_min_contribution, min_score=settings.explain_min_score,
        )  # fmt: skip
    fields.update(_inputs(scores_dir / INPUTS_FILE, model))
    return Snapshot(**fields)


def _rings(rings_dir: Path) -> dict[str, Any]:
    rings = pd.read_parquet(rings_dir / "rings.parquet")
    typology_column = next((c for c in ("typology_guess", "typology") if c in rings.columns), None)
    rings = rings[rings["status"] != "closed"]
    typology = (
        {str(r): str(t) for r, t in zip(rings["ring_id"], rings[typology_column], strict=True) if pd.notna(t)}
        if typology_column
        else {}
    )
    rings = rings[RING_COLUMNS].sort_values(["score", "ring_id"], ascending=[False, True])
    summaries = [
        RingSummary(id=r.ring_id, score=float(r.score), size=int(r.size), status=str(r.status),
                    model_version=str(r.model_version), first_seen=int(r.first_seen), last_seen=int(r.last_seen))
        for r in rings.itertuples()
    ]  # fmt: skip
    index = {r.id: r for r in summaries}
    m = pd.read_parquet(rings_dir / "members.parquet", columns=["ring_id", "user_id"])
    m = m[m["ring_id"].isin(index.keys())]
    return {
        "ring_summaries": summaries,
        "ring_scores": -rings["score"].to_numpy(np.float64),
        "ring_index": index,
        "ring_typology": typology,
        "ring_of": dict(zip(m["user_id"], m["ring_id"], strict=True)),
        "ring_members": {k: list(v) for k, v in m.groupby("ring_id")["user_id"]},
    }


def _inputs(path: Path, model: RiskModel) -> dict[str, Any]:
    """Published input rows, if they match the production model's columns."""
    if not path.exists() or not model.explains_inputs:
        return {}
    table = pd.read_parquet(path)
    names = list(model.scorer.feature_names)
    if table.empty or list(table.columns[2:]) != names:
        log.warning("%s does not match the production model's columns; explanations re-score", path)
        return {}
    return {
        "inputs": table[names].to_numpy(np.float32),
        "input_row": {u: i for i, u in enumerate(table["id"])},
        "inputs_version": str(table["model_version"].iloc[0]),
    }


@dataclass
class AppState:
    """Everything a request handler may need.

    The published data is :attr:`snapshot`; a handler that reads more than one thing from it
    takes ``snap = state.snapshot`` once. The properties below read the current snapshot, for
    code that needs one value.
    """

    settings: Settings
    store: GraphStore
    audit: AuditLog
    keys: KeyRing
    limiter: RateLimiter
    snapshot: Snapshot = field(default_factory=Snapshot)
    decisions: DecisionStore | None = None
    # Applications scored since the last refresh: the store has not ingested them yet.
    applications: RecentApplications | None = None
    # The model-input rows served to new applicants, kept for the training-serving skew check
    # (None: setting served_rows_log off). Opened with the app and closed at its shutdown.
    served_rows: ServedRows | None = None
    # New applicants are scored here, not on the shared thread pool (see Settings.scoring_threads).
    scoring_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="scoring")
    )
    store_ok_at: float = 0.0
    # Every store call of a request goes through here: a pool of its own, bounded by a timeout.
    store_calls: StoreCalls = field(default_factory=lambda: StoreCalls(5.0, 8))
    # One reload at a time (the poller and the admin route may race); readers never take it.
    _reload_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    reload_error: str | None = None
    _pending: tuple[tuple[str, int, int], ...] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, settings: Settings) -> AppState:
        """Open the store and the audit log, load the production model and published scores."""
        state = cls(
            settings=settings,
            store=GraphStore(settings, query_timeout_s=settings.store_timeout_s),
            store_calls=StoreCalls(settings.store_timeout_s, settings.store_threads),
            audit=AuditLog.from_settings(settings),
            keys=KeyRing(dict(settings.api_keys)),
            limiter=RateLimiter(settings.rate_limit_per_minute),
            decisions=DecisionStore(settings.decision_store_url),
            applications=RecentApplications(
                settings.audit_db_url, int(settings.recent_applications_h * 3_600_000)
            ),
            served_rows=ServedRows(settings.audit_db_url) if settings.served_rows_log else None,
            scoring_pool=ThreadPoolExecutor(settings.scoring_threads, thread_name_prefix="scoring"),
        )
        state.reload()
        return state

    def reload(self) -> Snapshot:
        """Build a snapshot of what is published now and swap it in (one reference assignment:
        requests holding the old one finish on it). Returns the snapshot now served.

        Raises:
            OSError, ValueError: a published file could not be read; the current snapshot stays.
        """
        with self._reload_lock:
            fresh = build_snapshot(self.settings)
            self.snapshot = fresh
            self.reload_error = None
            log.info("serving model %s, scores %s", fresh.describe()["model_version"], fresh.scores_snapshot)
            return fresh

    def reload_if_changed(self, settle: bool = False) -> bool:
        """:meth:`reload` when a published file changed since the snapshot was built.

        With ``settle``, only once the files are unchanged since the previous call (the poller's
        mode). A file caught mid-publication (unreadable) leaves the current snapshot served and
        is retried at the next call. Returns whether a new snapshot was swapped in.
        """
        stamps = published_stamps(self.settings)
        if stamps == self.snapshot.stamps:
            self._pending = None
            return False
        if settle and stamps != self._pending:
            # Scoring publishes three files one after another, ring finding two more: wait
            # until a whole check interval passes with no change, so that a snapshot is not
            # built from a publication caught halfway.
            self._pending = stamps
            return False
        try:
            self.reload()
        except (OSError, ValueError, KeyError, RegistryError) as exc:
            # pyarrow's errors are OSError/ValueError subclasses; keep serving what we have.
            self.reload_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("reload failed, still serving the previous snapshot: %s", self.reload_error)
            return False
        return True

    # Read-through to the current snapshot (one value each; see the class docstring).
    @property
    def scores(self) -> dict[str, CachedScore]:
        """Published scores by user id."""
        return self.snapshot.scores

    @property
    def scores_loaded_at(self) -> float:
        """When the served snapshot was built (epoch seconds)."""
        return self.snapshot.loaded_at

    @property
    def model_meta(self) -> ModelMeta | None:
        """The production model's metadata."""
        return self.snapshot.model_meta

    @property
    def applicant_scorer(self) -> ApplicantScorer | None:
        """The online scorer of the production model."""
        return self.snapshot.applicant_scorer

    @property
    def known_fraud(self) -> frozenset[str]:
        """Users labelled fraud in the production model's training."""
        return self.snapshot.known_fraud

    @property
    def ring_of(self) -> dict[str, str]:
        """Live ring of each member."""
        return self.snapshot.ring_of

    @property
    def ring_members(self) -> dict[str, list[str]]:
        """Members of each live ring."""
        return self.snapshot.ring_members

    @property
    def ring_summaries(self) -> list[RingSummary]:
        """Live rings, highest score first."""
        return self.snapshot.ring_summaries

    @property
    def ring_index(self) -> dict[str, RingSummary]:
        """Live rings by id."""
        return self.snapshot.ring_index

    @property
    def input_row(self) -> dict[str, int]:
        """Row of each explainable user in the published inputs."""
        return self.snapshot.input_row

    @property
    def inputs(self) -> np.ndarray:
        """Published input rows of the explainable users."""
        return self.snapshot.inputs

    @property
    def inputs_version(self) -> str | None:
        """The model version the published input rows came from."""
        return self.snapshot.inputs_version

    @property
    def ring_scores(self) -> np.ndarray:
        """Live rings' scores, negated, in ``ring_summaries`` order."""
        return self.snapshot.ring_scores

    def published_inputs(self, user_id: str) -> np.ndarray | None:
        """:meth:`Snapshot.published_inputs` of the current snapshot."""
        return self.snapshot.published_inputs(user_id)

    def ring_by_id(self, ring_id: str) -> RingSummary:
        """:meth:`Snapshot.ring_by_id` of the current snapshot.

        Raises:
            HTTPException: 404 when unknown.
        """
        return self.snapshot.ring_by_id(ring_id)

    def rings_above(self, min_score: float) -> list[RingSummary]:
        """:meth:`Snapshot.rings_above` of the current snapshot."""
        return self.snapshot.rings_above(min_score)

    def members_of(self, ring_id: str) -> list[str]:
        """:meth:`Snapshot.members_of` of the current snapshot."""
        return self.snapshot.members_of(ring_id)

    def confirmed_fraud(self, snap: Snapshot | None = None) -> frozenset[str]:
        """Users confirmed as fraud: labelled fraud in training or decided so by an
        investigator, less those an investigator decided were false positives."""
        base = (snap or self.snapshot).known_fraud
        if self.decisions is None:
            return base
        fraud, cleared = self.decisions.confirmed()
        return (base | fraud) - cleared

    def close(self) -> None:
        """Release connections and the scoring threads."""
        self.scoring_pool.shutdown(wait=True)
        self.store_calls.close()
        self.store.close()
        self.audit.close()
        if self.decisions is not None:
            self.decisions.close()
        if self.applications is not None:
            self.applications.close()
        if self.served_rows is not None:
            self.served_rows.close()

    def describe(self) -> dict[str, Any]:
        """For /readyz: what is served (model version, scores snapshot) and reload health."""
        out = self.snapshot.describe()
        if self.reload_error:
            out["reload_error"] = self.reload_error
        return out


def scores_path(data_dir: Path) -> Path:
    """Where ``graphrisk score`` publishes scores."""
    return data_dir / "scores" / "user_scores.parquet"
