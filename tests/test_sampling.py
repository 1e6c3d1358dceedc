"""CSR neighbour sampling, layer-wise inference and mini-batch training (gnn/sampling.py)."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score
from torch_geometric.data import HeteroData

from gnn.data.dataset import NodeDataset
from gnn.models import BWGNN, HeteroSAGE, make_model
from gnn.sampling import CSR, CSRGraph, CSRNeighborLoader, CSRNeighborSampler, sample_neighbors
from tests.test_gnn_models import inputs, planted_graph

torch.set_num_threads(1)

UU = ("user", "pays", "user")
IU = ("ident", "holds", "user")
UI = ("user", "rev_holds", "ident")


def random_graph(seed: int, n_user: int, n_ident: int, e_uu: int, e_iu: int) -> HeteroData:
    """Users and identifiers with random (multi-)edges and a few attributes to slice."""
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["user"].x = torch.randn(n_user, 3, generator=gen)
    data["user"].y = torch.arange(n_user)  # a second node attribute: sliced alongside x
    data["ident"].num_nodes = n_ident
    data[UU].edge_index = torch.randint(0, n_user, (2, e_uu), generator=gen)
    data[UU].edge_attr = torch.arange(e_uu, dtype=torch.float32)[:, None]
    iu = torch.stack(
        [torch.randint(0, n_ident, (e_iu,), generator=gen), torch.randint(0, n_user, (e_iu,), generator=gen)]
    )
    data[IU].edge_index = iu
    data[UI].edge_index = iu.flip(0)
    return data


graphs = st.builds(
    random_graph,
    seed=st.integers(0, 10_000),
    n_user=st.integers(1, 60),
    n_ident=st.integers(1, 20),
    e_uu=st.integers(0, 300),
    e_iu=st.integers(0, 200),
)
fanouts = st.lists(st.integers(-1, 12), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(
    data=graphs, fanout=fanouts, seed=st.integers(0, 2**31), batch=st.integers(1, 70), hub=st.integers(1, 4)
)
def test_sampled_batches_hold_true_edges_and_full_quotas(
    data: HeteroData, fanout: list[int], seed: int, batch: int, hub: int
) -> None:
    n_user = data["user"].num_nodes
    loader = CSRNeighborLoader(
        data, fanout, ("user", None), batch_size=batch, shuffle=True, seed=seed, hub_factor=hub
    )
    graph = loader.sampler.graph
    seen = []
    for b in loader:
        size = b["user"].batch_size
        seeds = loader.input_nodes[b["user"].input_id]
        # Seeds come first, in the loader's order.
        assert torch.equal(b["user"].n_id[:size], seeds)
        seen.append(seeds)
        for nt in ("user", "ident"):
            n_id = b[nt].n_id
            assert n_id.unique().numel() == n_id.numel() == b[nt].num_nodes
            assert sum(b[nt].num_sampled_nodes) == n_id.numel()
        # Node attributes are the global rows of the batch's nodes.
        assert torch.equal(b["user"].x, data["user"].x[b["user"].n_id])
        assert torch.equal(b["user"].y, b["user"].n_id)
        for et in (UU, IU, UI):
            ei, e_id = b[et].edge_index, b[et].e_id
            # Every sampled edge exists in the graph: relabelled ends map back to edge e_id's ends.
            glob = torch.stack([b[et[0]].n_id[ei[0]], b[et[2]].n_id[ei[1]]])
            assert torch.equal(glob, data[et].edge_index[:, e_id])
            assert e_id.unique().numel() == e_id.numel()  # no edge twice
            assert sum(b[et].num_sampled_edges) == ei.shape[1]
            # Each node reached at hop h drew min(k_h, in-degree) of its in-edges (all for k=-1);
            # nodes reached at the last hop drew none.
            deg = graph[et].in_degree()[b[et[2]].n_id]
            got = torch.bincount(ei[1], minlength=b[et[2]].num_nodes)
            bounds = np.cumsum([0, *b[et[2]].num_sampled_nodes])
            for hop, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                k = fanout[hop] if hop < len(fanout) else 0
                want = deg[lo:hi] if k < 0 else deg[lo:hi].clamp_max(k)
                assert torch.equal(got[lo:hi], want), (et, hop, k)
        assert torch.equal(b[UU].edge_attr[:, 0].long(), b[UU].e_id)
    # One pass visits every seed once.
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(n_user))


@settings(max_examples=25, deadline=None)
@given(data=graphs, fanout=fanouts, seed=st.integers(0, 2**31))
def test_sampling_is_deterministic_with_a_seed(data: HeteroData, fanout: list[int], seed: int) -> None:
    def batches(s: int) -> list[HeteroData]:
        return list(CSRNeighborLoader(data, fanout, ("user", None), batch_size=7, shuffle=True, seed=s))

    for a, b in zip(batches(seed), batches(seed), strict=True):
        for nt in ("user", "ident"):
            assert torch.equal(a[nt].n_id, b[nt].n_id)
        for et in (UU, IU, UI):
            assert torch.equal(a[et].edge_index, b[et].edge_index) and torch.equal(a[et].e_id, b[et].e_id)


@pytest.mark.parametrize(("degree", "k", "hub_factor"), [(10, 3, 4), (1000, 5, 4), (9, 8, 1)])
def test_sampling_is_uniform_without_replacement(degree: int, k: int, hub_factor: int) -> None:
    """Both the sort path (k < degree <= hub_factor k) and the rejection path for hubs draw
    distinct neighbours, each with probability k / degree."""
    csr = CSR.from_edge_index(
        torch.stack([torch.arange(degree), torch.zeros(degree, dtype=torch.long)]), degree, 1
    )
    reps = 4000
    nodes = torch.zeros(reps, dtype=torch.long)  # the same node many times in one call
    row, edge = sample_neighbors(csr, nodes, k, torch.Generator().manual_seed(0), hub_factor)
    assert torch.equal(torch.bincount(row, minlength=reps), torch.full((reps,), k))
    per_row = csr.indices[edge].view(reps, k)
    assert (per_row.sort(1).values.diff(dim=1) > 0).all()  # distinct within a draw
    freq = torch.bincount(per_row.flatten(), minlength=degree).double() / reps
    expected = k / degree
    # Binomial standard error of a frequency; 5 sigma keeps the test stable.
    assert (freq - expected).abs().max() < 5 * np.sqrt(expected * (1 - expected) / reps)


def test_sampler_rejects_repeated_seeds_and_resets_its_map() -> None:
    data = random_graph(0, 30, 5, 100, 50)
    sampler = CSRNeighborSampler(data, [3, 3])
    with pytest.raises(ValueError, match="distinct"):
        sampler.sample("user", torch.tensor([1, 1]))
    sampler.sample("user", torch.tensor([4, 2]))
    assert all((m == -1).all() for m in sampler._local.values())


def test_per_relation_fanout() -> None:
    data = random_graph(1, 40, 6, 200, 80)
    b = CSRNeighborSampler(data, {UU: [0, 0], IU: [2, 0], UI: [0, 1]}).sample("user", torch.arange(5))
    assert b[UU].edge_index.shape[1] == 0 and b[UU].num_sampled_edges == [0, 0]
    assert b[IU].num_sampled_edges[1] == 0 and b[UI].num_sampled_edges[0] == 0
    with pytest.raises(ValueError, match="not in the graph"):
        CSRNeighborSampler(data, {("a", "b", "c"): [1]})


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("chunk", [7, 1000])
def test_layerwise_sage_equals_full_batch(layers: int, chunk: int) -> None:
    ds = planted_graph(n=300, seed=layers)
    x, ei = inputs(ds)
    x["device"] = torch.randn(310, 1)
    model = HeteroSAGE({"user": 4, "device": 1}, (list(x), list(ei)), "user", 16, layers).eval()
    with torch.no_grad():
        full = model(x, ei)
    graph = CSRGraph(ei, {"user": 300, "device": 310})
    torch.testing.assert_close(model.layerwise_inference(x, graph, chunk), full, atol=1e-5, rtol=0)
    assert model.layerwise_embeddings(x, graph, chunk).shape == (300, 16 * (layers + 1))


@pytest.mark.parametrize("homogeneous", [True, False])
@pytest.mark.parametrize("order", [1, 3])
def test_layerwise_bwgnn_equals_full_batch(homogeneous: bool, order: int) -> None:
    ds = planted_graph(n=300, seed=order)
    x, ei = inputs(ds)
    ei[("user", "rev_pays", "user")] = ei[UU][:, :400].flip(0)
    rels = [UU, ("user", "rev_pays", "user")]
    model = BWGNN(4, rels, "user", hidden=16, order=order, homogeneous=homogeneous).eval()
    with torch.no_grad():
        full = model(x, ei)
    graph = CSRGraph(ei, {"user": 300, "device": 310})
    torch.testing.assert_close(model.layerwise_inference(x, graph, 11), full, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def planted() -> NodeDataset:
    return planted_graph()


def test_minibatch_training_learns_planted_signal(planted: NodeDataset) -> None:
    split = planted.splits[0]
    model = make_model(
        "sage", seed=0, hidden=16, epochs=30, patience=10, batch_size=64, num_neighbors=[10, 5]
    ).fit(planted, split)
    assert model.config["batch_size"] == 64 and model.config["num_neighbors"] == [10, 5]
    scores = model.predict_proba(planted)
    assert scores.shape == (planted.num_nodes,) and np.isfinite(scores).all()
    y = planted.y[split.test]
    ap = average_precision_score(y, scores[split.test])
    assert ap > 3 * y.mean(), ap
    # Layer-wise scoring (mini-batch mode) equals a full-batch forward of the same weights.
    model.batch_size = None
    np.testing.assert_allclose(model.predict_proba(planted), scores, atol=1e-5)
    model.batch_size = 64
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(planted), scores, atol=1e-6)


def test_full_batch_config_is_unchanged() -> None:
    assert "batch_size" not in make_model("sage").config


def test_bwgnn_trains_on_minibatches_and_scores_layerwise(planted: NodeDataset) -> None:
    """BWGNN runs in mini-batch mode (sampled degrees: an approximation, see its docstring)
    and its layer-wise scores equal a full-batch forward of the same weights."""
    model = make_model("bwgnn", seed=0, hidden=8, epochs=3, patience=3, batch_size=128).fit(
        planted, planted.splits[0]
    )
    scores = model.predict_proba(planted)
    model.batch_size = None
    np.testing.assert_allclose(model.predict_proba(planted), scores, atol=1e-5)
