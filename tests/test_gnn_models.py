"""Models: shapes, reprs, learning a planted signal, leakage-free label features."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter as pyg_scatter

from gnn.data.dataset import NodeDataset, stratified_splits
from gnn.features import (
    label_features,
    neighbour_features,
    scatter_aggregate,
    scatter_aggregates,
    spectral_embedding,
    structural_features,
)
from gnn.models import (
    BWGNN,
    BlendScorer,
    FeatureOptions,
    HeteroSAGE,
    StackedScorer,
    make_model,
)
from gnn.models.bwgnn import beta_wavelet_coefficients
from gnn.models.train import k_hop_data

torch.set_num_threads(1)


def planted_graph(n: int = 600, seed: int = 0) -> NodeDataset:
    """Users with a weak own signal and a strong graph one: fraudsters share devices and
    transact with each other (a ring); legitimate users mostly connect at random."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(np.int64)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 0] += 0.5 * y  # weak own signal
    pos = np.flatnonzero(y == 1)
    ring = np.stack([rng.choice(pos, 4 * len(pos)), rng.choice(pos, 4 * len(pos))])
    noise = rng.integers(0, n, size=(2, 3 * n))
    ei = np.concatenate([ring, noise], 1)
    ei = ei[:, ei[0] != ei[1]]
    # Devices: fraudsters share 10 devices; others 300.
    dev = np.where(y == 1, rng.integers(0, 10, n), rng.integers(10, 310, n))
    data = HeteroData()
    data["user"].x = torch.as_tensor(x)
    data["device"].x = torch.zeros((310, 0))
    data["device"].num_nodes = 310
    und = torch.as_tensor(np.concatenate([ei, ei[::-1]], 1))
    data["user", "pays", "user"].edge_index = und
    u2d = torch.as_tensor(np.stack([np.arange(n), dev]))
    data["user", "uses", "device"].edge_index = u2d
    data["device", "rev_uses", "user"].edge_index = u2d.flip(0)
    y = y.copy()
    y[rng.random(n) < 0.05] = -1  # some unlabelled
    return NodeDataset(
        name="planted",
        data=data,
        target="user",
        y=y,
        feature_names=[f"f{i}" for i in range(4)],
        node_ids=np.arange(n).astype(str),
        splits=stratified_splits(y, (0.5, 0.25, 0.25), [0]),
    )


@pytest.fixture(scope="module")
def planted() -> NodeDataset:
    return planted_graph()


def inputs(ds: NodeDataset, width: int = 4):
    x_dict = {"user": ds.data["user"].x, "device": torch.ones((310, 1))}
    return x_dict, {et: ds.data[et].edge_index for et in ds.data.edge_types}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("hidden", [8, 16])
def test_hetero_sage_shapes(planted: NodeDataset, layers: int, hidden: int) -> None:
    x_dict, ei = inputs(planted)
    model = HeteroSAGE({"user": 4, "device": 1}, (list(x_dict), list(ei)), "user", hidden, layers)
    out = model(x_dict, ei)
    assert out.shape == (planted.num_nodes,)
    assert str(model) == f"HeteroSAGE(hidden={hidden}, layers={layers}, relations=3)"


@pytest.mark.parametrize("homogeneous", [True, False])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_bwgnn_shapes(planted: NodeDataset, homogeneous: bool, order: int) -> None:
    x_dict, ei = inputs(planted)
    rels = [("user", "pays", "user")]
    model = BWGNN(4, rels, "user", hidden=8, order=order, homogeneous=homogeneous)
    assert model(x_dict, ei).shape == (planted.num_nodes,)
    mode = "homo" if homogeneous else "hetero"
    assert str(model) == f"BWGNN(hidden=8, order={order}, {mode}, relations=1)"
    model.reset_parameters()


@pytest.mark.parametrize("order", [1, 2, 4])
def test_beta_wavelets_are_band_pass(order: int) -> None:
    coef = beta_wavelet_coefficients(order)
    lam = np.linspace(0, 2, 101)
    values = np.stack([np.polynomial.polynomial.polyval(lam, c) for c in coef])
    assert (values >= -1e-9).all()
    # Filter i peaks at lambda = 2 i / C: low, mid and high bands in order.
    peaks = lam[values.argmax(1)]
    assert np.allclose(peaks, 2 * np.arange(order + 1) / order, atol=0.03)


