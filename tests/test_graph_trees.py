"""GNN into trees (gnn/models/graph_trees.py): out-of-fold columns, device-free pickles, new graphs
and snapshots, and the edge-time inputs of the heterogeneous GNN."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData

from gnn.data.dataset import NodeDataset
from gnn.data.entity_graph import EDGE_ATTR_NAMES, entity_graph_from_tables
from gnn.models import FeatureOptions, GraphTreesScorer, make_model
from gnn.models.gbdt import GBDTScorer
from gnn.models.hetero_sage import HeteroSAGE
from gnn.models.train import raw_edges
from gnn.sampling import CSRGraph
from tests.test_gnn_models import planted_graph

torch.set_num_threads(1)


def with_edge_times(ds: NodeDataset, seed: int = 0) -> NodeDataset:
    """``ds`` with random edge attributes and ages, a few edges from after the decision time."""
    rng = np.random.default_rng(seed)
    for et in ds.data.edge_types:
        e = ds.data[et].edge_index.shape[1]
        ds.data[et].edge_attr = torch.as_tensor(rng.exponential(50, size=(e, 3)).astype(np.float32))
        ds.data[et].edge_age_h = torch.as_tensor(rng.normal(100, 60, size=e).astype(np.float32))
    return ds


def small_combo(seed: int = 0, folds: int = 2, **gnn: object) -> GraphTreesScorer:
    """A fast gnn+gbdt: a short GNN, few tree rounds."""
    net = make_model(
        "sage",
        seed,
        hidden=16,
        epochs=12,
        patience=12,
        embed_dim=4,
        edge_features=True,
        features=FeatureOptions(neighbour_hops=0, label_hops=1),
        **gnn,
    )
    trees = GBDTScorer(refit=False, max_rounds=40, patience=10, n_jobs=1, seed=seed)
    return make_model("gnn+gbdt", seed, gnn=net, trees=trees, folds=folds)


@pytest.fixture(scope="module")
def planted() -> NodeDataset:
    return with_edge_times(planted_graph(n=300))


@pytest.fixture(scope="module")
def fitted(planted: NodeDataset) -> GraphTreesScorer:
    return small_combo().fit(planted, planted.splits[0])


def test_registered_and_declares_what_it_serves() -> None:
    model = make_model("gnn+gbdt")
    assert isinstance(model, GraphTreesScorer)
    assert model.serves_new_graph
    # The default GNN reads edge times and label features, which an applicant's star lacks.
    assert not model.serves_applicants and "edge times" in model.serving_limit
    static = make_model(
        "gnn+gbdt",
        gnn=make_model("sage", embed_dim=8, features=FeatureOptions(neighbour_hops=0, label_hops=0)),
    )
    assert static.serves_applicants and static.serving_limit == ""


def test_trees_read_the_gnn_columns(fitted: GraphTreesScorer, planted: NodeDataset) -> None:
    assert fitted.feature_names[-5:] == ["gnn_score", "gnn_emb_0", "gnn_emb_1", "gnn_emb_2", "gnn_emb_3"]
    gain = fitted.trees_.booster_.feature_importance("gain")
    assert gain[-5:].sum() > 0  # the planted ring is a graph signal: the trees use the GNN's columns
    scores = fitted.predict_proba(planted)
    assert scores.shape == (planted.num_nodes,) and np.isfinite(scores).all()
    # Validation scores are the served booster's, on rows it did not train on (calibration).
    assert fitted.held_out_mask_ is not None and fitted.held_out_mask_.sum() == len(fitted.held_out_scores_)


def test_training_rows_gnn_columns_are_out_of_fold(planted: NodeDataset) -> None:
    """Flipping one training node's label leaves its GNN columns (score and embedding) exactly as
    they were: the fold model that produced them never read that label, and its embedding basis
    is its own. The served GNN, which did read it, moves."""
    split = planted.splits[0]
    first = small_combo()
    cols = first.out_of_fold_columns(planted, split)
    node = int(np.flatnonzero(split.train & (planted.y == 1))[0])
    flipped = NodeDataset(**{**vars(planted), "y": planted.y.copy()})
    flipped.y[node] = 0
    second = small_combo()
    cols2 = second.out_of_fold_columns(flipped, split)
    np.testing.assert_array_equal(cols2[node], cols[node])
    served = first.gnn_.predict_proba(planted)
    served2 = second.gnn_.predict_proba(flipped)
    assert abs(served2[node] - served[node]) > 1e-6  # the in-fold model did read it
    assert not np.allclose(cols2[~split.train], cols[~split.train])  # rows from the served model move
    assert len(first.basis_agreement_) == 2


def test_pickle_round_trip_scores_identically_on_the_cpu(
    fitted: GraphTreesScorer, planted: NodeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = pickle.dumps(fitted)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = pickle.loads(blob)
    assert all(p.device.type == "cpu" for p in loaded.gnn_.module_.parameters())
    assert loaded.gnn_.state_dict()["weights"]  # state dict on the CPU
    np.testing.assert_array_equal(loaded.predict_proba(planted), fitted.predict_proba(planted))


def test_scores_a_new_graph(fitted: GraphTreesScorer, planted: NodeDataset) -> None:
    other = with_edge_times(planted_graph(n=250, seed=3), seed=3)
    known = np.zeros(other.num_nodes, dtype=bool)  # no label of the new graph was read
    scores = fitted.predict_proba(other, label_mask=known)
    assert scores.shape == (250,) and np.isfinite(scores).all()
    labelled = other.y >= 0
    from sklearn.metrics import average_precision_score

    assert average_precision_score(other.y[labelled], scores[labelled]) > 2 * other.y[labelled].mean()


def test_edges_after_the_decision_time_carry_no_message(planted: NodeDataset) -> None:
    ei, ea = raw_edges(planted, with_attrs=True)
    for et in planted.data.edge_types:
        age = planted.data[et].edge_age_h
        assert ei[et].shape[1] == int((age >= 0).sum()) < age.numel()
        assert ea[et].shape[0] == ei[et].shape[1]
    net = make_model("sage", hidden=8, epochs=3, patience=3, embed_dim=4, edge_features=True)
    net.fit(planted, planted.splits[0])
    base = net.predict_proba(planted)
    # Changing only a future edge's attributes changes nothing; a past edge's does.
    et = ("user", "uses", "device")
    future = planted.data[et].edge_age_h < 0
    changed = NodeDataset(**{**vars(planted), "data": planted.data.clone()})
    changed.data[et].edge_attr = planted.data[et].edge_attr.clone()
    changed.data[et].edge_attr[future] *= 100
    np.testing.assert_array_equal(net.predict_proba(changed), base)
    changed.data[et].edge_attr[~future] *= 100
    assert not np.allclose(net.predict_proba(changed), base)


def test_layerwise_equals_full_batch_with_edge_times() -> None:
    rng = np.random.default_rng(0)
    data = HeteroData()
    data["user"].x = torch.randn(40, 3)
    data["device"].x = torch.randn(15, 2)
    ei = torch.as_tensor(np.stack([rng.integers(0, 40, 90), rng.integers(0, 15, 90)]))
    ea = torch.randn(90, 4)
    eis = {("user", "uses", "device"): ei, ("device", "rev_uses", "user"): ei.flip(0)}
    eas = dict.fromkeys(eis, ea)
    model = HeteroSAGE(
        {"user": 3, "device": 2},
        (["user", "device"], list(eis)),
        "user",
        hidden=8,
        layers=2,
        edge_dims=dict.fromkeys(eis, 4),
        embed_dim=3,
    ).eval()
    x = {"user": data["user"].x, "device": data["device"].x}
    logits, emb = model(x, eis, eas, return_embedding=True)
    graph = CSRGraph(eis, {"user": 40, "device": 15})
    lw_logits, lw_emb = model.layerwise_inference(x, graph, 7, edge_attr_dict=eas, return_embedding=True)
    torch.testing.assert_close(lw_logits, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(lw_emb, emb, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, pd.DataFrame]:
    """A small synthetic world's fact log and user labels."""
    from graphrisk.config import load_settings
    from graphrisk.synthetic.generator import generate
    from pipelines.event_log import FactLog, read_event_log
    from pipelines.refresh import discover_partitions

    out = tmp_path_factory.mktemp("graph-trees-world")
    generate(out, users=400, seed=11, days=2, fraud_rate=0.08)
    events = out / "events"
    log = read_event_log(events, [p.path for p in discover_partitions(events)], load_settings())
    labels = pd.read_parquet(next(Path(out / "labels").glob("users*.parquet")))
    return FactLog.of(log.clean), labels


