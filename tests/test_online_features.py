"""The applicant fast path computes the same feature row as the batch feature code on the star."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from gnn.models.base import FeatureOptions
from gnn.online import APPLICANT_IDENTIFIERS
from gnn.online_features import IdentifierLinks, StarFeatures, reference_row

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
    reference, names = reference_row(dataset, dataset.y >= 0, options, star.prior)
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
