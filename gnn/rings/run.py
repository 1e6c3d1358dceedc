"""``find_rings``: snapshot → candidate clusters → collusion scores → stable ids → the graph store.

One entry point for the CLI (``graphrisk rings``) and the refresh. With ``labels`` the ring
model is (re)trained on this run's clusters and saved to ``<registry_dir>/model.pkl``; without,
the last saved model scores the clusters. Given also the clusters of past moments
(:mod:`gnn.rings.moments`), the ring model learns from rings as the refreshes saw them young.

Only clusters scoring at least ``settings.ring_min_score`` (``GRAPHRISK_RING_MIN_SCORE``,
default 0.1) become rings: the registry, stable ids and ``Ring`` nodes cover those alone. Most
candidates are households and friend groups scoring near 0; writing them all made ~134k
``Ring`` nodes at 1M users. A ring whose cluster falls below the bar is closed like a ring
that disappeared. Quality figures are computed over every candidate.

The ring model's method (:func:`gnn.rings.model.fit_ring_model`) is ``ring_method`` or, when
not given, ``settings.ring_method`` (``GRAPHRISK_RING_METHOD``: ``trees``, the default;
``combined``: the ring subgraph GNN's logit as a tree column; ``auto``: both are fitted and the
higher out-of-fold AUPRC is kept). A saved combined model carries its
GNN, and scoring builds the clusters' subgraphs for it; a trees model does not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gnn.monitor.rings import REFERENCE_FILE, RingReference, check_ring_inputs, fit_ring_reference
from gnn.rings.candidates import Candidates, ClusterConfig, find_candidates
from gnn.rings.evaluate import evaluate_rings
from gnn.rings.features import cluster_features
from gnn.rings.identity import CLOSED_STATUSES, RING_COLUMNS, RingRegistry, assign_ids, parents_of
from gnn.rings.model import RingModel, cluster_labels, fit_ring_model, ring_inputs
from gnn.rings.moments import ClusterSample, training_rows
from graphrisk.config import Settings
from graphrisk.graph_schema import NodeLabel, RelType
from graphrisk.store import GraphStore
from pipelines.snapshot import load_snapshot

MODEL_FILE = "model.pkl"
log = logging.getLogger(__name__)


@dataclass
class RingReport:
    """What a ring run did."""

    model_version: str
    trained: bool
    users: int
    clusters: int
    clusters_by_view: dict[str, int]
    flagged: int
    threshold: float
    kept: int
    min_score: float
    statuses: dict[str, int]
    hub_cutoffs: dict[str, dict[str, int]]
    registry_dir: str
    model_metrics: dict[str, float] = field(default_factory=dict)
    in_sample_quality: dict[str, Any] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    # gnn.monitor.rings: whether the clusters' features lie in the ring model's training range;
    # when refused, no ring was kept or written.
    input_check: dict[str, Any] = field(default_factory=dict)
    # The ring model's method (``trees`` or ``combined``; under ``auto``, the one validation kept).
    model_method: str = ""
    # When trained: the moments its clusters came from (1 + past moments) and its rows.
    training_moments: int = 0
    training_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the JSON report."""
        return asdict(self)


def _now_ms() -> int:
    return int(time.time() * 1000)


