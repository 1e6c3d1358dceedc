"""Candidate clusters: users linked through shared identifiers and P2P transfers.

The user-user graph
-------------------
Two users are linked when they share an identifier (device, document, phone, email, card,
address, IP, and merchant for repeat customers) or when money moved between them. The weight
of a link sums, over the identifiers the two share, ``1 / log(1 + k)`` where ``k`` is the
number of users on that identifier (a family's shared address weighs more than a café's IP),
plus ``transfer_weight`` per direction of P2P transfer.

Hubs: the learned cut-off
-------------------------
An identifier shared by very many users (a public IP, a family tablet, a big merchant) says
nothing about collusion and, worse, glues honest users into giant components; it would also
create ``k(k-1)/2`` pairs. Identifiers whose user count exceeds a **cut-off learned per
relation** are dropped before any pair is built:

    cut(rel) = clip(ceil(quantile_q(k | k >= 2)), min_cut, max_cut)

i.e. the ``q`` (default 0.99) quantile of the user count over that relation's *shared*
identifiers, kept between ``min_cut`` (12: no relation's ring-sized sharing is cut, a
household or a small ring always links) and ``max_cut`` (50: bounds the pairs per identifier
to 1,225). With the pair count bounded this way, building the graph is linear in the number of
user-identifier edges. The learned cut-offs are reported with every run.

**Onboarding bursts are not hubs.** A device farm of hundreds of accounts sits on a few
phones, proxy IPs and drop addresses, each far above the cut-off; dropping them shatters the
farm. What sets such an identifier apart from a busy public IP or a common device is *how its
users came*: the farm's accounts were opened through it (the edge's ``first_seen`` is the
user's ``onboarded_at``) within hours of each other, while a café's visitors opened their
accounts elsewhere, at any time. So an identifier over the cut-off is not dropped outright when
it is **young and made of a burst**: the most users who onboarded through it within
``burst_window_h`` hours (at least ``burst_min_users``, at most ``burst_max_users``) are at
least ``burst_share`` of its users, and the identifier was first seen no earlier than a window
before them. Those users, and only them, still link through it. Busy honest IPs do see bursts
at scale (at 60k users, 136 IPs had 10-50 sign-ups within a day), but those are 2-5 % of their
users and the IP was there before: they stay cut.
A burst needs a background to stand out against: a window holding more than
``burst_background_share`` of all the graph's onboardings (every user joined at once) keeps none.

Merchants link only users who paid that merchant at least ``merchant_min_count`` times
(the colluding shops of a bust-out ring are paid over and over by the same few members;
honest one-off buyers do not link to them), and the user count is taken after that filter.

Pass-through flows
------------------
Mule rings layer money: a member receives a transfer and passes nearly all of it on within
minutes. In the other views a chain ``a -> b -> c -> d`` falls apart (its ends have one link,
so trimming unravels it) or drowns in the members' honest friendships. The **flow view** links
only the two hops of a pass-through: a transfer ``u -> v`` and one ``v -> w`` (``w != u``) that
starts at most ``flow_window_h`` hours after the last ``u -> v`` transfer and moves between
``flow_ratio`` and 1 times as much (largest or mean amounts). Honest users rarely forward money
like that; its clusters are trimmed only of isolated users (a chain is a ring here).

Personal identifiers
--------------------
Documents, phones and emails belong to one person. The **personal view** links only users
sharing one of them and keeps pairs (``min_size`` 2): a synthetic-identity ring of three whose
third member shares nothing is otherwise a pair, too small for the other views. A personal
cluster lying inside another view's cluster at most twice its size is dropped (the same ring).
Personal pairs joined through any other link (an IP, an address, a transfer) between two users
who each share a personal identifier are candidates too, beside the pairs: a ring that pairs
its fake identities off and ties the pairs together once, a path in every view, is otherwise
only pairs (the core trim of the identity view unravels a path). Honest users seldom share a
personal identifier at all, and two such pairs seldom touch, so this adds few candidates.

Clusters
--------
Connected components of the graph. A component larger than ``max_size`` is split with
Leiden (RB configuration model, seeded, deterministic: igraph's C implementation by
default, ``leidenalg`` on request), and any community
still too large is split again at a higher resolution. Clusters with at least ``min_size``
members are candidates.

Large rings kept whole
----------------------
Leiden splits any component over ``max_size`` (60), which also cut a farm of hundreds into
pieces no larger than 60, none covering the ring. Two rules keep one large ring whole. A group
over ``max_size`` (a component, or a Leiden community about to be split again) whose links
cover at least ``whole_density`` of its possible pairs is **one dense block** and is not split
(an honest component of hundreds is sparse: friends of friends, households, shops). And after
the split, parts that are **densely joined** are merged back: two parts (of ``min_size`` or
more), each at least ``whole_density`` dense inside, whose links between them cover at least
``merge_density`` of the possible pairs are one ring cut along its devices or IPs, not two
communities bridged by a few members (honest communities joined through a shared friend or shop
have a between-density near 0; a 300-account farm's IP groups were joined at 0.17-0.19, the
honest fringe Leiden cut off it at 0.02-0.09). Merging is transitive and stops at
``max_whole_size`` members; a merge that stays within ``max_size`` is undone (this rule is for
rings Leiden had to cut, not for small groups it read). Both rules apply in the identity view
only (``whole_views``), where farms of hundreds live: in the money view a dense block is a
shop's regulars (up to 50 repeat customers are a clique), and keeping those whole cost one
more false alarm at 60k users (precision 0.963 -> 0.959).

Nested communities
------------------
A component below ``max_size`` can still be two groups joined by a thin bridge: a bust-out
ring and the regulars of a small honest shop, tied by one member who also buys there, or two
rings paying the same honest store. Neither group then covers half of the component, so as a
whole it matches no ring. In the identity and money views every cluster of at least
``2 * min_size`` members is therefore also run through Leiden (same resolution and seed);
when it falls into two or more communities of ``min_size`` (after trimming), those are
candidates too, beside the whole cluster. The ring model scores both, so neither reading is
lost; identical ones are dropped by the duplicate rule.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

import igraph as ig
import leidenalg
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from graphrisk.graph_schema import NodeLabel, RelType

IDENTIFIER_RELS: tuple[RelType, ...] = (
    RelType.USED_DEVICE, RelType.HAS_DOCUMENT, RelType.HAS_PHONE, RelType.HAS_EMAIL,
    RelType.USED_IP, RelType.LIVES_AT, RelType.USED_CARD, RelType.PAID,
)  # fmt: skip


@dataclass(frozen=True)
class ClusterConfig:
    """How the candidate graph is built and cut.

    Args:
        hub_quantile: Quantile of the shared-identifier user count that sets each relation's cut.
        min_cut: Lowest cut-off (a relation's cut is never below it).
        max_cut: Highest cut-off: bounds pairs per identifier at ``max_cut * (max_cut - 1) / 2``.
        merchant_min_count: Payments to a merchant a user needs before the merchant links them.
        transfer_weight: Link weight per direction of P2P transfer between two users.
        max_size: Components larger than this are split with Leiden.
        min_size: Smallest cluster reported as a candidate.
        resolution: Leiden RB-configuration resolution of the first split.
        seed: Leiden seed.
        backend: ``"igraph"`` (igraph's C Leiden, default, fast) or ``"leidenalg"``.
        duplicate_jaccard: Clusters of different views this similar are kept once.
        core: Members need this many neighbours inside their cluster (pendants, e.g. a scam
            victim who paid a mule once, are trimmed off iteratively).
        flow_window_h: Hours within which forwarded money counts as a pass-through.
        flow_ratio: Smallest share of the incoming amount a pass-through forwards.
        burst_window_h: Hours within which users onboarding through one identifier are a burst.
        burst_min_users: Smallest burst that still links through an identifier over the cut-off.
        burst_max_users: Largest burst kept (bounds its pairs).
        burst_background_share: A burst's window may hold at most this share of all onboardings.
        burst_share: Smallest share of an identifier's users its burst must hold.
        whole_density: A group over ``max_size`` this dense is one block, not split.
        merge_density: Leiden parts (each ``whole_density`` dense inside) joined this densely merge.
        max_whole_size: Largest cluster such merging builds.
        whole_views: Views whose large dense groups are kept whole (see the module docstring).
    """

    hub_quantile: float = 0.99
    min_cut: int = 12
    max_cut: int = 50
    merchant_min_count: int = 2
    transfer_weight: float = 1.0
    max_size: int = 60
    min_size: int = 3
    resolution: float = 0.6
    seed: int = 0
    core: int = 2
    backend: str = "igraph"
    duplicate_jaccard: float = 0.8
    flow_window_h: float = 6.0
    flow_ratio: float = 0.9
    burst_window_h: float = 24.0
    burst_min_users: int = 10
    burst_max_users: int = 2000
    burst_background_share: float = 0.5
    burst_share: float = 0.5
    whole_density: float = 0.25
    merge_density: float = 0.12
    max_whole_size: int = 2000
    whole_views: tuple[str, ...] = ("identity",)


@dataclass
class UserGraph:
    """The weighted user-user graph, pairs ``a < b`` (user indices), one row per pair."""

    user_ids: np.ndarray
    a: np.ndarray
    b: np.ndarray
    weight: np.ndarray
    cutoffs: dict[str, int] = field(default_factory=dict)
    dropped_hubs: dict[str, int] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        """Users in the graph (linked or not)."""
        return len(self.user_ids)


@dataclass
class Candidates:
    """Candidate clusters (user indices, sorted), the view each came from, and the full user graph.

    A user may sit in one cluster per view; clusters found by both views are kept once.
    """

    graph: UserGraph
    members: list[np.ndarray]
    views: list[str]
    cutoffs: dict[str, dict[str, int]] = field(default_factory=dict)
    split_components: int = 0

    @property
    def num_clusters(self) -> int:
        """Candidate clusters."""
        return len(self.members)

    @property
    def user_ids(self) -> np.ndarray:
        """User id per user index."""
        return self.graph.user_ids

    def member_table(self) -> pd.DataFrame:
        """``cluster, user_index, user_id`` rows."""
        sizes = [len(m) for m in self.members]
        idx = np.concatenate(self.members) if self.members else np.zeros(0, dtype=np.int64)
        return pd.DataFrame(
            {
                "cluster": np.repeat(np.arange(len(sizes)), sizes),
                "user_index": idx,
                "user_id": self.graph.user_ids[idx],
            }
        )


def learn_cutoff(degrees: np.ndarray, cfg: ClusterConfig) -> int:
    """The hub cut-off for one relation from its identifiers' user counts (see module docstring)."""
    shared = degrees[degrees >= 2]
    if len(shared) == 0:
        return cfg.min_cut
    q = math.ceil(float(np.quantile(shared, cfg.hub_quantile)))
    return int(min(max(q, cfg.min_cut), cfg.max_cut))


def pairs_within_groups(group: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All member pairs ``(a, b)`` sharing a group, with the group's size ``k``; vectorised by size.

    Members must be distinct within a group. Groups of equal size are handled together as one
    ``(groups, k)`` matrix, so the cost is the number of pairs, not of Python iterations.
    """
    order = np.lexsort((member, group))
    g, m = group[order], member[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    out_a, out_b, out_k = [], [], []
    for k in np.unique(sizes):
        if k < 2:
            continue
        st = starts[sizes == k]
        mat = m[st[:, None] + np.arange(k)[None, :]]
        i, j = np.triu_indices(k, 1)
        out_a.append(mat[:, i].ravel())
        out_b.append(mat[:, j].ravel())
        out_k.append(np.full(len(st) * len(i), k, dtype=np.int32))
    if not out_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.int32)
    return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_k)


def _user_index(nodes: dict[NodeLabel, pd.DataFrame], edges: dict[RelType, pd.DataFrame]) -> pd.Index:
    ids = [nodes[NodeLabel.USER]["id"]] if NodeLabel.USER in nodes else []
    ids += [edges[r]["src"] for r in edges]
    t = edges.get(RelType.TRANSFERRED_TO)
    if t is not None:
        ids.append(t["dst"])
    return pd.Index(pd.unique(pd.concat(ids, ignore_index=True))) if ids else pd.Index([])


def build_user_graph(
    nodes: dict[NodeLabel, pd.DataFrame],
    edges: dict[RelType, pd.DataFrame],
    cfg: ClusterConfig | None = None,
    rels: tuple[RelType, ...] = IDENTIFIER_RELS,
    transfers: bool = True,
    uidx: pd.Index | None = None,
) -> UserGraph:
    """The weighted user-user graph of a snapshot (tables as :func:`~pipelines.snapshot.load_snapshot`).

    Args:
        rels: Identifier relations that link users.
        transfers: Whether P2P transfers link users.
        uidx: User index to use (default: every user of the tables).
    """
    cfg = cfg or ClusterConfig()
    uidx = _user_index(nodes, edges) if uidx is None else uidx
    n = len(uidx)
    onboarded = _onboarded(nodes, uidx)
    parts_a, parts_b, parts_w = [], [], []
    cutoffs: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for rel in rels:
        e = edges.get(rel)
        if e is None or e.empty:
            continue
        if rel == RelType.PAID:
            e = e[e["count"] >= cfg.merchant_min_count]
        src = uidx.get_indexer(e["src"])
        ident = pd.factorize(e["dst"])[0]
        ok = src >= 0
        src, ident = src[ok].astype(np.int64), ident[ok]
        deg = np.bincount(ident)
        cut = learn_cutoff(deg, cfg)
        cutoffs[rel.value] = cut
        dropped[rel.value] = int((deg > cut).sum())
        keep = (deg[ident] >= 2) & (deg[ident] <= cut)
        if rel != RelType.PAID and onboarded is not None and (deg > cut).any():
            burst = onboarding_bursts(ident, src, e["first_seen"].to_numpy()[ok], onboarded, deg > cut, cfg)
            keep |= burst
            # Hubs dropped outright: over the cut-off with no burst kept.
            dropped[rel.value] = len(np.setdiff1d(np.flatnonzero(deg > cut), ident[burst]))
        a, b, k = pairs_within_groups(ident[keep], src[keep])
        parts_a.append(a)
        parts_b.append(b)
        parts_w.append(1.0 / np.log1p(k.astype(np.float64)))
    t = edges.get(RelType.TRANSFERRED_TO) if transfers else None
    if t is not None and len(t):
        s, d = uidx.get_indexer(t["src"]), uidx.get_indexer(t["dst"])
        ok = (s >= 0) & (d >= 0) & (s != d)
        parts_a.append(s[ok].astype(np.int64))
        parts_b.append(d[ok].astype(np.int64))
        # Money moved weighs in: a 100 EUR transfer counts about 1, a mule hop of 2,000 about 1.6.
        amount = t["amount_total"].to_numpy(dtype=np.float64)[ok]
        parts_w.append(cfg.transfer_weight * np.log1p(np.maximum(amount, 0)) / np.log1p(100.0))
    if parts_a:
        a, b, w = np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(parts_w)
    else:
        a = b = np.zeros(0, dtype=np.int64)
        w = np.zeros(0)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * np.int64(n) + hi
    uniq, inv = np.unique(key, return_inverse=True)
    weight = np.bincount(inv, weights=w, minlength=len(uniq))
    return UserGraph(
        user_ids=uidx.to_numpy(dtype=object),
        a=(uniq // n).astype(np.int64),
        b=(uniq % n).astype(np.int64),
        weight=weight,
        cutoffs=cutoffs,
        dropped_hubs=dropped,
    )


def _onboarded(nodes: dict[NodeLabel, pd.DataFrame], uidx: pd.Index) -> np.ndarray | None:
    """``onboarded_at`` per user index (NaN unknown); None without a user table that has it."""
    users = nodes.get(NodeLabel.USER)
    if users is None or "onboarded_at" not in users or users.empty:
        return None
    on = users.drop_duplicates("id").set_index("id")["onboarded_at"].astype("float64")
    return on.reindex(uidx).to_numpy()


def onboarding_bursts(
    ident: np.ndarray, user: np.ndarray, first_seen: np.ndarray, onboarded: np.ndarray,
    hub: np.ndarray, cfg: ClusterConfig,
) -> np.ndarray:  # fmt: skip
    """Mask over user-identifier edges: the edge belongs to its hub identifier's onboarding burst.

    Per identifier with ``hub[ident]``: the users whose account was opened through it
    (``first_seen == onboarded_at``), and among them the most that onboarded within
    ``burst_window_h`` of each other (see "Onboarding bursts" in the module docstring). Bursts
    below ``burst_min_users`` or above ``burst_max_users`` are not kept.
    """
    on_t = onboarded[user]
    cand = hub[ident] & (first_seen.astype(np.float64) == on_t) & ~np.isnan(on_t)
    out = np.zeros(len(ident), dtype=bool)
    rows = np.flatnonzero(cand)
    if len(rows) < cfg.burst_min_users:
        return out
    rows = rows[np.lexsort((on_t[rows], ident[rows]))]
    g, t = ident[rows], on_t[rows] - np.nanmin(on_t[rows])
    # Sort key per identifier, so one searchsorted finds every window's end: identifiers are
    # spaced further apart than any time span.
    span = float(t.max()) + cfg.burst_window_h * 3_600_000 + 1.0
    key = g.astype(np.float64) * span + t
    end = np.searchsorted(key, key + cfg.burst_window_h * 3_600_000, side="right")
    count = end - np.arange(len(rows))
    best = pd.Series(count).groupby(g).idxmax().to_numpy()
    best_n = count[best]
    # A burst stands out only against a background: when the window holds most of all the
    # onboardings (a world whose users all joined at once), nothing can be told from it.
    all_on = np.sort(onboarded[~np.isnan(onboarded)])
    start = on_t[rows[best]]
    in_window = np.searchsorted(
        all_on, start + cfg.burst_window_h * 3_600_000, side="right"
    ) - np.searchsorted(all_on, start, side="left")
    # Young and made of its burst: the identifier first appears with the burst, and most of its
    # users came in it. A busy honest IP sees bursts too at scale (a dozen sign-ups in a day
    # among hundreds of users, 2-5 %), but it was there before them and they are few of its users.
    deg = np.bincount(ident)
    first = pd.Series(first_seen.astype(np.float64)).groupby(ident).min()
    born = first.reindex(g[best]).to_numpy()
    ok = (
        (best_n >= cfg.burst_min_users)
        & (best_n <= cfg.burst_max_users)
        & (in_window <= cfg.burst_background_share * len(all_on))
        & (best_n >= cfg.burst_share * deg[g[best]])
        & (born >= start - cfg.burst_window_h * 3_600_000)
    )
    for start, n in zip(best[ok], best_n[ok], strict=True):
        out[rows[start : start + n]] = True
    return out


def _leiden(
    n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray, resolution: float, seed: int, backend: str
) -> np.ndarray:
    g = ig.Graph(n=n, edges=np.column_stack([a, b]))
    if backend == "leidenalg":
        part = leidenalg.find_partition(
            g, leidenalg.RBConfigurationVertexPartition, weights=w.tolist(),
            resolution_parameter=resolution, seed=seed, n_iterations=2,
        )  # fmt: skip
        return np.asarray(part.membership, dtype=np.int64)
    # igraph's own C implementation of the same algorithm (modularity with resolution is the RB
    # configuration model): ~40x faster than leidenalg here. Seeded through igraph's RNG, which
    # is process-global, so it is put back afterwards.
    ig.set_random_number_generator(random.Random(seed))
    try:
        comm = g.community_leiden(
            objective_function="modularity", weights=w, resolution=resolution, n_iterations=2
        )
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(comm.membership, dtype=np.int64)


def edges_by_group(group_a: np.ndarray, group_b: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges whose two ends share a group (``>= 0``), grouped once rather than scanned per group.

    ``group_a`` / ``group_b``: the group of each edge's ends. Returns the edge indices sorted by
    group (stable) and ``bounds``: group ``g``'s edges are ``order[bounds[g] : bounds[g + 1]]``.
    """
    inside = np.flatnonzero((group_a == group_b) & (group_a >= 0))
    order = inside[np.argsort(group_a[inside], kind="stable")]
    return order, np.searchsorted(group_a[order], np.arange(n_groups + 1))


def is_dense_block(size: int, links: int, cfg: ClusterConfig) -> bool:
    """A group too large for one community yet linked as one: kept whole by the Leiden split.

    At least ``whole_density`` of its possible pairs are links, and it has at most
    ``max_whole_size`` members (see "Large rings kept whole" in the module docstring).
    """
    return cfg.max_size < size <= cfg.max_whole_size and links >= cfg.whole_density * size * (size - 1) / 2


def split_component(
    nodes: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray, cfg: ClusterConfig
) -> list[np.ndarray]:
    """Leiden communities of one component (``a``, ``b`` global indices within ``nodes``).

    Communities larger than ``max_size`` are split again at twice the resolution, up to a
    few rounds; what is still too large after that is kept whole (reported, never dropped).
    A group (the component or a community) that :func:`is_dense_block` is kept whole as it is.
    """
    out: list[np.ndarray] = []
    stack = [(np.sort(nodes), a, b, w, cfg.resolution)]
    while stack:
        nd, ea, eb, ew, res = stack.pop()
        if is_dense_block(len(nd), len(ea), cfg):
            # One dense block (a farm of hundreds): kept whole, not cut into pieces of 60.
            out.append(nd)
            continue
        la, lb = np.searchsorted(nd, ea), np.searchsorted(nd, eb)
        memb = _leiden(len(nd), la, lb, ew, res, cfg.seed, cfg.backend)
        n_com = int(memb.max()) + 1
        order, eb_ = edges_by_group(memb[la], memb[lb], n_com)
        nodes_by = np.argsort(memb, kind="stable")
        nb = np.searchsorted(memb[nodes_by], np.arange(n_com + 1))
        for c in range(n_com):
            sub = nd[np.sort(nodes_by[nb[c] : nb[c + 1]])]
            if len(sub) > cfg.max_size and res < 64 * cfg.resolution:
                e = order[eb_[c] : eb_[c + 1]]
                stack.append((sub, ea[e], eb[e], ew[e], res * 2))
            else:
                out.append(sub)
    return out


def merge_dense_parts(
    parts: list[np.ndarray], a: np.ndarray, b: np.ndarray, cfg: ClusterConfig
) -> list[np.ndarray]:
    """Leiden parts of one component, densely joined ones merged (see "Large rings kept whole").

    ``a``, ``b``: the component's links (global user indices). Parts below ``min_size`` are
    left as they are.
    """
    if len(parts) < 2:
        return parts
    sizes = np.array([len(p) for p in parts], dtype=np.float64)
    nodes = np.concatenate(parts)
    order = np.argsort(nodes)
    part_of = np.repeat(np.arange(len(parts)), sizes.astype(np.int64))[order]
    nodes = nodes[order]
    pa, pb = part_of[np.searchsorted(nodes, a)], part_of[np.searchsorted(nodes, b)]
    inside = np.bincount(pa[pa == pb], minlength=len(parts))
    dense_in = (sizes >= cfg.min_size) & (inside >= cfg.whole_density * sizes * (sizes - 1) / 2)
    lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
    between = (
        pd.Series(1, index=pd.MultiIndex.from_arrays([lo[lo != hi], hi[lo != hi]]))
        .groupby(level=[0, 1])
        .sum()
    )
    if between.empty:
        return parts
    i, j = between.index.get_level_values(0).to_numpy(), between.index.get_level_values(1).to_numpy()
    joined = (between.to_numpy() >= cfg.merge_density * sizes[i] * sizes[j]) & dense_in[i] & dense_in[j]
    # Union-find over the densely joined pairs, densest first, within max_whole_size.
    root = np.arange(len(parts))
    total = sizes.copy()

    def find(x: int) -> int:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    dens = between.to_numpy() / (sizes[i] * sizes[j])
    for k in np.flatnonzero(joined)[np.argsort(-dens[joined], kind="stable")]:
        ri, rj = find(int(i[k])), find(int(j[k]))
        if ri != rj and total[ri] + total[rj] <= cfg.max_whole_size:
            root[rj] = ri
            total[ri] += total[rj]
    groups: dict[int, list[np.ndarray]] = {}
    for k, p in enumerate(parts):
        groups.setdefault(find(k), []).append(p)
    # Only rings over max_size are this rule's business: a merge that stays within max_size is
    # undone (Leiden's reading of small dense groups, households and friends, stands as before).
    out: list[np.ndarray] = []
    for g in groups.values():
        if sum(len(p) for p in g) > cfg.max_size:
            out.append(np.sort(np.concatenate(g)))
        else:
            out += g
    return out


def find_clusters(graph: UserGraph, cfg: ClusterConfig | None = None) -> tuple[np.ndarray, int]:
    """Cluster per user (``-1``: none) and how many components were split.

    Components of the user graph, large ones split with Leiden, pendants trimmed; clusters
    numbered by their smallest member, so numbering is deterministic.
    """
    cfg = cfg or ClusterConfig()
    n = graph.num_users
    adj = coo_matrix((np.ones(len(graph.a)), (graph.a, graph.b)), shape=(n, n))
    _, comp = connected_components(adj, directed=False)
    sizes = np.bincount(comp)
    label = np.where(sizes[comp] >= cfg.min_size, comp, -1).astype(np.int64)
    big = np.flatnonzero(sizes > cfg.max_size)
    next_id = int(comp.max()) + 1 if n else 0
    if len(big):
        order, bounds = edges_by_group(comp[graph.a], comp[graph.b], len(sizes))
        for ci in big:
            e = order[bounds[ci] : bounds[ci + 1]]
            parts = split_component(np.flatnonzero(comp == ci), graph.a[e], graph.b[e], graph.weight[e], cfg)
            for sub in merge_dense_parts(parts, graph.a[e], graph.b[e], cfg):
                label[sub] = next_id if len(sub) >= cfg.min_size else -1
                next_id += 1
    label = _trim(label, graph.a, graph.b, cfg)
    # Renumber 0..C-1 by each cluster's smallest member, so numbering is deterministic.
    has = label >= 0
    if has.any():
        first = pd.Series(np.flatnonzero(has)).groupby(label[has]).min()
        rank = pd.Series(np.arange(len(first)), index=first.sort_values().index)
        label[has] = rank.reindex(label[has]).to_numpy()
    return label, len(big)


def sub_communities(graph: UserGraph, label: np.ndarray, cfg: ClusterConfig) -> list[np.ndarray]:
    """Leiden communities inside each cluster of ``label`` (see "Nested communities" above).

    ``label`` numbers clusters ``0..C-1`` (as :func:`find_clusters` does). Only clusters of at
    least ``2 * min_size`` members are tried; a cluster yields its communities, trimmed as
    clusters are, when at least two of them keep ``min_size`` members.
    """
    groups = _groups(label)
    order, bounds = edges_by_group(label[graph.a], label[graph.b], len(groups))
    out: list[np.ndarray] = []
    for c, grp in enumerate(groups):
        if len(grp) < 2 * cfg.min_size:
            continue
        e = order[bounds[c] : bounds[c + 1]]
        la, lb = np.searchsorted(grp, graph.a[e]), np.searchsorted(grp, graph.b[e])
        memb = _leiden(len(grp), la, lb, graph.weight[e], cfg.resolution, cfg.seed, cfg.backend)
        if memb.max() < 1:
            continue
        # _trim may leave gaps in the numbering, so _groups gives some empty groups.
        pieces = [grp[p] for p in _groups(_trim(memb, la, lb, cfg)) if len(p)]
        if len(pieces) >= 2:
            out += pieces
    return out


def _trim(label: np.ndarray, a: np.ndarray, b: np.ndarray, cfg: ClusterConfig) -> np.ndarray:
    """Drop members with fewer than ``cfg.core`` neighbours in their cluster, then small clusters."""
    label = label.copy()
    n = len(label)
    while True:
        inside = (label[a] == label[b]) & (label[a] >= 0)
        deg = np.bincount(a[inside], minlength=n) + np.bincount(b[inside], minlength=n)
        drop = (label >= 0) & (deg < cfg.core)
        if not drop.any():
            break
        label[drop] = -1
    has = label >= 0
    sizes = np.bincount(label[has]) if has.any() else np.zeros(0, dtype=np.int64)
    small = has.copy()
    small[has] = sizes[label[has]] < cfg.min_size
    label[small] = -1
    return label


# Views: fake identities share identity attributes; recruited customers (mules, bust-outs) keep
# their own identities and families, and show up in how money moves instead. Clustering each
# view apart stops a mule's household from swallowing the ring.
VIEWS: dict[str, tuple[tuple[RelType, ...], bool]] = {
    "identity": (
        (
            RelType.USED_DEVICE,
            RelType.HAS_DOCUMENT,
            RelType.HAS_PHONE,
            RelType.HAS_EMAIL,
            RelType.USED_IP,
            RelType.LIVES_AT,
            RelType.USED_CARD,
        ),
        False,
    ),
    "money": ((RelType.PAID, RelType.USED_CARD), True),
}


# Identifiers that belong to one person (the personal view).
PERSONAL_RELS: tuple[RelType, ...] = (RelType.HAS_DOCUMENT, RelType.HAS_PHONE, RelType.HAS_EMAIL)

HOUR_MS = 3_600_000


def pass_through_pairs(
    transfers: pd.DataFrame | None, uidx: pd.Index, cfg: ClusterConfig
) -> tuple[np.ndarray, np.ndarray]:
    """User-index pairs ``(a, b)`` linked by a pass-through (see module docstring): both hops.

    ``transfers`` is the aggregated ``TRANSFERRED_TO`` table (one row per sender-receiver pair,
    with count, first/last seen and amount total/max), so amounts and times are compared per
    pair: the largest amounts, or the mean ones, must match; the time windows must overlap.
    """
    empty = np.zeros(0, dtype=np.int64)
    if transfers is None or transfers.empty:
        return empty, empty
    s, d = uidx.get_indexer(transfers["src"]), uidx.get_indexer(transfers["dst"])
    ok = (s >= 0) & (d >= 0) & (s != d)
    e = pd.DataFrame(
        {
            "u": s[ok],
            "v": d[ok],
            "amax": transfers["amount_max"].to_numpy(dtype=np.float64)[ok],
            "amean": (transfers["amount_total"] / transfers["count"].clip(lower=1)).to_numpy(np.float64)[ok],
            "first": transfers["first_seen"].to_numpy(dtype=np.int64)[ok],
            "last": transfers["last_seen"].to_numpy(dtype=np.int64)[ok],
        }
    )
    # Every incoming hop joined with every outgoing hop of the same user: the join's size is
    # the sum of in-degree x out-degree over users, small for P2P graphs whose hubs are cut.
    j = e.merge(e, left_on="v", right_on="u", suffixes=("1", "2"))
    j = j[j["v2"] != j["u1"]]
    window = int(cfg.flow_window_h * HOUR_MS)
    in_time = (j["last2"] >= j["first1"]) & (j["first2"] <= j["last1"] + window)
    r_max = j["amax2"] / j["amax1"].where(j["amax1"] > 0)
    r_mean = j["amean2"] / j["amean1"].where(j["amean1"] > 0)
    forwards = r_max.between(cfg.flow_ratio, 1.0) | r_mean.between(cfg.flow_ratio, 1.0)
    j = j[in_time & forwards]
    a = np.r_[j["u1"].to_numpy(), j["v1"].to_numpy()]
    b = np.r_[j["v1"].to_numpy(), j["v2"].to_numpy()]
    return a.astype(np.int64), b.astype(np.int64)


def build_flow_graph(
    edges: dict[RelType, pd.DataFrame], uidx: pd.Index, cfg: ClusterConfig | None = None
) -> UserGraph:
    """The user graph of pass-through hops only (weight: hops per pair)."""
    cfg = cfg or ClusterConfig()
    n = len(uidx)
    a, b = pass_through_pairs(edges.get(RelType.TRANSFERRED_TO), uidx, cfg)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    uniq, counts = np.unique(lo * np.int64(n) + hi, return_counts=True)
    return UserGraph(
        user_ids=uidx.to_numpy(dtype=object),
        a=(uniq // n).astype(np.int64),
        b=(uniq % n).astype(np.int64),
        weight=counts.astype(np.float64),
    )


def join_personal(personal: UserGraph, others: list[UserGraph]) -> UserGraph:
    """``personal`` plus every link of ``others`` whose two users both have a personal link.

    Weights of a pair present in several graphs add up. Cut-offs stay the personal graph's.
    """
    n = personal.num_users
    paired = np.zeros(n, dtype=bool)
    paired[personal.a] = True
    paired[personal.b] = True
    a, b, w = [personal.a], [personal.b], [personal.weight]
    for g in others:
        both = paired[g.a] & paired[g.b]
        a.append(g.a[both])
        b.append(g.b[both])
        w.append(g.weight[both])
    key = np.concatenate(a) * np.int64(n) + np.concatenate(b)
    uniq, inv = np.unique(key, return_inverse=True)
    return replace(
        personal,
        a=(uniq // n).astype(np.int64),
        b=(uniq % n).astype(np.int64),
        weight=np.bincount(inv, weights=np.concatenate(w)),
    )


def _groups(label: np.ndarray) -> list[np.ndarray]:
    idx = np.flatnonzero(label >= 0)
    order = idx[np.argsort(label[idx], kind="stable")]
    bounds = np.searchsorted(label[order], np.arange(int(label.max()) + 2 if len(idx) else 1))
    return [np.sort(order[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]


def _dedupe(
    members: list[np.ndarray], views: list[str], threshold: float
) -> tuple[list[np.ndarray], list[str]]:
    """Drop clusters whose Jaccard with an earlier kept cluster is at least ``threshold``."""
    if not members:
        return members, views
    sizes = np.array([len(m) for m in members])
    cl = np.repeat(np.arange(len(members)), sizes)
    df = pd.DataFrame({"c": cl, "u": np.concatenate(members)})
    pairs = df.merge(df, on="u")
    pairs = pairs[pairs["c_x"] < pairs["c_y"]]
    inter = pairs.groupby(["c_x", "c_y"]).size().reset_index(name="n")
    jac = inter["n"] / (sizes[inter["c_x"]] + sizes[inter["c_y"]] - inter["n"])
    drop = set(inter.loc[jac >= threshold, "c_y"].tolist())
    keep = [i for i in range(len(members)) if i not in drop]
    return [members[i] for i in keep], [views[i] for i in keep]


def _drop_contained(
    members: list[np.ndarray], views: list[str], view: str
) -> tuple[list[np.ndarray], list[str]]:
    """Drop clusters of ``view`` lying wholly inside a cluster of another view at most twice their
    size: that cluster already holds them and their shared identifiers, and one ring would
    otherwise be reported twice. Inside a larger cluster (a household the pair drowns in) they stay.
    """
    mine = [i for i, v in enumerate(views) if v == view]
    if not mine:
        return members, views
    others = [i for i, v in enumerate(views) if v != view]
    df = pd.DataFrame(
        {"c": np.repeat(others, [len(members[i]) for i in others]), "u": np.concatenate([members[i] for i in others])}
    ) if others else pd.DataFrame({"c": [], "u": []})  # fmt: skip
    drop: set[int] = set()
    for i in mine:
        hits = df.loc[df["u"].isin(members[i]), "c"].value_counts()
        full = hits[hits == len(members[i])].index
        if any(len(members[c]) <= 2 * len(members[i]) for c in full):
            drop.add(i)
    keep = [i for i in range(len(members)) if i not in drop]
    return [members[i] for i in keep], [views[i] for i in keep]


def find_candidates(
    nodes: dict[NodeLabel, pd.DataFrame],
    edges: dict[RelType, pd.DataFrame],
    cfg: ClusterConfig | None = None,
) -> Candidates:
    """Candidate clusters of a snapshot: each view clustered apart, near-duplicates dropped."""
    cfg = cfg or ClusterConfig()
    uidx = _user_index(nodes, edges)
    members: list[np.ndarray] = []
    views: list[str] = []
    cutoffs: dict[str, dict[str, int]] = {}
    split = 0
    view_graphs: list[UserGraph] = []
    for name, (rels, transfers) in VIEWS.items():
        g = build_user_graph(nodes, edges, cfg, rels=rels, transfers=transfers, uidx=uidx)
        view_graphs.append(g)
        # Large rings are kept whole only in the views listed (max_whole_size 0 turns it off).
        vcfg = cfg if name in cfg.whole_views else replace(cfg, max_whole_size=0)
        label, n_split = find_clusters(g, vcfg)
        split += n_split
        groups = _groups(label) + sub_communities(g, label, cfg)
        members += groups
        views += [name] * len(groups)
        cutoffs[name] = g.cutoffs
    # The flow view: a layering chain is a ring even though its ends have one link each.
    label, n_split = find_clusters(build_flow_graph(edges, uidx, cfg), replace(cfg, core=1))
    split += n_split
    groups = _groups(label)
    members += groups
    views += ["flow"] * len(groups)
    # The personal view: two accounts on one document, phone or email are a candidate on their
    # own. Honest users almost never share these, so the view is small; without it, a
    # synthetic-identity ring whose third member shares nothing is a pair, below min_size.
    # Pairs tied together by another link are candidates beside the pairs themselves (as
    # nested communities are beside their cluster): the ring model scores both readings, and
    # a joined cluster identical to a pair is dropped as a duplicate.
    g = build_user_graph(nodes, edges, cfg, rels=PERSONAL_RELS, transfers=False, uidx=uidx)
    personal_cfg = replace(cfg, core=1, min_size=2)
    for graph in (g, join_personal(g, view_graphs)):
        label, n_split = find_clusters(graph, personal_cfg)
        split += n_split
        groups = _groups(label)
        members += groups
        views += ["personal"] * len(groups)
    cutoffs["personal"] = g.cutoffs
    members, views = _dedupe(members, views, cfg.duplicate_jaccard)
    members, views = _drop_contained(members, views, "personal")
    full = build_user_graph(nodes, edges, cfg, uidx=uidx)
    return Candidates(graph=full, members=members, views=views, cutoffs=cutoffs, split_components=split)
