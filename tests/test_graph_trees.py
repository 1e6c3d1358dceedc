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
from gnn.data.entity_graph import EDGE_ATTR_NAMES, HOUR_MS, entity_graph_from_tables
from gnn.device import move_scorer, resolve_device
from gnn.models import FeatureOptions, GraphTreesScorer, make_model
from gnn.models.gbdt import GBDTScorer
from gnn.models.hetero_sage import HeteroSAGE
from gnn.models.train import raw_edges
from gnn.online_features import IdentifierLinks, star_dataset
from gnn.sampling import CSRGraph
from gnn.training import candidate_kwargs, device_kwargs, serving_gaps
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType
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
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> tuple[NodeDataset, NodeDataset]:
    """A small synthetic world's entity graph twelve hours before its end and at its end."""
    from graphrisk.config import load_settings
    from graphrisk.synthetic.generator import generate
    from pipelines.event_log import FactLog, tables_as_of
    from pipelines.event_tables import read_events

    out = tmp_path_factory.mktemp("graph-trees-world")
    generate(out, users=400, seed=11, days=2, fraud_rate=0.08)
    events = out / "events"
    log = read_events(events, load_settings())
    labels = pd.read_parquet(next(Path(out / "labels").glob("users*.parquet")))
    facts = FactLog.of(log.clean)
    t_end = int(pa_max_time(log.clean)) + 1
    t_mid = t_end - 12 * HOUR_MS
    early = entity_graph_from_tables(
        *tables_as_of(facts, t_mid), labels, split="random", seeds=(0,), as_of_ms=t_mid
    )
    late = entity_graph_from_tables(
        *tables_as_of(facts, t_end), labels, split="random", seeds=(0,), as_of_ms=t_end
    )
    late.notes.append(f"as_of={t_end}")
    return early, late


def pa_max_time(table: object) -> int:
    """The latest event time (epoch ms) of a clean event table."""
    import pyarrow.compute as pc

    return int(pc.max(table["time"]).as_py())


def test_entity_graph_edges_carry_times_and_a_new_snapshot_scores(
    snapshots: tuple[NodeDataset, NodeDataset],
) -> None:
    early, late = snapshots
    assert late.num_nodes > early.num_nodes
    et = ("User", "USED_DEVICE", "Device")
    ea = early.data[et].edge_attr
    assert ea.shape == (early.data[et].edge_index.shape[1], len(EDGE_ATTR_NAMES))
    assert float(early.data[et].edge_age_h.min()) >= 0  # as-of tables hold only earlier edges
    torch.testing.assert_close(ea[:, 0], early.data[et].edge_age_h)
    assert torch.equal(early.data["Device", "rev_USED_DEVICE", "User"].edge_attr, ea)
    model = small_combo(folds=2).fit(early, early.splits[0])
    assert model.gnn_.edge_dims_  # the GNN read the edge times
    known = np.isin(late.node_ids, early.node_ids[early.splits[0].train])
    scores = model.predict_proba(late, label_mask=known)
    assert scores.shape == (late.num_nodes,) and np.isfinite(scores).all()
    assert len(set(np.round(scores, 6))) > 10


def star_of_user(ds: NodeDataset, u: int, now_ms: int) -> NodeDataset:
    """User ``u``'s neighbourhood as the applicant path builds it (gnn.online_features.star_dataset):
    its identifiers, each with the other users on it."""
    x = ds.data["User"].x.numpy()
    identifiers, neighbour_x = [], []
    for rel, et in EDGE_TYPES.items():
        if et.dst == NodeLabel.USER:
            continue
        ei = ds.data[et.src.value, rel.value, et.dst.value].edge_index
        ids = ei[1][ei[0] == u]
        if len(ids) == 0:
            continue
        node = int(ids[0])
        others = ei[0][(ei[1] == node) & (ei[0] != u)].numpy()
        own = ds.data[et.dst.value].x[node].double().numpy()
        # The star counts the applicant as new on the identifier: one user and event fewer before it.
        identifiers.append(
            IdentifierLinks(
                rel, own[1] - 1, now_ms - own[2] * HOUR_MS, np.arange(len(others)), np.zeros(len(others))
            )
        )
        neighbour_x.append(x[others])
    nx = np.concatenate(neighbour_x)
    return star_dataset(x[u], ds.feature_names, identifiers, nx, np.full(len(nx), -1), now_ms)


