"""gnn.models.booster_average: one booster scoring the mean of several, reasons included."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gnn.models.booster_average import BoosterMismatchError, average_boosters


def _rows(seed: int, n: int = 400, f: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return x, y


def _fit(x: np.ndarray, y: np.ndarray, seed: int, rounds: int, leaves: int = 8) -> lgb.Booster:
    params = {"objective": "binary", "verbose": -1, "num_leaves": leaves, "subsample": 0.8,
              "subsample_freq": 1, "colsample_bytree": 0.6, "seed": seed, "num_threads": 1}  # fmt: skip
    return lgb.train(params, lgb.Dataset(x, y), rounds)


@settings(max_examples=12, deadline=None)
@given(
    k=st.integers(1, 4),
    rounds=st.lists(st.integers(1, 25), min_size=4, max_size=4),
    leaves=st.sampled_from([2, 4, 8]),
    data_seed=st.integers(0, 10_000),
)
def test_mean_of_raw_scores_and_of_reasons(k: int, rounds: list[int], leaves: int, data_seed: int) -> None:
    x, y = _rows(data_seed)
    boosters = [_fit(x, y, seed, rounds[seed], leaves) for seed in range(k)]
    merged = average_boosters(boosters)
    raw = np.mean([b.predict(x, raw_score=True) for b in boosters], axis=0)
    np.testing.assert_allclose(merged.predict(x, raw_score=True), raw, atol=1e-9)
    np.testing.assert_allclose(merged.predict(x), 1 / (1 + np.exp(-raw)), atol=1e-9)
    # TreeSHAP is linear in leaf values: the merged reasons are the boosters' mean reasons, and
    # still add up to the raw score.
    contrib = merged.predict(x, pred_contrib=True)
    mean_contrib = np.mean([b.predict(x, pred_contrib=True) for b in boosters], axis=0)
    np.testing.assert_allclose(contrib, mean_contrib, atol=1e-9)
    np.testing.assert_allclose(contrib.sum(axis=1), raw, atol=1e-9)
    assert merged.num_trees() == sum(b.num_trees() for b in boosters)


def test_survives_the_registry_round_trips() -> None:
    x, y = _rows(3)
    merged = average_boosters([_fit(x, y, s, 15) for s in range(3)])
    want = merged.predict(x, raw_score=True)
    again = lgb.Booster(model_str=merged.model_to_string())
    np.testing.assert_allclose(again.predict(x, raw_score=True), want, atol=1e-12)
    np.testing.assert_allclose(
        pickle.loads(pickle.dumps(merged)).predict(x, raw_score=True), want, atol=1e-12
    )


def test_refuses_boosters_reading_other_columns() -> None:
    x, y = _rows(1)
    with pytest.raises(BoosterMismatchError, match="different features"):
        average_boosters([_fit(x, y, 0, 5), _fit(x[:, :4], y, 1, 5)])
    with pytest.raises(ValueError, match="no boosters"):
        average_boosters([])
