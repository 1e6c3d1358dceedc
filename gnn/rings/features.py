"""Structural features of candidate clusters, one row per cluster, all vectorised.

- size, view (identity / money), density and link weight per member in the full user graph;
- identifiers shared per member, per relation (identifiers held by two or more members);
- creation velocity: spread of members' first_seen and onboarding times (a farm opens its
  accounts within hours);
- how the shared devices, IPs and addresses are used (:func:`identifier_usage`): invented
  identities onboard on the ring's device and own no other, while a household's tablet is a
  second device used now and then; a household shares one address and home IP, a ring spreads
  over variants of its address and a few IPs;
- transfers inside the cluster: count, amount per member, and cycles, from the strongly
  connected components of the cluster's transfer subgraph (money that comes back);
- member risk: mean / max node score and the share of high-risk members (scores from
  :mod:`gnn.scoring`, NaN when no scores are given);
- pooled member features: mean events, account age, money in and out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gnn.rings.candidates import IDENTIFIER_RELS, Candidates
from graphrisk.graph_schema import NodeLabel, RelType

HOUR_MS = 3_600_000
HIGH_RISK = 0.5


def scc_cycles(n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strong components of a directed graph: component per node, on-a-cycle flag per node,
    and the distinct ``(src, dst)`` edges (as a boolean mask over them) inside a cyclic component.

    A node is on a directed cycle iff its strongly connected component has two or more nodes,
    or it has a self-loop.
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    adj = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)).tocsr()
    _, comp = connected_components(adj, directed=True, connection="strong")
    size = np.bincount(comp)
    on = size[comp] >= 2
    on[src[src == dst]] = True
    first = ~pd.DataFrame({"a": src, "b": dst}).duplicated().to_numpy()
    inside = first & (comp[src] == comp[dst]) & on[src]
    return comp, on, inside


def transfer_cycles(n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, int]:
    """Per node, whether it lies on a directed cycle; and the number of independent cycles.

    The independent cycles are the cycle rank ``E - V + C`` of the cyclic components' subgraph,
    a count that does not explode as the number of simple cycles does.
    """
    comp, on, inside = scc_cycles(n, src, dst)
    v = int(on.sum())
    c = len(np.unique(comp[on])) if v else 0
    return on, max(int(inside.sum()) - v + c, 0)


def _internal(members: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """Rows ``cluster, a, b`` for the pairs whose two ends are in the same cluster."""
    m = members[["cluster", "user_index"]]
    ea = pd.DataFrame({"a": a, "b": b, "row": np.arange(len(a))})
    left = ea.merge(m.rename(columns={"user_index": "a"}), on="a")
    both = left.merge(m.rename(columns={"user_index": "b", "cluster": "cluster_b"}), on="b")
    return both[both["cluster"] == both["cluster_b"]][["cluster", "a", "b", "row"]]


def identifier_usage(
    mt: pd.DataFrame,
    users: pd.DataFrame,
    edges: dict[RelType, pd.DataFrame],
    size: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per cluster, how members use the identifiers they share (devices, IPs, addresses).

    For each relation: ``top_*_cover`` (share of members holding the cluster's most-held
    identifier), ``onboard_shared_*`` (share of members whose onboarding event used an identifier
    another member also holds: the edge's ``first_seen`` is the member's ``onboarded_at``),
    ``*_shared_event_share`` (mean share of a member's events on shared identifiers) and
    ``*_per_member`` (distinct identifiers per member).

    These separate synthetic identities from honest households, which both share an address and
    sometimes a device: a synthetic identity's only device is often the ring's, used from
    onboarding on, while a family tablet is a second device no one onboards on; a household sits
    at one address and home IP, a ring at several spellings of one address (distinct ids) and
    partly on its members' own IPs.
    """
    C = len(size)
    onboarded = users["onboarded_at"].astype("float64")
    f: dict[str, np.ndarray] = {}
    for rel in (RelType.USED_DEVICE, RelType.USED_IP, RelType.LIVES_AT):
        name = rel.value.lower()
        e = edges.get(rel)
        if e is None or e.empty:
            for k in ("top_{}_cover", "onboard_shared_{}", "{}_shared_event_share", "{}_per_member"):
                f[k.format(name)] = np.zeros(C)
            continue
        j = mt[["cluster", "user_id"]].merge(
            e[["src", "dst", "count", "first_seen"]], left_on="user_id", right_on="src"
        )
        holders = j.groupby(["cluster", "dst"])["user_id"].transform("size").to_numpy()
        shared = holders >= 2
        at_onboarding = (
            j["first_seen"].to_numpy(dtype=np.float64) == onboarded.reindex(j["user_id"]).to_numpy()
        )
        cl = j["cluster"].to_numpy()
        key = [cl, j["user_id"].to_numpy()]
        f[f"top_{name}_cover"] = (
            pd.Series(holders).groupby(cl).max().reindex(range(C), fill_value=0).to_numpy() / size
        )
        onb = pd.Series(at_onboarding & shared).groupby(key).any().groupby(level=0).mean()
        f[f"onboard_shared_{name}"] = onb.reindex(range(C), fill_value=0.0).to_numpy(dtype=np.float64)
        count = j["count"].to_numpy(dtype=np.float64)
        tot = pd.Series(count).groupby(key).sum()
        on_shared = pd.Series(np.where(shared, count, 0.0)).groupby(key).sum()
        share = (on_shared / tot.where(tot > 0)).groupby(level=0).mean()
        f[f"{name}_shared_event_share"] = share.reindex(range(C)).fillna(0.0).to_numpy()
        f[f"{name}_per_member"] = np.bincount(cl, minlength=C) / size
    return f


