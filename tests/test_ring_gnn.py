"""Ring subgraph GNN (its graphs, training, the combined ring model) and rings over 60 members."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import Batch

import graphrisk.synthetic.rings as planted
from gnn.rings.candidates import (
    Candidates,
    ClusterConfig,
    build_user_graph,
    find_candidates,
    split_component,
)
from gnn.rings.features import cluster_features
from gnn.rings.model import (
    GNN_COLUMN,
    RingModel,
    best_ring_match,
    cluster_labels,
    fit_ring_model,
    ring_inputs,
    train_ring_model,
)
from gnn.rings.run import find_rings
from gnn.rings.subgraph_gnn import (
    EDGE_DIM,
    EDGE_RELS,
    NODE_DIM,
    GNNConfig,
    RingGNN,
    build_ring_graphs,
    fit_ring_gnn,
)
from graphrisk.arrow import arrow_to_pandas
from graphrisk.config import load_settings
from graphrisk.errors import ConfigError
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType
from graphrisk.synthetic import generate
from pipelines.event_tables import snapshot_tables
from pipelines.snapshot import edge_schema, node_schema

torch.set_num_threads(1)
HOUR = 3_600_000


def _tables(
    users: pd.DataFrame, links: dict[RelType, pd.DataFrame]
) -> tuple[dict[NodeLabel, pd.DataFrame], dict[RelType, pd.DataFrame]]:
    nodes = {lab: arrow_to_pandas(node_schema(lab).empty_table()) for lab in NodeLabel}
    nodes[NodeLabel.USER] = users.assign(country="GB")
    edges = {rel: arrow_to_pandas(edge_schema().empty_table()) for rel in EDGE_TYPES}
    for rel, df in links.items():
        edges[rel] = df
    return nodes, edges


def _edges(src: list[str], dst: list[str], first: list[int] | int = 0, amount: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"src": src, "dst": dst, "count": 2, "first_seen": first, "last_seen": 10 * HOUR,
         "amount_total": amount, "amount_max": amount}
    )  # fmt: skip


def _users(n: int, onboarded: np.ndarray | int = 0) -> pd.DataFrame:
    on = np.broadcast_to(np.asarray(onboarded, dtype=np.int64), (n,))
    return pd.DataFrame(
        {"id": [f"u{i}" for i in range(n)], "first_seen": on, "last_seen": 10 * HOUR, "event_count": 5,
         "onboarded_at": on}
    )  # fmt: skip


def test_ring_graph_holds_members_shared_identifiers_and_inside_transfers() -> None:
    # Cluster {u0, u1, u2}: u0, u1 share device d0; u2 holds its own device only; u0 -> u2 sends money;
    # u3 is outside and shares d0 too (its user count is 3, two of them inside).
    users = _users(4)
    dev = _edges(["u0", "u1", "u2", "u3"], ["d0", "d0", "d1", "d0"])
    tr = _edges(["u0", "u3"], ["u2", "u0"], first=HOUR, amount=250.0)
    nodes, edges = _tables(users, {RelType.USED_DEVICE: dev, RelType.TRANSFERRED_TO: tr})
    g = build_user_graph(nodes, edges)
    cand = Candidates(graph=g, members=[np.array([0, 1, 2])], views=["identity"])
    (data,) = build_ring_graphs(cand, nodes, edges)
    assert data.x.shape == (4, NODE_DIM)  # three members, one shared identifier (d1 is not shared)
    assert data.member.tolist() == [True, True, True, False]
    assert data.edge_attr.shape[1] == EDGE_DIM
    # Two holding links and one transfer, each in both directions; u3's transfer is outside.
    assert data.edge_index.shape[1] == 6
    rel = data.edge_attr[:, : len(EDGE_RELS)].argmax(1)
    assert int((rel == EDGE_RELS.index(RelType.TRANSFERRED_TO)).sum()) == 2
    assert int((rel == EDGE_RELS.index(RelType.USED_DEVICE)).sum()) == 4
    # The identifier node knows its user count over the whole graph (3), not only the ring's (2).
    ident = data.x[3]
    assert ident[1 + EDGE_RELS.index(RelType.USED_DEVICE)] == 1.0
    assert torch.isclose(ident[-6], torch.log1p(torch.tensor(3.0)))
    assert torch.isclose(ident[-5], torch.log1p(torch.tensor(2.0)))
    # Edge times are hours before the decision time (the tables' end, 10 h): never negative.
    o = len(EDGE_RELS)
    assert (data.edge_attr[:, o + 3 : o + 5] >= 0).all()
    assert torch.isclose(data.edge_attr[rel == EDGE_RELS.index(RelType.TRANSFERRED_TO), o + 4],
                         torch.log1p(torch.tensor(9.0))).all()  # fmt: skip


def _toy_graphs(n: int, seed: int) -> tuple[list, np.ndarray]:
    """Rings of 4-8 members: colluding ones share one device across all members (a star through
    one identifier), honest ones share identifiers pairwise only; sizes overlap on purpose."""
    rng = np.random.default_rng(seed)
    users, devs, y, members, base = [], [], [], [], 0
    for c in range(n):
        k = int(rng.integers(4, 9))
        ids = [f"u{base + i}" for i in range(k)]
        lab = int(c % 4 == 0)
        if lab:
            devs += [(u, f"farm{c}") for u in ids]
        else:
            devs += [(ids[i], f"pair{c}-{i // 2}") for i in range(k)]
        users += ids
        members.append(np.arange(base, base + k))
        y.append(lab)
        base += k
    nodes, edges = _tables(_users(len(users)), {RelType.USED_DEVICE: _edges([a for a, _ in devs],
                                                                          [b for _, b in devs])})  # fmt: skip
    g = build_user_graph(nodes, edges)
    cand = Candidates(graph=g, members=members, views=["identity"] * n)
    return build_ring_graphs(cand, nodes, edges), np.array(y)


def test_ring_gnn_batches_and_learns_a_structure_the_sizes_do_not_give() -> None:
    graphs, y = _toy_graphs(80, seed=0)
    model = RingGNN(hidden=16, layers=2)
    batch = Batch.from_data_list(graphs[:5])
    assert model(batch).shape == (5,) and model.embedding(batch).shape == (5, 16)
    scorer, oof = fit_ring_gnn(graphs, y, GNNConfig(hidden=16, layers=2, epochs=25, batch_size=16), folds=3)
    test_graphs, test_y = _toy_graphs(40, seed=1)
    p = scorer.predict(test_graphs)
    assert ((p >= 0.5) == (test_y == 1)).mean() >= 0.9
    assert len(oof) == len(y) and scorer.metrics["oof_auprc"] >= 0.6  # chance: 0.25
    # Stored device-independently: the state dict loads on the CPU and scores identically.
    assert np.allclose(scorer.logits(test_graphs), scorer.logits(test_graphs))


def test_combined_ring_model_pickles_and_a_trees_model_stays_as_it_was(tmp_path: Path) -> None:
    graphs, y = _toy_graphs(60, seed=2)
    rng = np.random.default_rng(0)
    feats = pd.DataFrame({"size": [float(len(g.member)) for g in graphs], "noise": rng.random(len(y))})
    cfg = GNNConfig(hidden=8, layers=2, epochs=10, batch_size=16)
    combined = fit_ring_model(feats, y, graphs, method="combined", gnn_config=cfg)
    assert combined.method == "combined" and GNN_COLUMN in combined.feature_names
    combined.save(tmp_path / "m.pkl")
    loaded = RingModel.load(tmp_path / "m.pkl")
    x = feats.assign(**{GNN_COLUMN: loaded.gnn.logits(graphs)})
    assert np.allclose(loaded.predict(x), combined.predict(x))
    # A trees-only model (and one pickled before the GNN existed: no "gnn" in its state) needs
    # no graphs: ring_inputs hands its features back unchanged.
    trees = train_ring_model(feats, y)
    del trees.__dict__["gnn"]
    assert trees.method == "trees"
    assert ring_inputs(trees, feats, None, {}, {}) is feats  # type: ignore[arg-type]
    auto = fit_ring_model(feats, y, graphs, method="auto", gnn_config=cfg)
    assert {"auto_trees_val_auprc", "auto_combined_val_auprc", "gnn_oof_auprc"} <= set(auto.metrics)
    kept_combined = auto.metrics["auto_combined_val_auprc"] > auto.metrics["auto_trees_val_auprc"]
    assert auto.metrics["auto_chose_combined"] == float(kept_combined)
    assert auto.method == ("combined" if kept_combined else "trees")
    with pytest.raises(ValueError):
        fit_ring_model(feats, y, None, method="combined")


def test_onboarding_burst_links_through_a_hub_but_a_busy_ip_still_does_not() -> None:
    # 200 honest users on one public IP, onboarded over 200 days elsewhere; 150 farm accounts
    # opened through one proxy IP within 5 hours. Both IPs are far above the cut-off.
    rng = np.random.default_rng(0)
    n_honest, n_farm = 200, 150
    on = np.r_[np.arange(n_honest) * 24 * HOUR, 100 * 24 * HOUR + rng.integers(0, 5 * HOUR, n_farm)]
    users = _users(n_honest + n_farm, on)
    ids = users["id"].tolist()
    ip = _edges(ids[:n_honest] + ids[n_honest:], ["ip-cafe"] * n_honest + ["ip-proxy"] * n_farm,
                first=list(on[:n_honest] + 5 * HOUR) + list(on[n_honest:]))  # fmt: skip
    nodes, edges = _tables(users, {RelType.USED_IP: ip})
    g = build_user_graph(nodes, edges, rels=(RelType.USED_IP,), transfers=False)
    assert g.dropped_hubs["USED_IP"] == 1  # the café's IP
    assert len(g.a) == n_farm * (n_farm - 1) // 2  # the farm's accounts, and only they, link
    assert g.a.min() >= n_honest


def test_dense_block_over_max_size_is_kept_whole_and_a_sparse_one_is_split() -> None:
    rng = np.random.default_rng(0)
    n = 200
    i, j = np.triu_indices(n, 1)
    cfg = ClusterConfig()
    dense = rng.random(len(i)) < 0.4
    parts = split_component(np.arange(n), i[dense], j[dense], np.ones(int(dense.sum())), cfg)
    assert len(parts) == 1 and len(parts[0]) == n
    # Four sparse groups of 50 bridged by a few links: split, as before.
    group = np.arange(n) // 50
    sparse = rng.random(len(i)) < np.where(group[i] == group[j], 0.15, 0.002)
    parts = split_component(np.arange(n), i[sparse], j[sparse], np.ones(int(sparse.sum())), cfg)
    assert max(len(p) for p in parts) <= cfg.max_size


@pytest.fixture(scope="module")
def farm_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10k-user world whose one device farm has 300 accounts (the typology's size range set)."""
    out = tmp_path_factory.mktemp("farm")
    mp = pytest.MonkeyPatch()
    mp.setitem(planted.SIZES, "device_farm", (300, 300, 0.5))
    try:
        generate(out, users=10000, seed=5, days=14)
    finally:
        mp.undo()
    return out