def _one_reduce(x: torch.Tensor, ei: torch.Tensor, n: int, reduce: str) -> torch.Tensor:
    """PyG's own scatter, one reduction at a time: the reference the fused version must equal."""
    msg, dst = x[ei[0]], ei[1]
    if reduce == "std":
        mean = pyg_scatter(msg, dst, 0, dim_size=n, reduce="mean")
        sq = pyg_scatter(msg * msg, dst, 0, dim_size=n, reduce="mean")
        return (sq - mean * mean).clamp_min(0).sqrt()
    out = pyg_scatter(msg, dst, 0, dim_size=n, reduce=reduce)
    if reduce in ("max", "min"):
        out[pyg_scatter(torch.ones_like(dst, dtype=msg.dtype), dst, 0, dim_size=n, reduce="sum") == 0] = (
            float("nan")
        )
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_aggregates_equal_one_reduce_at_a_time(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 5, generator=gen) * 100
    ei = torch.stack(
        [torch.randint(0, 300, (2000,), generator=gen), torch.randint(0, 250, (2000,), generator=gen)]
    )
    reduces = ("std", "min", "mean", "sum", "max")  # not the order they are computed in
    for reduce, got in zip(reduces, scatter_aggregates(x, ei, 280, reduces), strict=True):
        want = _one_reduce(x, ei, 280, reduce)
        assert torch.equal(torch.nan_to_num(want), torch.nan_to_num(scatter_aggregate(x, ei, 280, reduce)))
        assert torch.equal(want.isnan(), got.isnan()) and (want.isnan()[250:]).all() == (
            reduce in ("min", "max")
        )
        assert torch.equal(torch.nan_to_num(want), torch.nan_to_num(got)), reduce


def test_neighbour_features_match_hand_count() -> None:
    data = HeteroData()
    data["n"].x = torch.tensor([[1.0], [3.0], [5.0]])
    data["n", "e", "n"].edge_index = torch.tensor([[1, 2, 0], [0, 0, 1]])
    ds = NodeDataset("t", data, "n", np.array([1, 0, 0]), ["a"], np.array(["0", "1", "2"]))
    mat, names = neighbour_features(ds, hops=1, reduces=("mean", "max"))
    assert names == ["e_deg", "e_mean_a", "e_max_a"]
    np.testing.assert_allclose(mat[0], [2, 4, 5])
    np.testing.assert_allclose(mat[1], [1, 1, 1])
    assert mat[2, 0] == 0 and np.isnan(mat[2, 2])


def test_structural_features_match_hand_count() -> None:
    # A triangle 0-1-2 with a pendant 3 on node 2, stored once per edge (one direction).
    ei = np.array([[0, 1, 2, 2], [1, 2, 0, 3]])
    mat, names = structural_features(ei, 4)
    col = {n: mat[:, i] for i, n in enumerate(names)}
    np.testing.assert_allclose(col["log_degree"], np.log1p([2, 2, 3, 1]), rtol=1e-6)
    # Node 2: neighbours 0, 1, 3; only the pair (0, 1) is linked -> 1 of 3 pairs.
    np.testing.assert_allclose(col["clustering"], [1, 1, 1 / 3, 0], rtol=1e-6)
    np.testing.assert_allclose(col["nb_log_degree_mean"][3], np.log1p(3), rtol=1e-6)


def test_spectral_embedding_is_reproducible_and_orthonormal(planted: NodeDataset) -> None:
    ei = planted.data["user", "pays", "user"].edge_index
    n = planted.num_nodes
    a, names = spectral_embedding(ei, n, dims=8)
    b, _ = spectral_embedding(ei, n, dims=8)
    assert a.shape == (n, 8) and names[0] == "spectral_0"
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.T @ a, np.eye(8), atol=1e-4)
    # The leading eigenvector of D^-1/2 A D^-1/2 on a connected graph is sqrt(degree), normalised
    # (degree in the simple graph: repeated edges count once).
    pairs = np.unique(np.sort(ei.numpy().T, axis=1), axis=0)
    deg = np.bincount(pairs.ravel(), minlength=n).astype(float)
    np.testing.assert_allclose(np.abs(a[:, 0]), np.sqrt(deg / deg.sum()), atol=1e-4)


