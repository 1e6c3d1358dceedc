"""Input scaling is fitted once, on training nodes, and stored with the model: a node's score
never depends on which other nodes are scored with it (issue 11, item 2)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch_geometric.data import HeteroData

from gnn.data.dataset import NodeDataset, stratified_splits
from gnn.features import FeatureScaler
from gnn.models import MODELS, LogisticScorer, make_model
from gnn.models.train import GNNScorer, raw_inputs
from gnn.online import applicant_features
from gnn.online_features import IdentifierLinks, StarFeatures
from graphrisk.graph_schema import RelType

torch.set_num_threads(1)

USER_FEATURES = 4
DEVICE_FEATURES = 3
SMALL_GNN = {"hidden": 8, "epochs": 12, "patience": 4}

# Every scorer of make_model whose inputs go through a FeatureScaler.
SCALED = sorted(n for n, cls in MODELS.items() if issubclass(cls, GNNScorer) or cls is LogisticScorer)
CONFIGS: dict[str, tuple[str, dict]] = {
    **{n: (n, SMALL_GNN if issubclass(MODELS[n], GNNScorer) else {}) for n in SCALED},
    "bwgnn-homogeneous": ("bwgnn", {**SMALL_GNN, "homogeneous": True}),
}


def tiny_graph(n: int = 160, devices: int = 30, seed: int = 0) -> NodeDataset:
    """Users (heavy-tailed and partly missing features) who pay each other and share devices
    (which have features of their own); fraudsters form a ring."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    x = rng.normal(size=(n, USER_FEATURES)).astype(np.float32)
    x[:, 0] += y
    x[:, 1] = rng.lognormal(3.0, 2.0, n)  # amounts
    x[rng.random(n) < 0.2, 2] = np.nan  # "no history"
    pos = np.flatnonzero(y == 1)
    ring = np.stack([rng.choice(pos, 3 * len(pos)), rng.choice(pos, 3 * len(pos))])
    ei = np.concatenate([ring, rng.integers(0, n, size=(2, 2 * n))], 1)
    ei = ei[:, ei[0] != ei[1]]
    data = HeteroData()
    data["user"].x = torch.as_tensor(x)
    data["device"].x = torch.as_tensor(
        rng.lognormal(1.0, 1.0, (devices, DEVICE_FEATURES)), dtype=torch.float32
    )
    data["user", "pays", "user"].edge_index = torch.as_tensor(np.concatenate([ei, ei[::-1]], 1))
    u2d = torch.as_tensor(np.stack([np.arange(n), rng.integers(0, devices, n)]))
    data["user", "uses", "device"].edge_index = u2d
    data["device", "rev_uses", "user"].edge_index = u2d.flip(0)
    y[rng.random(n) < 0.05] = -1
    return NodeDataset(
        name="tiny",
        data=data,
        target="user",
        y=y,
        feature_names=[f"f{i}" for i in range(USER_FEATURES)],
        node_ids=np.arange(n).astype(str),
        splits=stratified_splits(y, (0.5, 0.25, 0.25), [0]),
    )


def with_extra_nodes(
    ds: NodeDataset, x_users: np.ndarray, x_devices: np.ndarray, labels: np.ndarray, edges: np.ndarray
) -> NodeDataset:
    """``ds`` with users and devices appended that link only among themselves: ``edges`` are
    (new user, new user) pairs, and new user ``i`` uses new device ``i % len(x_devices)``."""
    n, k, d, m = ds.num_nodes, len(x_users), ds.data["device"].num_nodes, len(x_devices)
    data = HeteroData()
    data["user"].x = torch.cat([ds.data["user"].x, torch.as_tensor(x_users, dtype=torch.float32)])
    data["device"].x = torch.cat([ds.data["device"].x, torch.as_tensor(x_devices, dtype=torch.float32)])
    pays = torch.as_tensor(n + edges.reshape(2, -1), dtype=torch.long)
    data["user", "pays", "user"].edge_index = torch.cat(
        [ds.data["user", "pays", "user"].edge_index, pays, pays.flip(0)], 1
    )
    new_uses = torch.as_tensor(np.stack([n + np.arange(k), d + np.arange(k) % m]), dtype=torch.long)
    uses = torch.cat([ds.data["user", "uses", "device"].edge_index, new_uses], 1)
    data["user", "uses", "device"].edge_index = uses
    data["device", "rev_uses", "user"].edge_index = uses.flip(0)
    return NodeDataset(
        name="tiny+extra",
        data=data,
        target="user",
        y=np.concatenate([ds.y, labels]).astype(np.int64),
        feature_names=list(ds.feature_names),
        node_ids=np.concatenate([ds.node_ids, [f"extra-{i}" for i in range(k)]]),
    )


def no_nodes(ds: NodeDataset) -> NodeDataset:
    """``ds``'s schema with no users, devices or edges."""
    data = HeteroData()
    for nt in ds.data.node_types:
        data[nt].x = ds.data[nt].x[:0]
    for et in ds.data.edge_types:
        data[et].edge_index = torch.zeros((2, 0), dtype=torch.long)
    return NodeDataset("empty", data, ds.target, ds.y[:0], list(ds.feature_names), ds.node_ids[:0])


