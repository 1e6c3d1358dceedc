"""Score every user with the production model; write scores to the store and a scores table."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gnn.data.entity_graph import entity_graph_dataset
from gnn.device import move_scorer
from gnn.registry import ModelRegistry, RegistryError
from gnn.shadow import SHADOW_DIR, shadow_score
from graphrisk.store import GraphStore

INPUTS_FILE = "user_inputs.parquet"


@dataclass
class ScoringReport:
    """What a scoring run did."""

    model_version: str
    users: int
    bands: dict[str, int]
    scores_table: str
    # Users whose model input rows were kept for exact explanations (review and block bands).
    explainable_users: int
    build_s: float
    predict_s: float
    write_s: float
    # The challenger's run in shadow beside this one (gnn/shadow.py), when one is in shadow.
    shadow: dict[str, object] | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict for the JSON report."""
        return asdict(self)


def score_users(
    snapshot_dir: Path,
    out_dir: Path,
    registry: ModelRegistry,
    store: GraphStore | None,
    shadow_dir: Path | None = None,
    device: str | None = None,
) -> ScoringReport:
    """Score all users of the snapshot with the production model.

    Writes ``out_dir/user_scores.parquet`` (id, score, band, model_version) and, when a store is
    given, ``risk_score``, ``risk_band``, ``model_version`` and ``scored_at`` on each user. With a
    tree model, the input rows of the users in the review and block bands (those investigators
    open) go to ``out_dir/user_inputs.parquet``, so their published score is explained exactly
    rather than re-scored; every user's row would cost ~5 kB each at a million users.

    While a challenger is in shadow it scores the same users afterwards, logged under
    ``shadow_dir`` (default ``out_dir/../shadow``) and never published (:func:`gnn.shadow.shadow_score`).
    ``device`` is where a GNN in the model scores (default: CUDA when present, else the CPU).
    """
    model, meta = registry.load()
    # GNN modules load on the CPU; batch scoring runs them on ``device`` (None: CUDA if present).
    move_scorer(model.scorer, device)
    t0 = time.perf_counter()
    dataset = entity_graph_dataset(snapshot_dir, labels=None)
    t1 = time.perf_counter()
    scores, inputs = model.predict_with_inputs(dataset)
    bands = model.band(scores)
    t2 = time.perf_counter()
    table = pd.DataFrame(
        {
            "id": dataset.node_ids,
            "score": scores.astype(np.float64),
            "band": bands,
            "model_version": meta.version,
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "user_scores.parquet"
    _publish(table, path)
    # Published for online scoring: new applicants' neighbours are read from here.
    features = pd.DataFrame(dataset.x, columns=dataset.feature_names)
    features.insert(0, "id", dataset.node_ids)
    _publish(features, out_dir / "user_features.parquet")
    # Rewritten even when empty (a model without input rows): a stale file would explain
    # scores this run replaced.
    kept = bands != "allow"
    if inputs is not None:
        explainable = pd.DataFrame(inputs[kept], columns=list(model.scorer.feature_names))
        explainable.insert(0, "id", dataset.node_ids[kept])
    else:
        explainable = pd.DataFrame({"id": pd.Series([], dtype=object)})
    explainable.insert(1, "model_version", meta.version)
    _publish(explainable, out_dir / INPUTS_FILE)
    if store is not None:
        rows = [
            {"id": i, "score": float(s), "band": str(b)}
            for i, s, b in zip(table["id"], table["score"], table["band"], strict=True)
        ]
        store.write_rows(
            "scores/write_user_scores", rows, model_version=meta.version, now=int(time.time() * 1000)
        )
    t3 = time.perf_counter()
    counts = {str(k): int(v) for k, v in pd.Series(bands).value_counts().items()}
    shadow: dict[str, object] | None
    try:
        shadow = shadow_score(registry, dataset, table, shadow_dir or out_dir.parent / SHADOW_DIR)
    except (RegistryError, OSError, ValueError) as exc:
        # The champion's scores are published already; a challenger that cannot score is reported.
        shadow = {"error": f"{type(exc).__name__}: {exc}"}
    return ScoringReport(
        meta.version, len(table), counts, str(path), len(explainable),
        round(t1 - t0, 2), round(t2 - t1, 2), round(t3 - t2, 2), shadow,
    )  # fmt: skip


def _publish(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` beside ``path`` and rename it into place, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
