"""What the API holds in memory: store client, model, published scores, audit log, limits.

Loaded once in the app's lifespan. Scores are published by ``graphrisk score`` as Parquet and
read here into a dict, so a known user's score is a lookup that does not touch the store: it
keeps working (marked stale) when the store is down.
"""

from __future__ import annotations

import logging
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


@dataclass
class AppState:
    """Everything a request handler may need."""

    settings: Settings
    store: GraphStore
    audit: AuditLog
    keys: KeyRing
    limiter: RateLimiter
    scores: dict[str, CachedScore] = field(default_factory=dict)
    scores_loaded_at: float = 0.0
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
    # Input rows the batch scored for users in the review and block bands, for exact
    # explanations (gnn.scoring.INPUTS_FILE): row per user id, and the model they came from.
    input_row: dict[str, int] = field(default_factory=dict)
    inputs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    inputs_version: str | None = None
    decisions: DecisionStore | None = None
    # Applications scored since the last refresh: the store has not ingested them yet.
    applications: RecentApplications | None = None
    # New applicants are scored here, not on the shared thread pool (see Settings.scoring_threads).
    scoring_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="scoring")
    )
    store_ok_at: float = 0.0
    # Every store call of a request goes through here: a pool of its own, bounded by a timeout.
    store_calls: StoreCalls = field(default_factory=lambda: StoreCalls(5.0, 8))

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
            decisions=DecisionStore(settings.audit_url),
            applications=RecentApplications(
                settings.audit_url, int(settings.recent_applications_h * 3_600_000)
            ),
            scoring_pool=ThreadPoolExecutor(settings.scoring_threads, thread_name_prefix="scoring"),
        )
        state.reload()
        return state

    def reload(self) -> None:
        """(Re)load the production model and the published scores, if there are any."""
        scores_dir = self.settings.data_dir / "scores"
        path = scores_dir / "user_scores.parquet"
        if path.exists():
            table = pd.read_parquet(path)
            self.scores = {
                i: CachedScore(float(s), str(b), str(v))
                for i, s, b, v in zip(
                    table["id"], table["score"], table["band"], table["model_version"], strict=True
                )
            }
            self.scores_loaded_at = time.time()
        rings_dir = self.settings.data_dir / "rings"
        if (rings_dir / "rings.parquet").exists() and (rings_dir / "members.parquet").exists():
            rings = pd.read_parquet(rings_dir / "rings.parquet")
            rings = rings[rings["status"] != "closed"][RING_COLUMNS]
            rings = rings.sort_values(["score", "ring_id"], ascending=[False, True])
            self.ring_summaries = [
                RingSummary(id=r.ring_id, score=float(r.score), size=int(r.size), status=str(r.status),
                            model_version=str(r.model_version), first_seen=int(r.first_seen),
                            last_seen=int(r.last_seen))
                for r in rings.itertuples()
            ]  # fmt: skip
            self.ring_scores = -rings["score"].to_numpy(np.float64)
            self.ring_index = {r.id: r for r in self.ring_summaries}
            m = pd.read_parquet(rings_dir / "members.parquet", columns=["ring_id", "user_id"])
            m = m[m["ring_id"].isin(self.ring_index.keys())]
            self.ring_of = dict(zip(m["user_id"], m["ring_id"], strict=True))
            self.ring_members = {k: list(v) for k, v in m.groupby("ring_id")["user_id"]}
        try:
            model, meta = ModelRegistry(self.settings.data_dir / "models").load()
        except RegistryError as exc:
            log.warning("no production model: %s", exc)
            return
        self.model_meta = meta
        self.known_fraud = model.known_fraud
        feats_path = scores_dir / "user_features.parquet"
        if feats_path.exists():
            feats = pd.read_parquet(feats_path).set_index("id")
            ids = RepeatedIdentifiers(
                Pseudonymiser(self.settings.pseudonymisation_key.get_secret_value().encode())
            )
            self.applicant_scorer = ApplicantScorer(
                model.for_applicants, feats, ids, self.settings.fx_rates, self.settings.default_phone_region
            )
        self._load_inputs(scores_dir / INPUTS_FILE, model)

    def _load_inputs(self, path: Path, model: RiskModel) -> None:
        """Published input rows, if they match the production model's columns."""
        self.input_row, self.inputs, self.inputs_version = {}, np.zeros((0, 0), dtype=np.float32), None
        if not path.exists() or not model.explains_inputs:
            return
        table = pd.read_parquet(path)
        names = list(model.scorer.feature_names)
        if table.empty or list(table.columns[2:]) != names:
            log.warning("%s does not match the production model's columns; explanations re-score", path)
            return
        self.inputs = table[names].to_numpy(np.float32)
        self.input_row = {u: i for i, u in enumerate(table["id"])}
        self.inputs_version = str(table["model_version"].iloc[0])

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

    def describe(self) -> dict[str, Any]:
        """For /readyz."""
        return {
            "model_version": self.model_meta.version if self.model_meta else None,
            "scores": len(self.scores),
            "online_scoring": self.applicant_scorer is not None,
        }


def scores_path(data_dir: Path) -> Path:
    """Where ``graphrisk score`` publishes scores."""
    return data_dir / "scores" / "user_scores.parquet"
