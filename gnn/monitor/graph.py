"""Graph structure of a snapshot: degrees per relation, identifier hubs, component sizes.

Computed from the snapshot's tables (``pipelines.snapshot.load_snapshot``): node tables with
``id`` and ``first_seen``, edge tables with ``src`` (a user) and ``dst``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType

IDENTIFIER_RELS = tuple(
    r for r, et in EDGE_TYPES.items() if et.dst not in (NodeLabel.USER, NodeLabel.MERCHANT)
)
QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class GraphStructure:
    """Structure figures of one snapshot.

    Attributes:
        users: Users in the graph.
        degrees: Per relation: mean, p50/p90/p99 and max of users' degree (users with the relation).
        hubs: Per identifier relation: identifiers with more users than the hub cut-off.
        new_hubs: Per identifier relation: hubs first seen at or after ``since_ms``.
        new_hub_ids: A few new hub ids per relation (pseudonymous keys), largest first.
        components: Sizes of the connected components of users linked through non-hub
            identifiers and transfers: count, p50/p90/p99, max, and users in components of 2+.
        ring_candidates: Candidate clusters of the ring finder, when known.
    """

    users: int
    degrees: dict[str, dict[str, float]]
    hubs: dict[str, int]
    new_hubs: dict[str, int]
    new_hub_ids: dict[str, list[str]] = field(default_factory=dict)
    components: dict[str, float] = field(default_factory=dict)
    ring_candidates: int | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict for reports."""
        return asdict(self)


def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"n": 0.0, "mean": 0.0, **{f"p{int(q * 100)}": 0.0 for q in QUANTILES}, "max": 0.0}
    qs = np.quantile(values, QUANTILES)
    return {"n": float(len(values)), "mean": float(values.mean()),
            **{f"p{int(q * 100)}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
            "max": float(values.max())}  # fmt: skip


def graph_structure(
    nodes: dict[NodeLabel, pd.DataFrame],
    edges: dict[RelType, pd.DataFrame],
    hub_users: int,
    since_ms: int | None = None,
    ring_candidates: int | None = None,
    keep_ids: int = 5,
) -> GraphStructure:
    """Degrees, hubs, new hubs and component sizes of a snapshot.

    Args:
        nodes: Node tables by label (``id``, ``first_seen``).
        edges: Edge tables by relation (``src``, ``dst``).
        hub_users: An identifier with more users than this is a hub (not a link between users).
        since_ms: Hubs whose identifier was first seen at or after this are *new* (e.g. the
            production model's training cut-off); None: none are new.
        ring_candidates: The ring finder's candidate count, passed through.
        keep_ids: New hub ids kept per relation, for investigation.
    """
    user_ids = nodes[NodeLabel.USER]["id"] if NodeLabel.USER in nodes else pd.Series([], dtype=object)
    parts = [user_ids] + [edges[r]["src"] for r in edges if len(edges[r])]
    uidx = pd.Index(pd.unique(pd.concat(parts, ignore_index=True))) if parts else pd.Index([])
    n_users = len(uidx)
    degrees: dict[str, dict[str, float]] = {}
    hubs: dict[str, int] = {}
    new_hubs: dict[str, int] = {}
    new_ids: dict[str, list[str]] = {}
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    offset = n_users
    for rel, table in edges.items():
        if not len(table):
            degrees[str(rel)] = _summary(np.zeros(0))
            continue
        degrees[str(rel)] = _summary(table.groupby("src").size().to_numpy(np.float64))
        src = uidx.get_indexer(table["src"])
        if rel == RelType.TRANSFERRED_TO:
            dst = uidx.get_indexer(table["dst"])
            ok = (src >= 0) & (dst >= 0)
            rows.append(src[ok])
            cols.append(dst[ok])
            continue
        if rel not in IDENTIFIER_RELS:
            continue
        users_per = table.groupby("dst")["src"].nunique()
        hub = users_per[users_per > hub_users]
        hubs[str(rel)] = len(hub)
        label = EDGE_TYPES[rel].dst
        first = (
            nodes[label].set_index("id")["first_seen"]
            if label in nodes and len(nodes[label])
            else pd.Series()
        )
        if since_ms is not None and len(hub):
            fresh = hub[first.reindex(hub.index).to_numpy(np.float64) >= since_ms]
        else:
            fresh = hub.iloc[:0]
        new_hubs[str(rel)] = len(fresh)
        new_ids[str(rel)] = [str(i) for i in fresh.sort_values(ascending=False).index[:keep_ids]]
        # Components link users through identifiers that are not hubs: a public IP joins
        # strangers, and would merge most of the graph into one component.
        keep = ~table["dst"].isin(hub.index).to_numpy()
        codes, _ = pd.factorize(table["dst"][keep])
        rows.append(src[keep])
        cols.append(codes.astype(np.int64) + offset)
        offset += int(codes.max()) + 1 if len(codes) else 0
    r, c = np.concatenate(rows), np.concatenate(cols)
    ok = (r >= 0) & (c >= 0)
    adj = coo_matrix((np.ones(int(ok.sum()), np.int8), (r[ok], c[ok])), shape=(offset, offset))
    _, label_of = connected_components(adj, directed=False)
    sizes = np.bincount(label_of[:n_users]) if n_users else np.zeros(0, np.int64)
    sizes = sizes[sizes > 0].astype(np.float64)
    comp = _summary(sizes)
    comp["users_linked"] = float(sizes[sizes >= 2].sum()) if len(sizes) else 0.0
    return GraphStructure(n_users, degrees, hubs, new_hubs, new_ids, comp, ring_candidates)