@pytest.mark.slow
def test_device_farm_of_300_is_one_candidate_and_scored(farm_world: Path, tmp_path: Path) -> None:
    settings = load_settings(environment="test")
    labels = pd.read_parquet(farm_world / "labels/users.parquet")
    farm = labels[labels["typology"] == "device_farm"]
    assert farm["ring_id"].nunique() == 1 and len(farm) == 300
    nodes, edges = snapshot_tables(farm_world / "events", settings)
    cand = find_candidates(nodes, edges)
    match = best_ring_match(cand, labels)
    best = match[match["ring_id"] == farm["ring_id"].iloc[0]]["jaccard"]
    assert best.max() >= 0.8, best.sort_values().tail()
    farm_cluster = int(best.idxmax())
    assert len(cand.members[farm_cluster]) > 250
    # Scored by a ring model trained on an ordinary world (rings of 3-40): flagged.
    train = tmp_path / "train"
    generate(train, users=8000, seed=41, days=14)
    tn, te = snapshot_tables(train / "events", settings)
    tc = find_candidates(tn, te)
    model = train_ring_model(
        cluster_features(tc, tn, te), cluster_labels(tc, pd.read_parquet(train / "labels/users.parquet"))
    )
    score = model.predict(cluster_features(cand, nodes, edges).iloc[[farm_cluster]])[0]
    assert score >= model.threshold
    graphs = build_ring_graphs(cand, nodes, edges)
    assert graphs[farm_cluster].member.sum() == len(cand.members[farm_cluster])


