"""Ring-model training on past moments: rows, groups, the as-of rule, and find_rings parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gnn.rings.model import RingMethodError, match_members
from gnn.rings.moments import ClusterSample, cluster_groups, event_moments, stable_share, training_rows
from gnn.rings.run import find_rings
from graphrisk.config import load_settings
from graphrisk.graph_schema import NodeLabel
from graphrisk.synthetic import generate
from pipelines.event_tables import snapshot_tables

torch.set_num_threads(1)
HOUR_MS = 3_600_000


def _sample(hour: int, clusters: dict[int, list[str]]) -> ClusterSample:
    members = pd.DataFrame(
        [(c, u) for c, users in clusters.items() for u in users], columns=["cluster", "user_id"]
    )
    features = pd.DataFrame(
        {"size": [float(len(clusters[c])) for c in sorted(clusters)], "hour": float(hour)}
    )
    return ClusterSample(hour, members, features)


LABELS = pd.DataFrame({
    "user_id": ["a", "b", "c", "d", "x", "y", "z"],
    "is_fraud": [1, 1, 1, 1, 0, 0, 0],
    "ring_id": ["r", "r", "r", "r", None, None, None],
})  # fmt: skip


def test_a_young_ring_is_a_positive_of_its_moment_and_one_group_with_its_grown_self() -> None:
    young = _sample(1, {0: ["a", "b"], 1: ["x", "y"]})
    grown = _sample(2, {0: ["a", "b", "c", "d"], 1: ["x", "y", "z"]})
    x, y, groups = training_rows(grown, [young], LABELS, negative_share=1.0)
    assert list(y) == [1, 0, 1, 0]
    assert list(x["size"]) == [2.0, 2.0, 4.0, 3.0]
    # One ring at two moments is one group, and so is one honest cluster (named by its first
    # member): no fold scores a row with trees that saw the same cluster at another moment.
    assert groups[0] == groups[2] == "ring:r"
    assert groups[1] == groups[3] == "user:x"


def test_past_moments_keep_every_positive_and_a_stable_share_of_negatives() -> None:
    honest = {i: [f"h{i}a", f"h{i}b"] for i in range(1, 400)}
    past = [_sample(h, {0: ["a", "b", "c"], **honest}) for h in (1, 2)]
    now = _sample(3, {0: ["a", "b", "c", "d"], **honest})
    x, y, groups = training_rows(now, past, LABELS, negative_share=0.25)
    assert (x["hour"] == 3).sum() == 400  # the cut-off's moment keeps every cluster
    for h in (1, 2):
        rows = x["hour"].to_numpy() == h
        assert y[rows].sum() == 1  # the young ring at each past moment
        kept_negatives = set(groups[rows & (y == 0)])
        # The same honest clusters at every moment (hashed by group), about a quarter of them.
        assert kept_negatives == {
            g for g in groups[(x["hour"] == 3).to_numpy() & (y == 0)] if stable_share([g], 0.25)[0]
        }
        assert 60 <= len(kept_negatives) <= 140


def test_labels_unknown_at_the_cutoff_make_no_positive() -> None:
    known = LABELS.assign(is_fraud=0, ring_id=None)
    _, y, _ = training_rows(_sample(2, {0: ["a", "b"]}), [_sample(1, {0: ["a", "b"]})], known, 1.0)
    assert y.sum() == 0


def test_cluster_groups_name_rings_and_first_members() -> None:
    s = _sample(1, {0: ["b", "a"], 1: ["y", "x"]})
    match = match_members(s.members, 2, LABELS)
    assert list(cluster_groups(s.members, match)) == ["ring:r", "user:x"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moments")
    generate(out, users=3000, seed=57, days=8)
    return out


@pytest.fixture(scope="module")
def moments(world: Path) -> list[ClusterSample]:
    return event_moments(world / "events", load_settings(environment="test"))


def test_each_past_moment_holds_only_users_seen_before_it(world: Path, moments: list[ClusterSample]) -> None:
    settings = load_settings(environment="test")
    nodes, _ = snapshot_tables(world / "events", settings)
    users = nodes[NodeLabel.USER].set_index("id")
    hours = [m.hour for m in moments]
    assert hours == sorted(hours) and len(hours) >= 8 * 24 // settings.ring_sample_every_h - 2
    assert set(np.diff(hours)) == {settings.ring_sample_every_h * HOUR_MS}
    for m in moments:
        # The as-of rule: a moment's clusters are made of users whose first event came before it.
        assert (users.loc[m.members["user_id"].unique(), "first_seen"] < m.hour).all()
        assert len(m.features) == m.members["cluster"].nunique()
    # Clusters grow as history accumulates.
    assert len(moments[-1].members) > len(moments[0].members)


def test_find_rings_trains_on_past_moments_with_the_trees(
    world: Path, moments: list[ClusterSample], tmp_path: Path
) -> None:
    settings = load_settings(environment="test").model_copy(update={"data_dir": tmp_path})
    labels = pd.read_parquet(world / "labels" / "users.parquet")
    tables = snapshot_tables(world / "events", settings)
    alone = find_rings(settings, None, labels=labels, tables=tables, registry_dir=tmp_path / "a", now_ms=1)
    both = find_rings(settings, None, labels=labels, tables=tables, registry_dir=tmp_path / "b", now_ms=1,
                      past=moments)  # fmt: skip
    assert alone.training_moments == 1 and alone.training_rows == alone.clusters
    assert both.training_moments == 1 + len(moments)
    assert both.training_rows > both.clusters
    # Trained on more rings (young ones too), scored on the same clusters.
    assert both.model_metrics["positives"] > alone.model_metrics["positives"]
    with pytest.raises(ValueError, match="past moments"):
        find_rings(settings, None, labels=labels, tables=tables, registry_dir=tmp_path / "c", now_ms=1,
                   past=moments, ring_method="combined")  # fmt: skip


def test_an_empty_history_has_no_moments(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    assert event_moments(tmp_path / "events", load_settings(environment="test")) == []
    # A method that cannot use the moments is refused before any replay (the demo's path).
    with pytest.raises(RingMethodError, match="'trees'"):
        event_moments(tmp_path / "missing", load_settings(environment="test", ring_method="combined"))