@pytest.fixture(scope="module")
def tiny() -> NodeDataset:
    return tiny_graph()


@pytest.fixture(scope="module")
def fitted(tiny: NodeDataset) -> dict[str, object]:
    return {
        key: make_model(name, seed=0, **kw).fit(tiny, tiny.splits[0]) for key, (name, kw) in CONFIGS.items()
    }


def test_every_scaled_scorer_is_covered() -> None:
    assert {"logreg", "sage", "bwgnn"} <= set(SCALED)


values = st.one_of(
    st.floats(-1e6, 1e6, width=32),
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e9]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    k=st.integers(1, 12),
    m=st.integers(1, 4),
)
def test_a_node_score_does_not_depend_on_the_other_nodes_scored(
    tiny: NodeDataset, fitted: dict[str, object], data: st.DataObject, k: int, m: int
) -> None:
    """Scoring the dataset, or the dataset with any extra nodes that do not link to it (with
    any features, extreme or missing, and labels the label features may read), gives the
    original nodes the same scores; and the extra nodes score the same without the dataset
    (a single one alone included)."""
    x_users = data.draw(hnp.arrays(np.float32, (k, USER_FEATURES), elements=values), label="x_users")
    x_devices = data.draw(hnp.arrays(np.float32, (m, DEVICE_FEATURES), elements=values), label="x_devices")
    labels = data.draw(hnp.arrays(np.int64, k, elements=st.sampled_from([-1, 0, 1])), label="labels")
    edges = data.draw(hnp.arrays(np.int64, (2, k), elements=st.integers(0, k - 1)), label="edges")
    bigger = with_extra_nodes(tiny, x_users, x_devices, labels, edges)
    mask = np.concatenate([tiny.splits[0].train, labels >= 0])  # the new labels may be read
    only_extra = with_extra_nodes(no_nodes(tiny), x_users, x_devices, labels, edges)
    n = tiny.num_nodes
    for key, model in fitted.items():
        alone = model.predict_proba(tiny)
        among = model.predict_proba(bigger, label_mask=mask)
        assert among.shape == (bigger.num_nodes,) and np.isfinite(among).all(), key
        np.testing.assert_allclose(among[:n], alone, rtol=0, atol=1e-6, err_msg=key)
        by_themselves = model.predict_proba(only_extra, label_mask=labels >= 0)
        np.testing.assert_allclose(among[n:], by_themselves, rtol=0, atol=1e-6, err_msg=key)


def test_scaler_statistics_are_the_training_nodes(tiny: NodeDataset, fitted: dict[str, object]) -> None:
    split = tiny.splits[0]
    # Shift the nodes outside training, so their statistics differ from the training ones.
    shifted = copy.deepcopy(tiny)
    shifted.data["user"].x[torch.as_tensor(~split.train)] *= 100.0
    for key, (name, kw) in CONFIGS.items():
        model = make_model(name, seed=0, **kw).fit(shifted, split)
        if isinstance(model, LogisticScorer):
            scalers, raw = {"user": model.scaler_}, {"user": shifted.data["user"].x.numpy()}
        else:
            scalers, raw = (
                model.scalers_,
                raw_inputs(shifted, split.train, model.features, model.label_prior_)[0],
            )
            assert set(scalers) == {"user", "device"}, key
            # Other node types carry no split: all of the training graph's nodes.
            np.testing.assert_allclose(
                scalers["device"].mean, FeatureScaler.fit(raw["device"]).mean, rtol=1e-6
            )
        user = scalers["user"]
        expected = FeatureScaler.fit(raw["user"], split.train)
        np.testing.assert_array_equal(user.mean, expected.mean, err_msg=key)
        np.testing.assert_array_equal(user.std, expected.std, err_msg=key)
        assert not np.allclose(user.mean, FeatureScaler.fit(raw["user"]).mean), key
        assert user.mean.dtype == np.float32 and isinstance(user.mean, np.ndarray)
        # Scoring another set leaves them as they were.
        before = user.mean.copy()
        model.predict_proba(tiny, label_mask=split.train)
        np.testing.assert_array_equal(user.mean, before)
        # They travel with the pickled model (what the registry stores), and the scores too.
        restored = pickle.loads(pickle.dumps(model))
        np.testing.assert_array_equal(
            (restored.scaler_ if isinstance(restored, LogisticScorer) else restored.scalers_["user"]).mean,
            user.mean,
        )
        np.testing.assert_allclose(
            restored.predict_proba(shifted), model.predict_proba(shifted), rtol=0, atol=0
        )
    assert fitted  # the module fixture fitted on the unshifted graph is untouched