def test_applicant_star_gets_the_batch_columns_when_the_gnn_can_serve_it(
    snapshots: tuple[NodeDataset, NodeDataset],
) -> None:
    """A combination whose GNN has 2 layers, no label features and no edge times (serves_applicants)
    scores a user's star exactly as the batch graph does: same GNN columns, same score."""
    _, late = snapshots
    now = int(late.notes[-1].split("=")[1])
    net = make_model("sage", 0, hidden=16, epochs=12, patience=12, embed_dim=4,
                     features=FeatureOptions(neighbour_hops=0, label_hops=0))  # fmt: skip
    trees = GBDTScorer(refit=False, max_rounds=40, patience=10, n_jobs=1,
                       features=FeatureOptions(label_hops=0, history_labels=False))  # fmt: skip
    model = make_model("gnn+gbdt", 0, gnn=net, trees=trees, folds=2)
    assert model.serves_applicants
    model.fit(late, late.splits[0])
    # A user with one identifier per relation, sharing one with someone; its card, merchant
    # and transfer links dropped (an applicant has none yet).
    data = late.data.clone()
    shared = {
        rel: data["User", rel.value, et.dst.value].edge_index
        for rel, et in EDGE_TYPES.items()
        if et.dst != NodeLabel.USER and rel not in (RelType.USED_CARD, RelType.PAID)
    }
    users = []
    for u in range(late.num_nodes):
        per_rel = [ei[1][ei[0] == u] for ei in shared.values()]
        if all(len(i) <= 1 for i in per_rel) and any(
            len(i) == 1 and int((ei[1] == i[0]).sum()) > 1
            for i, ei in zip(per_rel, shared.values(), strict=True)
        ):
            users.append(u)
    assert users, "no user shares an identifier in this world"
    u = users[0]
    for key in data.edge_types:
        if key[1] in (
            "USED_CARD",
            "PAID",
            "TRANSFERRED_TO",
            "rev_USED_CARD",
            "rev_PAID",
            "rev_TRANSFERRED_TO",
        ):
            ei = data[key].edge_index
            user_side = 0 if key[0] == "User" else 1
            keep = ei[user_side] != u
            if key[0] == key[2] == "User":
                keep &= ei[1 - user_side] != u
            for attr in ("edge_index",):
                data[key][attr] = ei[:, keep]
            for attr in ("edge_attr", "edge_age_h"):
                data[key][attr] = data[key][attr][keep]
    batch = NodeDataset(**{**vars(late), "data": data})
    star = star_of_user(batch, u, now)
    none = np.zeros(batch.num_nodes, dtype=bool)
    batch_row = model.inputs(batch, label_mask=none)[u]
    star_row = model.inputs(star, label_mask=star.y >= 0)[0]
    np.testing.assert_allclose(star_row, batch_row, rtol=1e-4, atol=1e-4)
    assert model.predict_proba(star, label_mask=star.y >= 0)[0] == pytest.approx(
        model.predict_proba(batch, label_mask=none)[u], abs=1e-5
    )


def test_device_option_and_moving_a_fitted_scorer(fitted: GraphTreesScorer, planted: NodeDataset) -> None:
    assert resolve_device("auto") is None
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="must be one of"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
    # --device reaches the GNNs (through subclasses' **kwargs too), not the trees.
    assert device_kwargs("sage", "cuda") == device_kwargs("gnn+gbdt", "cuda") == {"device": "cuda"}
    assert device_kwargs("gbdt", "cuda") == {} and device_kwargs("sage", None) == {}
    assert candidate_kwargs("gnn+gbdt", "cpu")["device"] == "cpu"
    assert not serving_gaps(make_model("gnn+gbdt", **candidate_kwargs("gnn+gbdt")))  # production variant
    before = fitted.predict_proba(planted)
    assert move_scorer(fitted, "cpu") is fitted
    assert next(fitted.gnn_.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(fitted.predict_proba(planted), before)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: GPU training and scoring against the CPU"
)
def test_gpu_fitted_combination_scores_like_the_cpu(
    planted: NodeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.metrics import average_precision_score

    split = planted.splits[0]
    gpu = small_combo(device="cuda", amp=True).fit(planted, split)
    assert next(gpu.gnn_.module_.parameters()).device.type == "cuda"
    on_gpu = gpu.predict_proba(planted)
    blob = pickle.dumps(gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cpu = pickle.loads(blob).predict_proba(planted)
    # The same model on both: GNN columns agree to float rounding; a tree split lying exactly
    # between the two roundings may send a rare row the other way.
    assert np.mean(np.abs(on_cpu - on_gpu) < 1e-4) > 0.98
    monkeypatch.undo()
    cpu = small_combo().fit(planted, split)  # trained on the CPU, float32: close in quality
    test = split.test & (planted.y >= 0)
    ap_gpu = average_precision_score(planted.y[test], on_gpu[test])
    ap_cpu = average_precision_score(planted.y[test], cpu.predict_proba(planted)[test])
    assert abs(ap_gpu - ap_cpu) < 0.1
