"""Fraud rings: hub cut-offs, Leiden determinism, transfer cycles, stable ids, write-back, quality."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from gnn.rings.candidates import (
    ClusterConfig,
    build_user_graph,
    find_candidates,
    learn_cutoff,
    pairs_within_groups,
    pass_through_pairs,
    split_component,
)
from gnn.rings.features import identifier_usage, transfer_cycles
from gnn.rings.identity import assign_ids
from gnn.rings.run import find_rings
from gnn.rings.transfers import member_scores, pattern_clusters, undirected_adjacency, weighted_triangles
from graphrisk.arrow import arrow_to_pandas
from graphrisk.config import Settings, load_settings
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType
from graphrisk.store import GraphStore
from graphrisk.synthetic import generate
from pipelines.event_log import EdgeTables, NodeTables
from pipelines.event_tables import snapshot_tables
from pipelines.snapshot import edge_schema, node_schema

torch.set_num_threads(1)


def _tables(
    user_ids: list[str], links: dict[RelType, list[tuple[str, str]]]
) -> tuple[dict[NodeLabel, pd.DataFrame], dict[RelType, pd.DataFrame]]:
    nodes = {lab: arrow_to_pandas(node_schema(lab).empty_table()) for lab in NodeLabel}
    nodes[NodeLabel.USER] = pd.DataFrame(
        {
            "id": user_ids,
            "first_seen": 0,
            "last_seen": 1,
            "event_count": 1,
            "onboarded_at": 0,
            "country": "GB",
        }
    )
    edges = {rel: arrow_to_pandas(edge_schema().empty_table()) for rel in EDGE_TYPES}
    for rel, pairs in links.items():
        edges[rel] = pd.DataFrame(
            {"src": [a for a, _ in pairs], "dst": [b for _, b in pairs], "count": 3, "first_seen": 0,
             "last_seen": 1, "amount_total": 500.0, "amount_max": 500.0}
        )  # fmt: skip
    return nodes, edges


def test_hub_cutoff_is_learned_from_the_degree_distribution() -> None:
    cfg = ClusterConfig(hub_quantile=0.99, min_cut=5, max_cut=50)
    # Many identifiers shared by 2-3 users, one by 30: the quantile sits between.
    degrees = np.r_[np.full(500, 2), np.full(300, 3), np.full(2, 30), np.ones(1000, dtype=int)]
    assert 5 <= learn_cutoff(degrees, cfg) < 30
    assert learn_cutoff(np.ones(10, dtype=int), cfg) == cfg.min_cut  # nothing shared
    assert learn_cutoff(np.r_[np.full(10, 400)], cfg) == cfg.max_cut


def test_hub_does_not_glue_honest_users() -> None:
    users = [f"u{i}" for i in range(300)]
    # 100 households of 3 on their own address, all on one public IP.
    lives = [(u, f"a{i // 3}") for i, u in enumerate(users)]
    ip = [(u, "ip-public") for u in users]
    nodes, edges = _tables(users, {RelType.LIVES_AT: lives, RelType.USED_IP: ip})
    g = build_user_graph(nodes, edges, ClusterConfig())
    assert g.dropped_hubs["USED_IP"] == 1 and g.cutoffs["USED_IP"] < 300
    assert len(g.a) == 100 * 3  # only household pairs
    cand = find_candidates(nodes, edges)
    assert cand.num_clusters == 100 and {len(m) for m in cand.members} == {3}


def test_personal_view_keeps_pairs_on_one_phone_or_document() -> None:
    users = [f"u{i}" for i in range(9)]
    nodes, edges = _tables(users, {
        # A pair on one phone, nothing else: too small for the identity view, a personal candidate.
        RelType.HAS_PHONE: [("u0", "p1"), ("u1", "p1"), ("u3", "p2"), ("u4", "p2")],
        # A household of two on one address: no candidate in any view.
        # u3, u4 (one phone) and u5 on one address: an identity triple holds the personal pair.
        RelType.LIVES_AT: [("u6", "h1"), ("u7", "h1"), ("u3", "a2"), ("u4", "a2"), ("u5", "a2")],
        RelType.HAS_DOCUMENT: [("u8", "d8")],
    })  # fmt: skip
    cand = find_candidates(nodes, edges)
    got = sorted(
        (v, sorted(cand.user_ids[m].tolist())) for m, v in zip(cand.members, cand.views, strict=True)
    )
    assert got == [("identity", ["u3", "u4", "u5"]), ("personal", ["u0", "u1"])]


def test_personal_pairs_tied_by_another_link_are_also_one_candidate() -> None:
    # The demo world's missed synthetic-identity ring: two document pairs tied by one shared IP
    # and a fifth member on an address. A path in every view, so the core trim unravels it.
    ring = [f"s{i}" for i in range(5)]
    honest = [f"h{i}" for i in range(5)]
    nodes, edges = _tables(ring + honest, {
        RelType.HAS_DOCUMENT: [("s0", "d1"), ("s2", "d1"), ("s1", "d2"), ("s3", "d2")],
        RelType.USED_IP: [("s1", "ip1"), ("s2", "ip1"), ("h0", "ip2"), ("h4", "ip2")],
        RelType.LIVES_AT: [("s3", "a1"), ("s4", "a1"), ("h0", "a2"), ("h1", "a2")],
        # Two honest couples on their own phones. h0 shares an IP with h4, who has no personal
        # link, so nothing ties the couples: they stay two pairs.
        RelType.HAS_PHONE: [("h0", "p1"), ("h1", "p1"), ("h2", "p2"), ("h3", "p2")],
    })  # fmt: skip
    cand = find_candidates(nodes, edges)
    got = sorted(
        sorted(cand.user_ids[m].tolist())
        for m, v in zip(cand.members, cand.views, strict=True)
        if v == "personal"
    )
    # The joined ring sits beside its two pairs; the honest couples stay pairs only.
    assert got == [["h0", "h1"], ["h2", "h3"], ["s0", "s1", "s2", "s3"], ["s0", "s2"], ["s1", "s3"]]


def test_nested_communities_separate_a_ring_from_the_shop_it_shares() -> None:
    ring = [f"r{i}" for i in range(5)]
    regulars = [f"h{i}" for i in range(8)]
    # The ring's own shop, and an honest shop whose regulars include one ring member: one
    # 13-member component (below max_size), in which the ring is only 5 / 13 (Jaccard 0.38).
    paid = [(u, "m-ring") for u in ring] + [(u, "m-shop") for u in [*regulars, "r0"]]
    clique = [f"c{i}" for i in range(6)]  # one tight group: nothing nested to report
    paid += [(u, "m-club") for u in clique]
    nodes, edges = _tables(ring + regulars + clique, {RelType.PAID: paid})
    cand = find_candidates(nodes, edges)
    got = [
        set(cand.user_ids[m].tolist()) for m, v in zip(cand.members, cand.views, strict=True) if v == "money"
    ]
    assert set(ring + regulars) in got  # the whole cluster stays a candidate
    best = max(len(c & set(ring)) / len(c | set(ring)) for c in got)
    assert best >= 0.8
    assert set(regulars) <= max(got, key=lambda c: len(c & set(regulars)))
    assert sum(c <= set(clique) for c in got) == 1


def test_pairs_within_groups_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    group = rng.integers(0, 30, 200)
    member = np.arange(200)
    a, b, k = pairs_within_groups(group, member)
    want = {(i, j) for i in range(200) for j in range(i + 1, 200) if group[i] == group[j]}
    got = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist(), strict=True)}
    assert got == want and len(a) == len(want)
    assert (k == np.bincount(group)[group[a]]).all()


def test_leiden_split_is_deterministic_per_seed() -> None:
    g = nx.planted_partition_graph(8, 20, 0.5, 0.02, seed=3)
    e = np.array(g.edges())
    a, b, w = e[:, 0], e[:, 1], np.ones(len(e))
    nodes = np.arange(g.number_of_nodes())
    for backend in ("igraph", "leidenalg"):
        cfg = ClusterConfig(max_size=30, seed=7, backend=backend)
        runs = [sorted(tuple(c) for c in split_component(nodes, a, b, w, cfg)) for _ in range(3)]
        assert runs[0] == runs[1] == runs[2]
        assert all(len(c) <= 30 for c in runs[0])
        # The planted blocks are recovered: each community lies within one block.
        assert all(len({x // 20 for x in c}) == 1 for c in runs[0] if len(c) >= 5)


def test_transfer_cycles_agree_with_networkx() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        m = int(rng.integers(0, 14))
        s, d = rng.integers(0, n, m), rng.integers(0, n, m)
        on, rank = transfer_cycles(n, s, d)
        g = nx.DiGraph()
        g.add_nodes_from(range(n))
        g.add_edges_from(zip(s.tolist(), d.tolist(), strict=True))
        want = np.zeros(n, dtype=bool)
        cycles = list(nx.simple_cycles(g))
        for c in cycles:
            want[c] = True
        assert (on == want).all()
        assert (rank > 0) == bool(cycles)
    # A 3-cycle and a 2-cycle: two independent cycles.
    on, rank = transfer_cycles(5, np.array([0, 1, 2, 3, 4]), np.array([1, 2, 0, 4, 3]))
    assert on.all() and rank == 2


def _transfers(rows: list[tuple[str, str, float, int]]) -> pd.DataFrame:
    """Aggregated TRANSFERRED_TO rows (one transfer per pair): src, dst, amount, time in hours."""
    return pd.DataFrame(
        {"src": [r[0] for r in rows], "dst": [r[1] for r in rows], "count": 1,
         "first_seen": [r[3] * 3_600_000 for r in rows], "last_seen": [r[3] * 3_600_000 for r in rows],
         "amount_total": [r[2] for r in rows], "amount_max": [r[2] for r in rows]}
    )  # fmt: skip


def test_pass_through_links_layering_hops_only() -> None:
    uidx = pd.Index([f"u{i}" for i in range(8)])
    t = _transfers([
        ("u0", "u1", 990.0, 10), ("u1", "u2", 975.0, 11), ("u2", "u3", 960.0, 11),  # a layering chain
        ("u4", "u5", 30.0, 10), ("u5", "u6", 12.0, 11),  # forwards too little
        ("u6", "u7", 500.0, 10), ("u7", "u4", 495.0, 40),  # forwards too late
        ("u3", "u2", 955.0, 12),  # straight back to the sender: not a pass-through
    ])  # fmt: skip
    a, b = pass_through_pairs(t, uidx, ClusterConfig(flow_window_h=6, flow_ratio=0.9))
    got = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist(), strict=True)}
    assert got == {(0, 1), (1, 2), (2, 3)}
    # A chain's ends have one link each: the flow view keeps the whole chain as one cluster.
    nodes, edges = _tables(list(uidx), {})
    edges[RelType.TRANSFERRED_TO] = t
    cand = find_candidates(nodes, edges)
    flows = [sorted(m.tolist()) for m, v in zip(cand.members, cand.views, strict=True) if v == "flow"]
    assert flows == [[0, 1, 2, 3]]


def test_pattern_clusters_find_repeated_cycles() -> None:
    # A 3-cycle whose pairs each transfer twice, a repeated pair without a cycle, one-off noise.
    rows = [(0, 1), (1, 2), (2, 0)] * 2 + [(3, 4), (3, 4)] + [(5, 6), (6, 5), (0, 7)]
    tx = pd.DataFrame({"src": [r[0] for r in rows], "dst": [r[1] for r in rows]})
    pc = pattern_clusters(8, tx)
    assert pc["pc_size"].tolist() == [3, 3, 3, 2, 2, 0, 0, 0]
    assert pc["pc_cycle_rank"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert pc["pc_on_cycle"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert pc["pc_transfers"].tolist()[:5] == [6, 6, 6, 2, 2]


def test_weighted_triangles_agree_with_networkx() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 10))
        m = int(rng.integers(0, 25))
        tx = pd.DataFrame({"src": rng.integers(0, n, m), "dst": rng.integers(0, n, m)})
        w = rng.random(n)
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from((a, b) for a, b in zip(tx["src"], tx["dst"], strict=True) if a != b)
        adj = undirected_adjacency(n, tx)
        plain = nx.triangles(g)
        assert weighted_triangles(adj).tolist() == [plain[i] for i in range(n)]
        # Weighted: each triangle through i counts the product of its two other corners' weights.
        want = np.zeros(n)
        for tri in (c for c in nx.enumerate_all_cliques(g) if len(c) == 3):
            for i in tri:
                j, k = (x for x in tri if x != i)
                want[i] += w[j] * w[k]
        np.testing.assert_allclose(weighted_triangles(adj, w), want, atol=1e-12)


def test_identifier_usage_tells_a_ring_device_from_a_family_tablet() -> None:
    # Cluster 0: two invented identities onboarding on one device, their only one, at spellings
    # of one address (two address ids). Cluster 1: a household on one address, each on their own
    # phone, sharing a tablet they never onboarded on.
    mt = pd.DataFrame({"cluster": [0, 0, 1, 1], "user_id": ["r1", "r2", "h1", "h2"]})
    users = pd.DataFrame(
        {"onboarded_at": [10, 20, 10, 20]}, index=pd.Index(["r1", "r2", "h1", "h2"], name="id")
    )
    e = {
        RelType.USED_DEVICE: pd.DataFrame({
            "src": ["r1", "r2", "h1", "h1", "h2", "h2"], "dst": ["d", "d", "p1", "tab", "p2", "tab"],
            "count": [5, 4, 8, 2, 6, 1], "first_seen": [10, 20, 10, 50, 20, 60]}),
        RelType.LIVES_AT: pd.DataFrame({
            "src": ["r1", "r2", "h1", "h2"], "dst": ["a1", "a1b", "h", "h"], "count": 1,
            "first_seen": [10, 20, 10, 20]}),
    }  # fmt: skip
    f = identifier_usage(mt, users, e, np.array([2.0, 2.0]))
    assert f["onboard_shared_used_device"].tolist() == [1.0, 0.0]
    assert f["used_device_per_member"].tolist() == [1.0, 2.0]
    np.testing.assert_allclose(f["used_device_shared_event_share"], [1.0, (2 / 10 + 1 / 7) / 2])
    assert f["top_used_device_cover"].tolist() == [1.0, 1.0]
    assert f["top_lives_at_cover"].tolist() == [0.5, 1.0]
    assert f["onboard_shared_lives_at"].tolist() == [0.0, 1.0]
    assert f["top_used_ip_cover"].tolist() == [0.0, 0.0]  # no IP table: zeros, not an error


@pytest.mark.parametrize("refit", [False, True])
def test_member_scores_never_read_held_out_labels(tmp_path: Path, refit: bool) -> None:
    """Flipping the labels of held-out accounts leaves every score unchanged."""
    from gnn.data.amlsim import load_amlsim
    from gnn.rings.transfers import load_amlsim_transfers

    rng = np.random.default_rng(0)
    n, m = 300, 1500
    y = (rng.random(n) < 0.15).astype(int)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    # Launderers move small amounts among themselves: something for the models to learn.
    value = np.where(y[src] & y[dst], rng.uniform(5, 50, m), rng.uniform(100, 600, m))
    pd.DataFrame({"nodeid": range(n), "isFraud": y, "init_balance": rng.uniform(100, 600, n),
                  "fraudStep": -1}).to_csv(tmp_path / "nodes.csv", index=False)  # fmt: skip
    pd.DataFrame({"sourceNodeId": src, "targetNodeId": dst, "value": value.round(2),
                  "time": rng.integers(1, 100, m)}).to_csv(tmp_path / "transactions.csv", index=False)  # fmt: skip
    accounts, tx, labels = load_amlsim_transfers(tmp_path)
    perm = rng.permutation(n)
    train, val, test = np.sort(perm[:150]), np.sort(perm[150:200]), perm[200:]
    graph = load_amlsim(tmp_path, seeds=())
    known = np.sort(np.r_[train, val])
    s1, s2 = member_scores(
        accounts, tx, labels, train, val, folds=3, rounds=1, graph=graph, known_rows=known, refit=refit
    )
    flipped = labels.copy()
    flipped[test] = 1 - flipped[test]
    graph.y = flipped
    f1, f2 = member_scores(
        accounts, tx, flipped, train, val, folds=3, rounds=1, graph=graph, known_rows=known, refit=refit
    )
    np.testing.assert_array_equal(s1, f1)
    np.testing.assert_array_equal(s2, f2)


def _members(clusters: dict[int, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(c, u) for c, us in clusters.items() for u in us], columns=["cluster", "user_id"])


def _registry(rings: dict[str, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    r = pd.DataFrame({"ring_id": list(rings), "status": "active", "first_seen": 1, "last_seen": 1})
    m = pd.DataFrame([(k, u) for k, us in rings.items() for u in us], columns=["ring_id", "user_id"])
    return r, m


def test_ids_persist_when_membership_changes_by_less_than_half() -> None:
    prev = {"ring-a": ["u1", "u2", "u3", "u4", "u5", "u6"], "ring-b": ["v1", "v2", "v3"]}
    rings, members = _registry(prev)
    # ring-a loses one and gains two (Jaccard 5/8); ring-b is gone; a new cluster appears.
    new = _members({0: ["u1", "u2", "u3", "u4", "u5", "x1", "x2"], 1: ["w1", "w2", "w3"]})
    ids, updated = assign_ids(new, rings, members, now_ms=2)
    assert ids[0] == "ring-a" and ids[1].startswith("ring-") and ids[1] not in prev
    status = updated.set_index("ring_id")["status"]
    assert status["ring-a"] == "active" and status["ring-b"] == "closed"
    # The same run again gives the same ids (fresh ids hash members and the run time).
    assert assign_ids(new, rings, members, now_ms=2)[0] == ids
    # More than half changed: a new id.
    moved = _members({0: ["u1", "u2", "y1", "y2", "y3", "y4"]})
    assert assign_ids(moved, rings, members, now_ms=3)[0][0] != "ring-a"


def test_merges_and_splits_are_recorded() -> None:
    prev = {"ring-a": ["a1", "a2", "a3", "a4"], "ring-b": ["b1", "b2", "b3"], "ring-c": list("pqrstuvw")}
    rings, members = _registry(prev)
    new = _members({
        0: ["a1", "a2", "a3", "a4", "b1", "b2", "b3"],  # a and b merge: a keeps its id (Jaccard 4/7)
        1: ["p", "q", "r", "s"],  # c splits in halves: neither half keeps its id (Jaccard 1/2 ... 4/8)
        2: ["t", "u", "v", "w"],
    })  # fmt: skip
    ids, updated = assign_ids(new, rings, members, now_ms=5)
    st = updated.set_index("ring_id")
    assert ids[0] == "ring-a"
    assert st.loc["ring-b", "status"] == "merged" and st.loc["ring-b", "successors"] == "ring-a"
    # Jaccard 4/8 = 0.5 keeps the id for one half; the other half is new with ring-c as parent.
    assert sorted([ids[1], ids[2]]).count("ring-c") == 1
    assert "," in st.loc["ring-c", "successors"]


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rings")
    generate(out, users=4000, seed=31, days=10)
    return out


@pytest.fixture(scope="module")
def small_graph(small_world: Path) -> tuple[NodeTables, EdgeTables]:
    """The small world's graph as the pipeline builds it (:mod:`pipelines.event_tables`)."""
    return snapshot_tables(small_world / "events", load_settings(environment="test"))