def test_fitted_scaler_matches_the_definition() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(2.0, 1.5, (50, 3)).astype(np.float32) * rng.choice([-1, 1], (50, 3))
    x[::7, 0] = np.nan
    x[3, 1] = np.inf
    x[:, 2] = 4.0  # constant in training
    rows = np.arange(50) < 30
    sc = FeatureScaler.fit(x, rows)
    t = np.sign(x[rows].astype(np.float64)) * np.log1p(np.abs(x[rows].astype(np.float64)))
    t[~np.isfinite(t)] = np.nan
    mean = np.nanmean(t, axis=0)
    filled = np.where(np.isnan(t), mean, t)
    np.testing.assert_allclose(sc.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(sc.std[:2], filled[:, :2].std(axis=0, ddof=1), rtol=1e-5)
    assert sc.std[2] == 1.0  # a constant column is centred, not blown up
    out = sc.transform(x).numpy()
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert out[0, 0] == 0.0 and out[3, 1] == 0.0  # missing -> the training mean
    # One row scaled alone is the same row scaled among others (it used to be all zeros).
    np.testing.assert_array_equal(sc.transform(x[45:46]).numpy()[0], out[45])
    assert np.abs(sc.transform(x[45:46]).numpy()).sum() > 0
    # Fitting on row chunks gives the same statistics.
    np.testing.assert_allclose(FeatureScaler.fit(x, rows, chunk=4).mean, sc.mean, rtol=1e-6)
    np.testing.assert_allclose(FeatureScaler.fit(x, rows, chunk=4).std, sc.std, rtol=1e-6)
    np.testing.assert_array_equal(FeatureScaler.fit(torch.as_tensor(x), rows).mean, sc.mean)
    with pytest.raises(ValueError, match="columns"):
        sc.transform(x[:, :2])


# --- An applicant's star (gnn.online, ApplicantScorer's path for non-tree models) ---------

STAR_FEATURES = [
    "onboarded", "events", "hours_to_first_payment",
    "deg_used_device", "shared_max_used_device", "shared_sum_used_device",
    "deg_used_ip", "shared_max_used_ip",
]  # fmt: skip


def star_training_graph(n: int = 400, seed: int = 2) -> NodeDataset:
    """Users whose fraud goes with crowded devices (no edges needed by logreg)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    shared = rng.poisson(np.where(y == 1, 12.0, 1.0)).astype(np.float32)
    x = np.zeros((n, len(STAR_FEATURES)), dtype=np.float32)
    x[:, 0], x[:, 1] = 1.0, rng.poisson(20, n)
    x[:, 2] = np.where(rng.random(n) < 0.5, np.nan, rng.exponential(30, n))
    x[:, 3], x[:, 4], x[:, 5] = 1.0, shared, shared
    x[:, 6], x[:, 7] = 1.0, rng.poisson(2, n)
    data = HeteroData()
    data["user"].x = torch.as_tensor(x)
    data["user", "pays", "user"].edge_index = torch.zeros((2, 0), dtype=torch.long)
    return NodeDataset(
        name="star-train",
        data=data,
        target="user",
        y=y,
        feature_names=list(STAR_FEATURES),
        node_ids=np.arange(n).astype(str),
        splits=stratified_splits(y, (0.6, 0.2, 0.2), [0]),
    )


def test_logreg_scores_one_applicant_star_by_its_links() -> None:
    """What ``ApplicantScorer._score`` does for a non-tree model: the star as a dataset, row 0
    scored. The score follows the applicant's links, and is the score its row gets in any
    batch (the flag ``serves_applicants`` says so)."""
    train = star_training_graph()
    model = make_model("logreg").fit(train, train.splits[0])
    assert model.serves_applicants and not model.serving_limit
    published = pd.DataFrame(
        np.random.default_rng(3).poisson(3, (60, len(STAR_FEATURES))).astype(float),
        columns=STAR_FEATURES,
        index=[f"u{i}" for i in range(60)],
    )
    star = StarFeatures(published, pd.DataFrame({"user_id": ["u0", "u1"], "is_fraud": [1, 0]}))
    now = 10**12

    def score(device_users: int, ip_users: int) -> float:
        identifiers = [
            IdentifierLinks(RelType.USED_DEVICE, 5.0, now - 3.6e6, np.arange(device_users),
                            np.full(device_users, now - 1000)),
            IdentifierLinks(RelType.USED_IP, 2.0, now - 3.6e6, np.arange(ip_users),
                            np.full(ip_users, now - 1000)),
        ]  # fmt: skip
        x0 = applicant_features(identifiers, STAR_FEATURES, now)
        dataset = star.dataset(x0, identifiers, now)
        got = float(model.predict_proba(dataset, label_mask=dataset.y >= 0)[0])
        # The same row scored inside the training graph's batch gives the same score.
        batch = NodeDataset("batch", train.data.clone(), "user", train.y, list(STAR_FEATURES), train.node_ids)
        batch.data["user"].x = torch.cat(
            [train.data["user"].x, torch.as_tensor(x0[None], dtype=torch.float32)]
        )
        batch.y = np.concatenate([train.y, [-1]])
        assert got == pytest.approx(float(model.predict_proba(batch)[-1]), abs=1e-12)
        return got

    alone, crowded, very = score(0, 0), score(20, 0), score(40, 3)
    assert alone < crowded < very  # more users on its device: riskier
    assert len({round(s, 6) for s in (alone, crowded, very, score(0, 3))}) == 4
