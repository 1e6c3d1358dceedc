"""Score every user with the production model; write scores to the store and a scores table."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gnn.data.entity_graph import entity_graph_dataset
from gnn.registry import ModelRegistry
from graphrisk.store import GraphStore


@dataclass
class ScoringReport:
    """What a scoring run did."""

    model_version: str
    users: int
    bands: dict[str, int]
    scores_table: str
    build_s: float
    predict_s: float
    write_s: float

    def to_dict(self) -> dict[str, object]:
        """Plain dict for the JSON report."""
        return asdict(self)


def score_users(
    snapshot_dir: Path, out_dir: Path, registry: ModelRegistry, store: GraphStore | None
) -> ScoringReport:
    """Score all users of the snapshot with the production model.

    Writes ``out_dir/user_scores.parquet`` (id, score, band, model_version) and, when a store is
    given, ``risk_score``, ``risk_band``, ``model_version`` and ``scored_at`` on each user.
    """
    model, meta = registry.load()
    t0 = time.perf_counter()
    dataset = entity_graph_dataset(snapshot_dir, labels=None)
    t1 = time.perf_counter()
    scores = model.predict(dataset)
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
    tmp = path.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    # Published for online scoring: new applicants' neighbours are read from here.
    features = pd.DataFrame(dataset.x, columns=dataset.feature_names)
    features.insert(0, "id", dataset.node_ids)
    features.to_parquet(out_dir / "user_features.parquet.tmp", index=False)
    (out_dir / "user_features.parquet.tmp").replace(out_dir / "user_features.parquet")
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
    return ScoringReport(
        meta.version, len(table), counts, str(path), round(t1 - t0, 2), round(t2 - t1, 2), round(t3 - t2, 2)
    )