def cluster_features(
    cand: Candidates,
    nodes: dict[NodeLabel, pd.DataFrame],
    edges: dict[RelType, pd.DataFrame],
    scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Feature table indexed by cluster number (``0..C-1``)."""
    C = cand.num_clusters
    mt = cand.member_table()
    uidx = pd.Index(cand.user_ids)
    n = len(uidx)
    size = mt.groupby("cluster").size().reindex(range(C), fill_value=0).to_numpy(dtype=np.float64)
    f: dict[str, np.ndarray] = {"size": size, "log_size": np.log(size)}
    f["view_money"] = (np.asarray(cand.views) == "money").astype(np.float64)
    f["view_flow"] = (np.asarray(cand.views) == "flow").astype(np.float64)
    f["view_personal"] = (np.asarray(cand.views) == "personal").astype(np.float64)

    g = cand.graph
    inn = _internal(mt, g.a, g.b)
    n_links = np.bincount(inn["cluster"], minlength=C).astype(np.float64)
    w_links = np.bincount(inn["cluster"], weights=g.weight[inn["row"]], minlength=C)
    f["density"] = n_links / np.maximum(size * (size - 1) / 2, 1)
    f["weight_per_member"] = w_links / size

    # Identifiers held by two or more members, per relation, per member.
    total_shared = np.zeros(C)
    for rel in IDENTIFIER_RELS:
        e = edges.get(rel)
        if e is None or e.empty:
            f[f"shared_{rel.value.lower()}"] = np.zeros(C)
            continue
        ue = pd.DataFrame({"user_index": uidx.get_indexer(e["src"]), "ident": pd.factorize(e["dst"])[0]})
        j = mt[["cluster", "user_index"]].merge(ue, on="user_index")
        per = j.groupby(["cluster", "ident"]).size()
        shared = per[per >= 2].groupby(level="cluster").size().reindex(range(C), fill_value=0)
        f[f"shared_{rel.value.lower()}"] = shared.to_numpy(dtype=np.float64) / size
        total_shared += shared.to_numpy(dtype=np.float64)
    f["shared_per_member"] = total_shared / size
    # Documents, phones and emails belong to one person: honest households share addresses,
    # IPs and devices, almost never these, so any of them held twice is its own signal.
    personal = [
        f"shared_{r.value.lower()}" for r in (RelType.HAS_DOCUMENT, RelType.HAS_PHONE, RelType.HAS_EMAIL)
    ]
    f["personal_shared"] = (sum(f[k] for k in personal if k in f) > 0).astype(np.float64)

    # Creation velocity.
    users = nodes[NodeLabel.USER].set_index("id")
    first = users["first_seen"].reindex(mt["user_id"]).to_numpy(dtype=np.float64)
    onb = users["onboarded_at"].astype("float64").reindex(mt["user_id"]).to_numpy()
    tt = pd.DataFrame({"cluster": mt["cluster"], "first": first / HOUR_MS, "onb": onb / HOUR_MS})
    gt = tt.groupby("cluster")
    f["first_seen_std_h"] = gt["first"].std().reindex(range(C)).fillna(0).to_numpy()
    f["first_seen_range_h"] = (gt["first"].max() - gt["first"].min()).reindex(range(C)).fillna(0).to_numpy()
    f["onboard_range_h"] = (gt["onb"].max() - gt["onb"].min()).reindex(range(C)).to_numpy()
    f["onboard_gap_median_h"] = (
        (tt.sort_values(["cluster", "onb"]).groupby("cluster")["onb"].diff().groupby(tt["cluster"]).median())
        .reindex(range(C))
        .to_numpy()
    )
    now = float(max(df["last_seen"].max() for df in nodes.values() if len(df))) / HOUR_MS
    f["age_mean_h"] = (now - gt["first"].mean()).reindex(range(C)).to_numpy()
    f |= identifier_usage(mt, users, edges, size)
    # One person's identity or phone in several accounts, or several accounts opened on one
    # device: both mean invented identities (a household shares neither). The flag lets the
    # trees learn the two together, so a ring showing only one of them is still recognised.
    f["identity_reuse"] = ((f["personal_shared"] > 0) | (f["onboard_shared_used_device"] > 0)).astype(
        np.float64
    )

    # Transfers inside the cluster, and their cycles.
    t = edges.get(RelType.TRANSFERRED_TO)
    cyc_members = np.zeros(C)
    cyc_rank = np.zeros(C)
    f["transfers_internal"] = np.zeros(C)
    f["transfer_amount_per_member"] = np.zeros(C)
    if t is not None and len(t):
        s, d = uidx.get_indexer(t["src"]), uidx.get_indexer(t["dst"])
        ok = (s >= 0) & (d >= 0)
        s, d = s[ok], d[ok]
        amount = t["amount_total"].to_numpy(dtype=np.float64)[ok]
        it = _internal(mt, s, d)
        f["transfers_internal"] = np.bincount(it["cluster"], minlength=C) / size
        f["transfer_amount_per_member"] = (
            np.bincount(it["cluster"], weights=amount[it["row"]], minlength=C) / size
        )
        # One transfer graph per cluster, relabelled so clusters never touch: SCCs stay inside.
        if len(it):
            key = pd.factorize(pd.MultiIndex.from_arrays([np.r_[it["cluster"], it["cluster"]],
                                                          np.r_[it["a"], it["b"]]]))[0]  # fmt: skip
            k = len(it)
            n_nodes = int(key.max()) + 1
            comp, on, inside = scc_cycles(n_nodes, key[:k], key[k:])
            cl_of = np.zeros(n_nodes, dtype=np.int64)
            cl_of[key] = np.r_[it["cluster"], it["cluster"]]
            cyc_members = np.bincount(cl_of[on], minlength=C).astype(np.float64)
            # Cycle rank per cluster: edges inside cyclic components - their nodes + components.
            e_in = np.bincount(cl_of[key[:k][inside]], minlength=C)
            n_comp = pd.Series(cl_of[on]).groupby(comp[on]).first().value_counts()
            cyc_rank = np.maximum(e_in - cyc_members + n_comp.reindex(range(C), fill_value=0).to_numpy(), 0)
    f["cycle_member_share"] = cyc_members / size
    f["cycle_rank"] = cyc_rank

    # Member risk.
    if scores is not None and len(scores):
        sc = scores.set_index("id")["score"].reindex(mt["user_id"]).to_numpy(dtype=np.float64)
    else:
        sc = np.full(len(mt), np.nan)
    st = pd.DataFrame({"cluster": mt["cluster"], "s": sc, "hi": (sc >= HIGH_RISK).astype(float)})
    gs = st.groupby("cluster")
    f["score_mean"] = gs["s"].mean().reindex(range(C)).to_numpy()
    f["score_max"] = gs["s"].max().reindex(range(C)).to_numpy()
    f["score_min"] = gs["s"].min().reindex(range(C)).to_numpy()
    f["high_risk_share"] = np.where(np.isnan(sc).all(), np.nan, gs["hi"].mean().reindex(range(C)).to_numpy())

    # Pooled member features.
    ev = users["event_count"].reindex(mt["user_id"]).to_numpy(dtype=np.float64)
    pooled = pd.DataFrame({"cluster": mt["cluster"], "events": ev})
    if t is not None and len(t):
        out_amt = t.groupby("src")["amount_total"].sum()
        in_amt = t.groupby("dst")["amount_total"].sum()
        pooled["out"] = out_amt.reindex(mt["user_id"]).fillna(0).to_numpy()
        pooled["in"] = in_amt.reindex(mt["user_id"]).fillna(0).to_numpy()
    else:
        pooled["out"] = pooled["in"] = 0.0
    paid = edges.get(RelType.PAID)
    if paid is not None and len(paid):
        pooled["paid_max"] = (
            paid.groupby("src")["amount_max"].max().reindex(mt["user_id"]).fillna(0).to_numpy()
        )
    else:
        pooled["paid_max"] = 0.0
    gp = pooled.groupby("cluster")
    for col in ("events", "out", "in", "paid_max"):
        f[f"member_{col}_mean"] = gp[col].mean().reindex(range(C)).to_numpy()
    f["member_in_out_ratio"] = f["member_in_mean"] / (f["member_out_mean"] + 1.0)
    _ = n
    return pd.DataFrame(f, index=pd.RangeIndex(C, name="cluster"))
