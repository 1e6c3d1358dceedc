"""Ring-model training rows from the moments the refreshes see: the clusters of past hours.

A refresh lists rings on the graph as of its hour, so a ring is first scored young: a device farm
two hours after its third member applied is a 5-member cluster with no history. A ring model
trained only on the graph at its cut-off has seen every ring it knows grown. On the seed-9090
world (60k users) it scored such a pure 5-member farm cluster 0.003. Trained also on the clusters
of the 28 past moments 6 hours apart, it scored that cluster 0.51 and, an hour later, 0.59 (7
members), listing it. So the ring model trains on clusters sampled every few hours of the history
as well as on the cut-off's. Each cluster is labelled with the labels known at the cut-off.
:func:`gnn.backtest.run_backtest` keeps the moments as it replays; ``graphrisk rings --labels
--events`` replays the event history for them (:func:`past_samples`).

Rows of one ring (or of one honest cluster, named by its first member) at several moments are
one group: out-of-fold scores, and so the calibration, never come from trees that saw the same
ring an hour apart. An honest cluster barely changes from one moment to the next, so each past
moment keeps only a stable share of them (drawn by group, whatever the label).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gnn.rings.candidates import Candidates, ClusterConfig, find_candidates
from gnn.rings.features import cluster_features
from gnn.rings.model import colluding, match_members, require_past_moments_method
from graphrisk.config import Settings
from pipelines.event_log import FactLog, GraphTimeline, read_event_log

HOUR_MS = 3_600_000


@dataclass
class ClusterSample:
    """The candidate clusters of one moment: who is in each, and the features it was scored on."""

    hour: int
    members: pd.DataFrame  # cluster, user_id
    features: pd.DataFrame  # indexed by cluster number

    @staticmethod
    def of(hour: int, cand: Candidates, features: pd.DataFrame) -> ClusterSample:
        """The sample of ``cand`` (its user graph is not kept)."""
        return ClusterSample(hour, cand.member_table()[["cluster", "user_id"]], features)


def stable_share(keys: np.ndarray, share: float) -> np.ndarray:
    """A pseudo-random ``share`` of ``keys``, the same for a key in every call (hashed)."""
    codes = pd.util.hash_array(np.asarray(keys, dtype=object)) % 10_000
    return codes < share * 10_000


def cluster_groups(members: pd.DataFrame, match: pd.DataFrame) -> np.ndarray:
    """A cluster's group across moments: its ring, else its first member (a growing cluster
    keeps its first member)."""
    first = members.groupby("cluster")["user_id"].min().reindex(match.index).to_numpy(object)
    ring = match["ring_id"].to_numpy(object)
    return np.where(pd.notna(ring), "ring:" + ring.astype(str), "user:" + first.astype(str))


def training_rows(
    now: ClusterSample, past: list[ClusterSample], labels: pd.DataFrame, negative_share: float
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features, labels and groups of every cluster of ``now`` and, from each moment of ``past``
    (earlier ones: the caller bounds them), its colluding clusters and ``negative_share`` of the
    rest.

    ``labels`` are those known at ``now`` (``user_id, is_fraud``, optionally ``ring_id``).
    """
    xs, ys, gs = [], [], []
    for sample in [*past, now]:
        match = match_members(sample.members, len(sample.features), labels)
        y = colluding(match)
        groups = cluster_groups(sample.members, match)
        keep = (
            np.ones(len(y), dtype=bool) if sample is now else (y == 1) | stable_share(groups, negative_share)
        )
        xs.append(sample.features[keep])
        ys.append(y[keep])
        gs.append(groups[keep])
    return pd.concat(xs, ignore_index=True), np.concatenate(ys), np.concatenate(gs)


def past_samples(
    facts: FactLog,
    until_ms: int,
    every_h: int,
    config: ClusterConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ClusterSample]:
    """The clusters of the graph every ``every_h`` hours before ``until_ms``, each as of its hour
    (folded by the pipeline's own merges, :class:`pipelines.event_log.GraphTimeline`), with
    features from that graph alone (no node scores: none were published for those hours here)."""
    if facts.start is None:
        return []
    first = (facts.start // HOUR_MS + 1) * HOUR_MS
    hours = list(range(first, until_ms, every_h * HOUR_MS))
    timeline = GraphTimeline(facts)
    out = []
    for i, h in enumerate(hours):
        timeline.advance(h)
        nodes, edges = timeline.tables()
        cand = find_candidates(nodes, edges, config)
        out.append(ClusterSample.of(h, cand, cluster_features(cand, nodes, edges, None)))
        if progress is not None:
            progress(i + 1, len(hours))
    return out


def event_moments(
    events_dir: Path,
    settings: Settings,
    config: ClusterConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ClusterSample]:
    """:func:`past_samples` of the event files under ``events_dir`` (read, validated and
    pseudonymised as a batch would), every ``settings.ring_sample_every_h`` hours up to the
    last event. Raises :class:`~gnn.rings.model.RingMethodError` before reading anything when
    ``settings.ring_method`` cannot train on them."""
    from pipelines.refresh import discover_partitions

    require_past_moments_method(settings.ring_method)

    parts = [p.path for p in discover_partitions(events_dir)]
    log = read_event_log(events_dir, parts, settings)
    if not len(log.clean):
        return []
    until = int(log.clean.column("time")[-1].as_py()) + 1
    return past_samples(FactLog.of(log.clean), until, settings.ring_sample_every_h, config, progress)