@pytest.fixture
def small_tables(small_graph: tuple[NodeTables, EdgeTables]) -> tuple[NodeTables, EdgeTables]:
    """A copy of the small world's graph for one test (built once per module)."""
    nodes, edges = small_graph
    return {k: v.copy() for k, v in nodes.items()}, {k: v.copy() for k, v in edges.items()}


def test_write_back_and_stable_ids_across_refreshes(
    store: GraphStore, settings: Settings, small_world: Path, small_tables: tuple[NodeTables, EdgeTables]
) -> None:
    nodes, edges = small_tables
    labels = pd.read_parquet(small_world / "labels" / "users.parquet")
    users = nodes[NodeLabel.USER]
    store.write_rows(
        "upsert/nodes_user",
        [{"id": u, "first_seen": 0, "last_seen": 1, "count": 1, "props": {}} for u in users["id"]],
        batch_seq=1,
    )
    # Every cluster becomes a ring here, so that ids are tested on many (mostly honest) clusters.
    settings = settings.model_copy(update={"ring_min_score": 0.0})
    first = find_rings(settings, store, labels=labels, tables=(nodes, edges), now_ms=1_000)
    assert first.trained and first.clusters > 0
    assert first.written["rings"] == first.kept == first.clusters
    rings1 = pd.read_parquet(settings.data_dir / "rings" / "rings.parquet")
    members1 = pd.read_parquet(settings.data_dir / "rings" / "members.parquet")
    top = store.read("rings/list_rings", min_score=0.5, status=None, skip=0, limit=5)
    assert top and all(r["score"] >= 0.5 for r in top)
    assert top == sorted(top, key=lambda r: -r["score"])
    one = store.read("rings/get_ring", id=top[0]["id"])[0]
    want = set(members1.loc[members1["ring_id"] == top[0]["id"], "user_id"])
    assert {m["id"] for m in one["members"]} == want

    # Second refresh: one user of every ring of 4+ loses all their links; some rings lose more
    # (pendants trimmed, Leiden re-splits), some vanish.
    big = members1.groupby("ring_id").size()
    leave = members1[members1["ring_id"].isin(big[big >= 4].index)].groupby("ring_id").head(1)
    gone = set(leave["user_id"])
    # All their links: identifiers they hold and transfers either way (a received transfer links too).
    edges2 = {
        r: df[~df["src"].isin(gone) & ~(df["dst"].isin(gone) if r == RelType.TRANSFERRED_TO else False)]
        for r, df in edges.items()
    }
    second = find_rings(settings, store, tables=(nodes, edges2), now_ms=2_000)
    assert not second.trained
    rings2 = pd.read_parquet(settings.data_dir / "rings" / "rings.parquet").set_index("ring_id")
    members2 = pd.read_parquet(settings.data_dir / "rings" / "members.parquet")
    # The contract: a ring whose members mostly (Jaccard > 0.5) form a cluster again keeps its id.
    j = members1.merge(members2, on="user_id", suffixes=("_old", "_new"))
    inter = j.groupby(["ring_id_old", "ring_id_new"]).size().rename("n").reset_index()
    s1, s2 = members1.groupby("ring_id").size(), members2.groupby("ring_id").size()
    inter["jac"] = inter["n"] / (inter["ring_id_old"].map(s1) + inter["ring_id_new"].map(s2) - inter["n"])
    stable = inter[inter["jac"] > 0.5]
    assert stable["ring_id_old"].nunique() >= 0.7 * len(rings1)
    # (A ring may overlap a second cluster from another view too; one of them carries the id.
    # Ids go one to one: when two old rings of different views mostly equal one new cluster, it
    # carries one of their ids and the other ring closes.)
    kept_id = stable.groupby("ring_id_old").apply(lambda g: bool((g["ring_id_new"] == g.name).any()))
    old_ids = set(stable["ring_id_old"])
    claimed = stable.groupby("ring_id_old")["ring_id_new"].agg(lambda s: all(r in old_ids for r in s))
    assert (kept_id | claimed).all() and kept_id.mean() >= 0.9
    kept = kept_id.index[kept_id]
    assert (rings2.loc[kept, "first_seen"] == 1_000).all()
    assert (rings2.loc[kept, "status"] == "active").all()
    # Identical input a third time: every live ring keeps its id.
    find_rings(settings, store, tables=(nodes, edges2), now_ms=3_000)
    members3 = pd.read_parquet(settings.data_dir / "rings" / "members.parquet")
    assert (
        members3.sort_values(["ring_id", "user_id"])
        .reset_index(drop=True)
        .equals(members2.sort_values(["ring_id", "user_id"]).reset_index(drop=True))
    )
    closed = rings2[rings2["status"].isin(["closed", "merged", "split"])]
    for rid in closed.index[:5]:
        ring = store.read("rings/get_ring", id=rid)[0]
        assert ring["status"] in ("closed", "merged", "split") and ring["members"] == []
    for rid in leave["ring_id"].head(5):
        if rings2.loc[rid, "status"] == "active":
            got = {m["id"] for m in store.read("rings/get_ring", id=rid)[0]["members"]}
            assert not got & set(leave["user_id"])


