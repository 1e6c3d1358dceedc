"""The scoring stage end to end on the current snapshot: train, promote, score users, find rings.

What ``graphrisk demo``, the API benchmark and the API tests all need after a graph build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from gnn.registry import ModelRegistry
from gnn.rings.moments import event_moments
from gnn.rings.run import find_rings
from gnn.scoring import score_users
from gnn.training import train_entity_model
from graphrisk.config import Settings
from graphrisk.store import GraphStore


def train_score_and_find_rings(
    settings: Settings,
    store: GraphStore,
    labels: pd.DataFrame,
    candidates: tuple[str, ...] = ("gbdt",),
    events_dir: Path | None = None,
) -> dict[str, Any]:
    """Train user models on the snapshot, promote the best (gate skipped: a fresh registry is
    the usual case here), score every user, train the ring model and write rings. With
    ``events_dir`` (the history the snapshot was built from), the ring model also learns from
    the clusters of past moments (:mod:`gnn.rings.moments`).

    Returns the training, scoring and ring reports.
    """
    registry = ModelRegistry(settings.data_dir / "models")
    meta, trained = train_entity_model(settings.snapshot_dir, labels, registry, candidates=candidates)
    registry.promote(meta.version, force=True)
    scores = score_users(settings.snapshot_dir, settings.data_dir / "scores", registry, store)
    past = event_moments(events_dir, settings) if events_dir is not None else None
    rings = find_rings(settings, store, labels=labels, past=past)
    return {
        "model": trained | {"version": meta.version},
        "scores": scores.to_dict(),
        "rings": rings.to_dict(),
    }
