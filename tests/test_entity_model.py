"""Entity-graph features and the train → score loop on a small synthetic graph, against the live store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gnn.data.entity_graph import entity_graph_dataset, positions, velocity_counts
from gnn.registry import ModelRegistry
from gnn.scoring import score_users
from gnn.training import train_entity_model
from graphrisk.config import Settings
from graphrisk.store import GraphStore
from graphrisk.synthetic import generate
from pipelines.refresh import refresh

torch.set_num_threads(1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), min_size=1, max_size=40), st.integers(1, 20)
)
def test_velocity_counts_only_earlier_links_in_window(links: list[tuple[int, int]], window: int) -> None:
    group = np.array([g for g, _ in links])
    t = np.array([x for _, x in links], dtype=np.int64)
    got = velocity_counts(group, t, (window, 1, 3 * window))
    for w, row in zip((window, 1, 3 * window), got, strict=True):
        want = [int(((group == g) & (t >= x - w) & (t < x)).sum()) for g, x in links]
        assert row.tolist() == want


@pytest.fixture(scope="module")
def synthetic_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, users=3000, seed=21, days=7)
    return out


@pytest.mark.slow
def test_train_and_score_round_trip(store: GraphStore, settings: Settings, synthetic_graph: Path) -> None:
    refresh(settings, store, synthetic_graph / "events")
    labels = pd.read_parquet(synthetic_graph / "labels" / "users.parquet")
    ds = entity_graph_dataset(settings.snapshot_dir, labels, split="random", seeds=(0,))
    # A user whose every event was dead-lettered is absent; all others are there, labelled.
    assert 0.99 * len(labels) <= ds.num_nodes <= len(labels)
    present = labels[labels["user_id"].isin(set(ds.node_ids))]
    assert int((ds.y == 1).sum()) == int(present["is_fraud"].sum()) > 0
    # A velocity feature only counts earlier links, so the first user on any device scores 0.
    assert np.nanmin(ds.x[:, ds.feature_names.index("velocity_1h_used_device")]) == 0

    registry = ModelRegistry(settings.data_dir / "models")
    meta, report = train_entity_model(settings.snapshot_dir, labels, registry, candidates=("gbdt",))
    assert report["chosen"] == "gbdt"
    assert meta.metrics["test_auprc"] > 0.4  # base rate is about 0.02; a dozen test positives make it noisy
    registry.promote(meta.version)

    result = score_users(settings.snapshot_dir, settings.data_dir / "scores", registry, store)
    table = pd.read_parquet(result.scores_table)
    assert len(table) == ds.num_nodes and table["score"].between(0, 1).all()
    top = store.read("scores/user_scores", skip=0, limit=5)
    assert len(top) == 5 and all(r["model_version"] == meta.version for r in top)
    fraud = set(labels.loc[labels["is_fraud"] == 1, "user_id"])
    assert sum(r["id"] in fraud for r in top) >= 4


def test_positions_finds_ids_and_marks_the_absent() -> None:
    ids = pd.Series(["u1", "u2", "u3"], dtype="string[pyarrow]")
    assert positions(ids, pd.Series(["u3", "nope", "u1", None], dtype=object)).tolist() == [2, -1, 0, -1]
    assert positions(ids, pd.Index(["u2"])).tolist() == [1]
