"""The applicant fast path computes the same feature row as the batch feature code on the star."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from gnn.data.entity_graph import entity_graph_dataset
from gnn.features import label_features, neighbour_features
from gnn.models.base import FeatureOptions
from gnn.online import APPLICANT_IDENTIFIERS
from gnn.online_features import IdentifierLinks, StarFeatures, reference_row
from graphrisk.config import load_settings
from graphrisk.graph_schema import EDGE_TYPES
from graphrisk.synthetic import generate
from pipelines.event_tables import build_snapshot

N_USERS = 40
NOW = 1_769_000_000_000


def _published(seed: int, width: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=(N_USERS, width))
    x[rng.random(x.shape) < 0.1] = np.nan  # e.g. hours_to_first_payment of users who never paid
    ids = [f"u{i}" for i in range(N_USERS)]
    feats = pd.DataFrame(x, index=ids, columns=[f"feat_{c}" for c in range(width)])
    labelled = rng.choice(N_USERS, size=N_USERS // 2, replace=False)
    labels = pd.DataFrame(
        {"user_id": [ids[i] for i in labelled], "is_fraud": (rng.random(len(labelled)) < 0.3).astype(int)}
    )
    return feats, labels


def _model_columns(feats: pd.DataFrame, labels: pd.DataFrame, options: FeatureOptions) -> list[str]:
    empty = StarFeatures(feats, labels).dataset(np.zeros(feats.shape[1]), [], NOW)
    return reference_row(empty, np.zeros(1, dtype=bool), options, 0.0)[1]


identifier_users = st.lists(st.integers(min_value=-1, max_value=N_USERS - 1), max_size=6)


@settings(max_examples=40, deadline=None)
@given(
    users=st.lists(
        identifier_users, min_size=len(APPLICANT_IDENTIFIERS), max_size=len(APPLICANT_IDENTIFIERS)
    ),
    present=st.lists(st.booleans(), min_size=len(APPLICANT_IDENTIFIERS), max_size=len(APPLICANT_IDENTIFIERS)),
    events=st.integers(min_value=0, max_value=50),
    age_h=st.floats(min_value=0, max_value=5000),
    narrow=st.booleans(),
    seed=st.integers(min_value=0, max_value=3),
)
def test_star_row_equals_batch_features(
    users: list[list[int]], present: list[bool], events: int, age_h: float, narrow: bool, seed: int
) -> None:
    width = 7
    feats, labels = _published(seed, width)
    # ``narrow`` aggregates only some own columns, as wide datasets do.
    options = FeatureOptions(max_neighbour_columns=4 if narrow else None, history_labels=False)
    star = StarFeatures(feats, labels, options, _model_columns(feats, labels, options))
    identifiers = [
        IdentifierLinks(
            rel=rel,
            node_events=float(events),
            node_first=NOW - age_h * 3_600_000,
            rows=np.array(sorted(set(rows)), dtype=np.int64),
            linked_at=np.full(len(set(rows)), NOW - 1000),
        )
        for rel, rows, keep in zip(APPLICANT_IDENTIFIERS, users, present, strict=True)
        if keep
    ]
    x0 = np.random.default_rng(seed + 10).lognormal(size=width)
    fast = star.row(x0, identifiers, NOW)
    dataset = star.dataset(x0, identifiers, NOW)
    # No prior passed: the star dataset carries the training rate, as every scorer reading it
    # through tabular_features (the non-tree online path) then sees.
    reference, names = reference_row(dataset, dataset.y >= 0, options)
    assert names == star.names
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_labels_read_are_the_neighbours_not_the_applicant() -> None:
    feats, labels = _published(0, 3)
    options = FeatureOptions(history_labels=False)
    star = StarFeatures(feats, labels, options, _model_columns(feats, labels, options))
    fraud_user = labels.loc[labels["is_fraud"] == 1, "user_id"].iloc[0]
    rows = star.rows_of(np.array([fraud_user]))
    ident = IdentifierLinks(next(iter(APPLICANT_IDENTIFIERS)), 3.0, NOW, rows, np.array([NOW - 1]))
    row = star.row(np.zeros(3), [ident], NOW)
    col = {n: i for i, n in enumerate(star.names)}
    assert row[col["rev_USED_DEVICE_via_train_fraud"]] == 1
    assert row[col["rev_USED_DEVICE_via_train_count"]] == 1
    assert row[col["rev_USED_DEVICE_via_count"]] == 2  # the applicant and the fraud user


def test_star_row_matches_the_batch_row_of_a_real_user(tmp_path: Path) -> None:
    """On a generated graph: a user with one identifier of each kind, re-scored as an applicant,
    gets the batch features of its identifier relations (the online path cannot drift from training)."""
    generate(tmp_path / "gen", users=1500, seed=5, days=7)
    build_snapshot(tmp_path / "gen" / "events", tmp_path / "snap", load_settings(environment="test"))
    labels = pd.read_parquet(tmp_path / "gen" / "labels" / "users.parquet")
    ds = entity_graph_dataset(tmp_path / "snap", labels, split="random", seeds=(0,))
    train = ds.splits[0].train
    options = FeatureOptions(history_labels=False)
    labelled = pd.DataFrame({"user_id": ds.node_ids[train], "is_fraud": ds.y[train]})
    prior = float(labelled["is_fraud"].mean())
    neighbour, n_names = neighbour_features(ds, 2, options.reduces)
    label, l_names = label_features(ds, train, 2, prior=prior)
    batch = np.hstack([ds.x, neighbour, label]).astype(np.float32)
    names = list(ds.feature_names) + n_names + l_names
    published = pd.DataFrame(ds.x, index=ds.node_ids, columns=ds.feature_names)
    star = StarFeatures(published, labelled, options, names)

    single = np.ones(ds.num_nodes, dtype=bool)
    for rel in APPLICANT_IDENTIFIERS:
        single &= ds.x[:, ds.feature_names.index(f"deg_{rel.value.lower()}")] == 1
    users = np.flatnonzero(single)[:25]
    assert len(users) >= 10
    columns = [i for i, n in enumerate(names) if n.split("_", 1)[0] not in ("rev", "TRANSFERRED")]
    for rel in APPLICANT_IDENTIFIERS:
        columns += [i for i, n in enumerate(names) if n.startswith(f"rev_{rel.value}_")]
    for u in users:
        identifiers = []
        for rel in APPLICANT_IDENTIFIERS:
            label_name = EDGE_TYPES[rel].dst.value
            src, dst = ds.data[label_name, f"rev_{rel.value}", "User"].edge_index.numpy()
            node = int(src[dst == u][0])
            others = dst[(src == node) & (dst != u)]
            users_on, events, age_h = ds.data[label_name].x[node].tolist()
            assert users_on == len(others) + 1
            # The applicant path counts the application's own event on top of the node's.
            identifiers.append(
                IdentifierLinks(rel, events - 1, -age_h * 3_600_000, others, np.zeros(len(others)))
            )
        online = star.row(ds.x[u].astype(np.float64), identifiers, 0)
        np.testing.assert_allclose(online[columns], batch[u, columns], rtol=1e-4, atol=1e-4, equal_nan=True)