@pytest.mark.slow
def test_find_rings_trains_saves_and_serves_a_combined_ring_model(tmp_path: Path) -> None:
    world = tmp_path / "world"
    generate(world, users=4000, seed=31, days=10)
    settings = load_settings(environment="test", ring_method="combined").model_copy(
        update={"data_dir": tmp_path / "data"}
    )
    tables = snapshot_tables(world / "events", settings)
    labels = pd.read_parquet(world / "labels/users.parquet")
    reg = tmp_path / "reg"
    # The method comes from the settings (GRAPHRISK_RING_METHOD) when find_rings is not given one.
    trained = find_rings(settings, None, labels=labels, tables=tables, registry_dir=reg, now_ms=1_000)
    assert trained.model_method == "combined"
    assert GNN_COLUMN in RingModel.load(reg / "model.pkl").feature_names
    assert "gnn_oof_auprc" in trained.model_metrics
    # Scoring with the saved model (no labels) builds the subgraphs for its GNN column and passes
    # the input check (the reference was fitted with that column).
    served = find_rings(settings, None, tables=tables, registry_dir=reg, now_ms=2_000)
    assert not served.input_check.get("refuse", False)
    assert served.flagged == trained.flagged and served.kept == trained.kept


def test_ring_method_is_a_validated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAPHRISK_CONFIG", raising=False)
    monkeypatch.delenv("GRAPHRISK_RING_METHOD", raising=False)
    assert load_settings().ring_method == "trees"
    monkeypatch.setenv("GRAPHRISK_RING_METHOD", "auto")
    assert load_settings().ring_method == "auto"
    monkeypatch.setenv("GRAPHRISK_RING_METHOD", "gnn")
    with pytest.raises(ConfigError, match="ring_method"):
        load_settings()