def test_min_score_keeps_only_scoring_clusters(
    settings: Settings, small_world: Path, small_tables: tuple[NodeTables, EdgeTables], tmp_path: Path
) -> None:
    tables = small_tables
    labels = pd.read_parquet(small_world / "labels" / "users.parquet")
    reg = tmp_path / "reg"
    first = find_rings(settings, None, labels=labels, tables=tables, registry_dir=reg, now_ms=1_000)
    rings = pd.read_parquet(reg / "rings.parquet")
    members = pd.read_parquet(reg / "members.parquet")
    # Most candidates are households scoring near 0: far fewer rings than clusters, all above the bar.
    assert 0 < first.kept < first.clusters / 4 and len(rings) == first.kept
    assert (rings["score"] >= settings.ring_min_score).all()
    assert set(members["ring_id"]) == set(rings["ring_id"])
    # Raising the bar above every score closes every ring (none silently vanishes).
    strict = settings.model_copy(update={"ring_min_score": 1.0})
    second = find_rings(strict, None, tables=tables, registry_dir=reg, now_ms=2_000)
    rings2 = pd.read_parquet(reg / "rings.parquet")
    assert second.kept == 0 and (rings2["status"] == "closed").all() and len(rings2) == len(rings)
    assert pd.read_parquet(reg / "members.parquet").empty