def test_entity_graph_edges_carry_times_and_a_new_snapshot_scores(world: tuple[object, pd.DataFrame]) -> None:
    from pipelines.event_log import tables_as_of

    facts, labels = world
    t_end = int(max(df["last_seen"].max() for df in tables_as_of(facts, 2**62)[0].values() if len(df))) + 1
    t_mid = t_end - 12 * 3_600_000
    early = entity_graph_from_tables(
        *tables_as_of(facts, t_mid), labels, split="random", seeds=(0,), as_of_ms=t_mid
    )
    late = entity_graph_from_tables(
        *tables_as_of(facts, t_end), labels, split="random", seeds=(0,), as_of_ms=t_end
    )
    assert late.num_nodes > early.num_nodes
    et = ("User", "USED_DEVICE", "Device")
    ea = early.data[et].edge_attr
    assert ea.shape == (early.data[et].edge_index.shape[1], len(EDGE_ATTR_NAMES))
    assert float(early.data[et].edge_age_h.min()) >= 0  # as-of tables hold only earlier edges
    torch.testing.assert_close(ea[:, 0], early.data[et].edge_age_h)
    model = small_combo(folds=2).fit(early, early.splits[0])
    assert model.gnn_.edge_dims_  # the GNN read the edge times
    known = np.isin(late.node_ids, early.node_ids[early.splits[0].train])
    scores = model.predict_proba(late, label_mask=known)
    assert scores.shape == (late.num_nodes,) and np.isfinite(scores).all()
    # The users both snapshots hold score from the same columns definition: nothing depends on
    # the row count.
    assert len(set(np.round(scores, 6))) > 10