def find_rings(
    settings: Settings,
    store: GraphStore | None,
    scores_path: Path | None = None,
    labels: pd.DataFrame | None = None,
    registry_dir: Path | None = None,
    *,
    config: ClusterConfig | None = None,
    tables: tuple[dict[NodeLabel, pd.DataFrame], dict[RelType, pd.DataFrame]] | None = None,
    now_ms: int | None = None,
    ring_method: str | None = None,
    past: list[ClusterSample] | None = None,
) -> RingReport:
    """Find, score and persist fraud rings of the current snapshot.

    Args:
        settings: Where the snapshot is (``settings.snapshot_dir``) and the data dir.
        store: Graph store to write ``Ring`` nodes and ``MEMBER_OF`` edges to (None: files only).
        scores_path: User scores (``id, score``); default ``<data_dir>/scores/user_scores.parquet``
            when it exists, else member-risk features are missing (NaN).
        labels: ``user_id, is_fraud, ring_id`` to train the ring model on this run's clusters;
            None loads ``<registry_dir>/model.pkl``.
        registry_dir: Ring registry and model folder (default ``<data_dir>/rings``).
        config: Candidate-cluster settings.
        tables: Snapshot tables to use instead of reading ``settings.snapshot_dir``.
        now_ms: This run's time (default: now), recorded as first/last seen.
        ring_method: How a ring model is trained (``trees``, ``combined``, ``auto``); default
            ``settings.ring_method``.
        past: Clusters of earlier moments (:func:`gnn.rings.moments.past_samples`); with
            ``labels``, the ring model trains on them too (``trees`` only), as the backtest does.

    Raises:
        FileNotFoundError: no labels and no saved ring model.
    """
    t0 = time.perf_counter()
    now = now_ms if now_ms is not None else _now_ms()
    reg_dir = Path(registry_dir) if registry_dir is not None else settings.data_dir / "rings"
    nodes, edges = tables if tables is not None else load_snapshot(settings.snapshot_dir)
    cand = find_candidates(nodes, edges, config)
    t1 = time.perf_counter()
    sp = scores_path if scores_path is not None else settings.data_dir / "scores" / "user_scores.parquet"
    scores = pd.read_parquet(sp, columns=["id", "score"]) if Path(sp).exists() else None
    feats = cluster_features(cand, nodes, edges, scores)
    t2 = time.perf_counter()

    model_path = reg_dir / MODEL_FILE
    moments = rows = 0
    if labels is not None:
        version = time.strftime("rings-%Y%m%d%H%M%S", time.gmtime(now / 1000))
        method = ring_method or settings.ring_method
        graphs = None
        if method != "trees":
            from gnn.rings.subgraph_gnn import build_ring_graphs

            graphs = build_ring_graphs(cand, nodes, edges, scores)
        if past:
            x, y, groups = training_rows(
                ClusterSample.of(now, cand, feats), past, labels, settings.ring_negative_share
            )
            model = fit_ring_model(x, y, graphs, method=method, version=version, groups=groups)
            reference = x
            moments, rows = 1 + len(past), len(x)
        else:
            model = fit_ring_model(
                feats, cluster_labels(cand, labels), graphs, method=method, version=version
            )
            moments, rows = 1, len(feats)
        feats = ring_inputs(model, feats, cand, nodes, edges, scores, graphs)
        if not past:
            reference = feats
        model.save(model_path)
        # The range the model was trained on: with past moments, young clusters are in it.
        fit_ring_reference(reference[model.feature_names], version).save(reg_dir / REFERENCE_FILE)
    elif model_path.exists():
        model = RingModel.load(model_path)
        feats = ring_inputs(model, feats, cand, nodes, edges, scores)
    else:
        raise FileNotFoundError(f"no ring model at {model_path}; run once with labels to train one")
    ring_scores = model.predict(feats)
    t3 = time.perf_counter()

    keep = ring_scores >= settings.ring_min_score
    check = None
    if labels is None and (reg_dir / REFERENCE_FILE).exists():
        check = check_ring_inputs(RingReference.load(reg_dir / REFERENCE_FILE), feats[model.feature_names],
                                  settings.ring_input_outside_max)  # fmt: skip
        if check.refuse:
            # A graph unlike the training one: the scores are extrapolations, so no ring is
            # stored and the registry stays as it was (rings the last accepted run kept live on).
            log.warning("ring model refused: %s", check.reason)
            keep = np.zeros(len(ring_scores), dtype=bool)
    kept = _subset(cand, keep)
    registry = RingRegistry(reg_dir)
    prev_rings, prev_members = registry.load()
    rings, members, closed, left = _next_registry(
        kept, ring_scores[keep], model.version, prev_rings, prev_members, now
    )
    refused = check is not None and check.refuse
    if not refused:
        registry.save(rings, members)
    t4 = time.perf_counter()
    written = write_rings(store, rings, members, closed, left) if store is not None and not refused else {}
    t5 = time.perf_counter()

    quality: dict[str, Any] = {}
    if labels is not None and "ring_id" in labels and "typology" in labels:
        quality = evaluate_rings(cand, ring_scores, labels, model.threshold, feats["score_mean"].to_numpy())
    return RingReport(
        model_version=model.version,
        trained=labels is not None,
        users=len(cand.user_ids),
        clusters=cand.num_clusters,
        clusters_by_view={str(k): int(v) for k, v in pd.Series(cand.views).value_counts().items()},
        flagged=int((ring_scores >= model.threshold).sum()),
        threshold=model.threshold,
        kept=kept.num_clusters,
        min_score=settings.ring_min_score,
        statuses={str(k): int(v) for k, v in rings["status"].value_counts().items()},
        hub_cutoffs=cand.cutoffs,
        registry_dir=str(reg_dir),
        model_metrics=model.metrics,
        in_sample_quality=quality,
        written=written,
        timings_s={
            "clusters": round(t1 - t0, 2),
            "features": round(t2 - t1, 2),
            "score": round(t3 - t2, 2),
            "ids": round(t4 - t3, 2),
            "write": round(t5 - t4, 2),
        },
        input_check=check.to_dict() if check is not None else {},
        model_method=model.method,
        training_moments=moments,
        training_rows=rows,
    )