@pytest.mark.slow
def test_ring_quality_on_unseen_synthetic_graph(tmp_path: Path, settings: Settings) -> None:
    """Train on one synthetic world, score another (new seed), without user scores."""
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    generate(train_dir, users=12000, seed=41, days=14)
    generate(test_dir, users=12000, seed=43, days=14)
    tr = snapshot_tables(train_dir / "events", settings)
    find_rings(settings, None, labels=pd.read_parquet(train_dir / "labels/users.parquet"), tables=tr,
               registry_dir=tmp_path / "reg-train")  # fmt: skip
    te = snapshot_tables(test_dir / "events", settings)
    labels = pd.read_parquet(test_dir / "labels/users.parquet")
    from gnn.rings.candidates import find_candidates as fc
    from gnn.rings.evaluate import evaluate_rings
    from gnn.rings.features import cluster_features
    from gnn.rings.model import RingModel

    cand = fc(*te)
    model = RingModel.load(tmp_path / "reg-train" / "model.pkl")
    scores = model.predict(cluster_features(cand, *te))
    q = evaluate_rings(cand, scores, labels, model.threshold)
    # Without node scores (measured: precision 0.83, recall 0.59, candidates cover 0.85 of the
    # rings, cluster AUPRC 0.56 at 12k users) the model has only ~30 positive clusters to learn
    # from; a random flagging would give precision near the positive share (~2 %).
    assert q["candidate_recall"] >= 0.75
    assert q["precision"] >= 0.7
    assert q["recall"] >= 0.45