def test_label_features_never_read_own_label(planted: NodeDataset) -> None:
    train = planted.splits[0].train
    # The smoothing prior is one dataset-wide constant; fix it so only per-node reads differ.
    before, names = label_features(planted, train, hops=2, prior=0.15)
    flipped = planted.y.copy()
    node = int(np.flatnonzero(train & (planted.y >= 0))[0])
    flipped[node] = 1 - flipped[node]
    other = NodeDataset(
        planted.name, planted.data, planted.target, flipped, planted.feature_names, planted.node_ids
    )
    after, _ = label_features(other, train, hops=2, prior=0.15)
    np.testing.assert_allclose(before[node], after[node], err_msg=str(names))
    # Non-training labels are never read at all.
    hidden = flipped.copy()
    hidden[~train & (hidden >= 0)] = 1 - hidden[~train & (hidden >= 0)]
    other.y = hidden
    np.testing.assert_allclose(label_features(other, train, hops=2, prior=0.15)[0], after)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("logreg", {}),
        ("gbdt", {"max_rounds": 300, "patience": 30}),
        (
            "gbdt",
            {
                "max_rounds": 300,
                "patience": 30,
                "refit": False,
                "features": FeatureOptions(neighbour_hops=1, label_hops=0),
            },
        ),
        ("sage", {"hidden": 16, "epochs": 60, "patience": 20}),
        ("sage", {"hidden": 16, "epochs": 60, "patience": 20, "loss": "focal"}),
        ("bwgnn", {"hidden": 16, "epochs": 60, "patience": 20}),
        ("bwgnn", {"hidden": 16, "epochs": 60, "patience": 20, "homogeneous": True}),
    ],
)
def test_scorers_learn_planted_signal(planted: NodeDataset, name: str, kwargs: dict) -> None:
    split = planted.splits[0]
    model = make_model(name, seed=0, **kwargs).fit(planted, split)
    scores = model.predict_proba(planted)
    assert scores.shape == (planted.num_nodes,)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert model.validation_scores_.shape == (int(split.val.sum()),)
    assert model.feature_names and isinstance(model.config, dict) and model.config["name"] == name
    y = planted.y[split.test]
    ap = average_precision_score(y, scores[split.test])
    base = y.mean()
    # The own feature alone gives little; graph-aware models should find the ring.
    floor = 1.5 * base if name == "logreg" else 3 * base
    assert ap > floor, (name, ap, base)


def test_stack_and_blend_run_and_pickle(planted: NodeDataset) -> None:
    split = planted.splits[0]
    small = {"max_rounds": 200, "patience": 20}
    stack = StackedScorer(
        base=make_model("gbdt", refit=False, **small), folds=3, second=make_model("gbdt", **small)
    ).fit(planted, split)
    assert "pays_score_mean" in stack.feature_names
    blend = BlendScorer([make_model("logreg"), make_model("gbdt", **small)]).fit(planted, split)
    assert abs(blend.weights_.sum() - 1) < 1e-9
    for model in (stack, blend):
        restored = pickle.loads(pickle.dumps(model))
        np.testing.assert_allclose(restored.predict_proba(planted), model.predict_proba(planted))


def test_make_model_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        make_model("nope")


def test_k_hop_data_keeps_the_neighbourhood(planted: NodeDataset) -> None:
    sub, idx = k_hop_data(planted.data, "user", node=5, hops=1)
    ei = planted.data["user", "pays", "user"].edge_index
    expected = {5, *ei[0, ei[1] == 5].tolist()}
    assert sub["user"].num_nodes == len(expected)
    torch.testing.assert_close(sub["user"].x[idx], planted.data["user"].x[5])


def test_a_pickled_gnn_holds_only_cpu_tensors(planted: NodeDataset) -> None:
    """What a registry saves loads on a host without CUDA: no tensor in the pickle names a GPU."""
    model = make_model("bwgnn", seed=0, epochs=5, patience=5).fit(planted, planted.splits[0])
    assert all(t.device.type == "cpu" for t in model.state_dict()["weights"].values())
    loaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(loaded.predict_proba(planted), model.predict_proba(planted), rtol=1e-6)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: checks GPU-trained models load and score on the CPU"
)
def test_gpu_trained_gnn_scores_like_the_cpu_and_loads_without_cuda(
    planted: NodeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu = make_model("bwgnn", seed=0, epochs=30, patience=30, device="cuda").fit(planted, planted.splits[0])
    cpu = make_model("bwgnn", seed=0, epochs=30, patience=30, device="cpu").fit(planted, planted.splits[0])
    # Same seed and data; kernels differ in float order, so scores agree to a tolerance.
    np.testing.assert_allclose(gpu.predict_proba(planted), cpu.predict_proba(planted), atol=5e-2)
    assert next(gpu.module_.parameters()).device.type == "cuda"  # the live model stays on the GPU
    blob = pickle.dumps(gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = pickle.loads(blob)
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(planted), gpu.predict_proba(planted), atol=1e-4)