def _subset(cand: Candidates, keep: np.ndarray) -> Candidates:
    """The candidates with only the clusters where ``keep`` is true (same graph and cut-offs)."""
    idx = np.flatnonzero(keep)
    return replace(cand, members=[cand.members[i] for i in idx], views=[cand.views[i] for i in idx])


def _next_registry(
    cand: Candidates,
    scores: np.ndarray,
    version: str,
    prev_rings: pd.DataFrame,
    prev_members: pd.DataFrame,
    now: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The registry after this run: all rings, live members, rings closed now, members who left."""
    mt = cand.member_table()[["cluster", "user_id"]]
    ids, updated = assign_ids(mt, prev_rings, prev_members, now)
    parents = parents_of(mt, prev_members, ids)
    prev_first = prev_rings.set_index("ring_id")["first_seen"] if len(prev_rings) else pd.Series(dtype=object)
    ring_id = [ids[c] for c in range(cand.num_clusters)]
    inherited = pd.Index(ring_id).isin(prev_first.index)
    live = pd.DataFrame(
        {
            "ring_id": ring_id,
            "status": np.where(inherited, "active", "new"),
            "score": scores.astype(np.float64),
            "size": [len(m) for m in cand.members],
            "first_seen": np.where(inherited, pd.Index(ring_id).map(prev_first.to_dict()).to_numpy(), now),
            "last_seen": now,
            "model_version": version,
            "view": cand.views,
            "parents": [parents.get(r) for r in ring_id],
            "successors": None,
        }
    )
    closed = updated[updated["status"].isin(CLOSED_STATUSES)] if len(updated) else updated
    history = prev_rings[prev_rings["status"].isin(CLOSED_STATUSES)] if len(prev_rings) else prev_rings
    frames = [
        df
        for df in (live, closed[RING_COLUMNS] if len(closed) else None, history)
        if df is not None and len(df)
    ]
    rings = pd.concat(frames, ignore_index=True)[RING_COLUMNS] if frames else live
    rings["first_seen"] = rings["first_seen"].astype(np.int64)
    rings["last_seen"] = rings["last_seen"].astype(np.int64)
    # Typed as text even when empty (no cluster above the minimum score), so merges still line up.
    members = pd.DataFrame(
        {
            "ring_id": pd.Series(mt["cluster"].map(ids).to_numpy(), dtype=object),
            "user_id": pd.Series(mt["user_id"].to_numpy(), dtype=object),
        }
    )
    # Members who left a ring that lives on: their MEMBER_OF edge goes.
    kept = prev_members[prev_members["ring_id"].isin(set(ring_id))]
    left = kept.merge(members, on=["ring_id", "user_id"], how="left", indicator=True)
    left = left[left["_merge"] == "left_only"][["ring_id", "user_id"]]
    return rings, members, closed, left


def write_rings(
    store: GraphStore, rings: pd.DataFrame, members: pd.DataFrame, closed: pd.DataFrame, left: pd.DataFrame
) -> dict[str, int]:
    """Write live rings and their members, close disappeared rings; returns rows applied per statement."""
    store.ensure_schema()  # includes rings/constraint_ring_id
    live = rings[~rings["status"].isin(CLOSED_STATUSES)]
    rows = [
        {"id": r.ring_id, "score": float(r.score), "size": int(r.size), "model_version": str(r.model_version),
         "first_seen": int(r.first_seen), "last_seen": int(r.last_seen), "status": str(r.status),
         "view": str(r.view), "parents": r.parents}
        for r in live.itertuples()
    ]  # fmt: skip
    out = {"rings": store.write_rows("rings/upsert_rings", rows)}
    out["members_removed"] = store.write_rows("rings/remove_members", left.to_dict("records"))
    out["members"] = store.write_rows("rings/set_members", members.to_dict("records"))
    close_rows = [
        {"id": r.ring_id, "status": str(r.status), "last_seen": int(r.last_seen), "successors": r.successors}
        for r in closed.itertuples()
    ]
    out["closed"] = store.write_rows("rings/close_rings", close_rows)
    return out
