"""A learned ring score: a GNN over each candidate ring's own induced subgraph.

The cluster features of :mod:`gnn.rings.features` summarise a candidate with fixed aggregates
(density, shared identifiers per member, onboarding spread). They cannot see *how* the members
are tied: whether one identifier holds everybody or each member shares a different one with a
neighbour, whether the transfers form a fan-in to a collector or a cycle, whether the shared
device is young and the accounts on it joined in a burst. This module reads that structure.

The subgraph of one candidate
-----------------------------
- **member nodes**: one per member, with the member's own features (events, account age at the
  decision time, onboarding and first-seen offsets from the ring's median, money in and out,
  identifiers held, the node score when given);
- **identifier nodes**: one per identifier (device, document, phone, email, IP, address, card,
  merchant) held by two or more members, with its type (one-hot), its user count over the
  whole graph and inside the ring, its age and how tightly in time its members linked to it;
- **edges**: member <-> identifier (the holding relation) and member <-> member transfers, both
  directions, with the relation type (one-hot), a direction flag, count, amount, and the
  edge's first and last times *relative to the decision time* (hours before it, log-scaled):
  time enters as an input, never as an absolute date.

The decision time is the snapshot's end (the latest ``last_seen`` in the tables) unless given:
the benchmark's synthetic figures are at the end of the window, and say so.

The network
-----------
An input projection, ``layers`` GINE convolutions (edge features enter every message) with
residuals and layer norms, then mean and max pooling over members and over identifiers apart,
concatenated with three ring-level numbers (log size, identifiers per member, transfer edges
per member). An MLP maps that to the **ring embedding** and a linear head to the **collusion
logit**. Subgraphs are batched with PyG's :class:`~torch_geometric.data.Batch`.

Training
--------
Labels are those of the LightGBM ring model (:func:`gnn.rings.model.cluster_labels`).
Positives are a few percent of candidates, so the loss weighs them up (``pos_weight``). The
number of epochs is chosen on a stratified inner validation split (average precision), then the
network is refitted on every cluster for that many epochs. :func:`out_of_fold_logits` gives
each cluster a logit from a network that never saw its label, for stacking into the trees
(:mod:`gnn.rings.model`). Small and CPU-friendly: a few thousand parameters per layer.

Measured
--------
``python bench/rings.py --compare --users 20000 --seed 8 --eval-seed 4242 --amlsim
/work/shared/data/amlsim --model-seeds 3`` (cluster AUPRC, mean ± std over 3 model seeds;
synthetic: trained on seed 8, scored on seed 4242 at the end of the window; AMLSim: held-out
half of the candidates, 3 stratified splits):

=====================  ===============  ===============  ===============
set                    trees            GNN alone        combined
=====================  ===============  ===============  ===============
synthetic (20k users)  0.941 ± 0.005    0.923 ± 0.016    0.958 ± 0.005
AMLSim cycle200        0.872 ± 0.007    0.891 ± 0.034    0.899 ± 0.019
AMLSim fanin200        0.764 ± 0.031    0.741 ± 0.077    0.796 ± 0.006
AMLSim fanin+cycle     0.882 ± 0.017    0.921 ± 0.014    0.930 ± 0.009
=====================  ===============  ===============  ===============

The GNN alone trails the trees on the synthetic worlds and varies more between seeds; stacked
into the trees it adds what their fixed aggregates miss (per typology on the synthetic world:
bust-out 0.784 -> 0.835, device farm 0.917 -> 0.966, synthetic identity 0.876 -> 0.922).
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GINEConv, global_max_pool, global_mean_pool

from gnn.rings.candidates import IDENTIFIER_RELS, Candidates
from graphrisk.graph_schema import NodeLabel, RelType

HOUR_MS = 3_600_000
# Relations of the subgraph's edges: the identifier relations, then transfers.
EDGE_RELS: tuple[RelType, ...] = (*IDENTIFIER_RELS, RelType.TRANSFERRED_TO)
N_IDENT = len(IDENTIFIER_RELS)
MEMBER_FEATURES = (
    "events", "age_h", "onboard_offset_h", "first_seen_offset_h", "out_amount", "in_amount",
    "identifiers_held", "score", "has_score",
)  # fmt: skip
IDENT_FEATURES = ("users_global", "holders", "holders_share", "age_h", "link_spread_h", "at_onboarding")
# Node vector: [is_member, identifier type one-hot, member features, identifier features].
NODE_DIM = 1 + N_IDENT + len(MEMBER_FEATURES) + len(IDENT_FEATURES)
# Edge vector: [relation one-hot, reverse flag, count, amount, hours since last, since first,
# at the member's onboarding].
EDGE_DIM = len(EDGE_RELS) + 6
GRAPH_DIM = 3


def _slog(x: np.ndarray) -> np.ndarray:
    """Signed log1p: keeps the sign of an offset, tames heavy tails."""
    return np.sign(x) * np.log1p(np.abs(x))


def _decision_ms(nodes: dict[NodeLabel, pd.DataFrame]) -> int:
    """The snapshot's end: its latest ``last_seen`` (0 for empty tables)."""
    seen = [int(df["last_seen"].max()) for df in nodes.values() if len(df) and "last_seen" in df]
    return max(seen) if seen else 0


def build_ring_graphs(
    cand: Candidates,
    nodes: dict[NodeLabel, pd.DataFrame],
    edges: dict[RelType, pd.DataFrame],
    scores: pd.DataFrame | None = None,
    now_ms: int | None = None,
) -> list[Data]:
    """One PyG :class:`Data` per candidate cluster (in cluster order): see the module docstring.

    All tables are joined once for every cluster together (vectorised); the per-cluster split
    at the end is slicing only. ``scores``: optional ``id, score`` node scores (a member
    feature, 0 with ``has_score`` 0 when absent). ``now_ms``: the decision time.
    """
    C = cand.num_clusters
    if C == 0:
        return []
    now = _decision_ms(nodes) if now_ms is None else int(now_ms)
    mt = cand.member_table()
    M = len(mt)
    cl_m = mt["cluster"].to_numpy(np.int64)
    size = np.bincount(cl_m, minlength=C).astype(np.float64)
    users = nodes[NodeLabel.USER].drop_duplicates("id").set_index("id")
    uid = mt["user_id"]

    # Member features.
    first = users["first_seen"].astype("float64").reindex(uid).to_numpy()
    onb = users["onboarded_at"].astype("float64").reindex(uid).to_numpy()
    onb = np.where(np.isnan(onb), first, onb)
    med_first = pd.Series(first).groupby(cl_m).transform("median").to_numpy()
    med_onb = pd.Series(onb).groupby(cl_m).transform("median").to_numpy()
    t = edges.get(RelType.TRANSFERRED_TO)
    if t is not None and len(t):
        out_amt = t.groupby("src")["amount_total"].sum().reindex(uid).fillna(0).to_numpy()
        in_amt = t.groupby("dst")["amount_total"].sum().reindex(uid).fillna(0).to_numpy()
    else:
        out_amt = in_amt = np.zeros(M)
    held = np.zeros(M)
    for rel in IDENTIFIER_RELS:
        e = edges.get(rel)
        if e is not None and len(e):
            held += e.groupby("src").size().reindex(uid).fillna(0).to_numpy()
    if scores is not None and len(scores):
        sc = scores.drop_duplicates("id").set_index("id")["score"].reindex(uid).to_numpy(np.float64)
    else:
        sc = np.full(M, np.nan)
    mfeat = np.column_stack(
        [
            np.log1p(users["event_count"].astype("float64").reindex(uid).fillna(0).to_numpy()),
            np.log1p(np.maximum(now - first, 0) / HOUR_MS),
            _slog((onb - med_onb) / HOUR_MS),
            _slog((first - med_first) / HOUR_MS),
            np.log1p(out_amt),
            np.log1p(in_amt),
            np.log1p(held),
            np.nan_to_num(sc),
            (~np.isnan(sc)).astype(np.float64),
        ]
    )
    mfeat = np.nan_to_num(mfeat)

    # Identifier nodes (shared by >= 2 members of a cluster) and member-identifier edges.
    ident_rows: list[pd.DataFrame] = []
    link_rows: list[pd.DataFrame] = []
    onb_by_user = pd.Series(onb, index=pd.RangeIndex(M))
    for r, rel in enumerate(IDENTIFIER_RELS):
        e = edges.get(rel)
        if e is None or e.empty:
            continue
        glob = e.groupby("dst").agg(users_global=("src", "size"), ident_first=("first_seen", "min"))
        j = mt[["cluster", "user_id"]].reset_index(names="m").merge(e, left_on="user_id", right_on="src")
        j = j.drop_duplicates(["m", "dst"])
        j["holders"] = j.groupby(["cluster", "dst"])["m"].transform("size")
        j = j[j["holders"] >= 2]
        if j.empty:
            continue
        j = j.assign(rel=r, ident_first=j["dst"].map(glob["ident_first"]))
        g = j.groupby(["cluster", "dst"], sort=True)
        idt = g.agg(
            holders=("m", "size"),
            first_min=("first_seen", "min"),
            first_max=("first_seen", "max"),
            ident_first=("ident_first", "first"),
        ).reset_index()
        idt["rel"] = r
        idt["users_global"] = idt["dst"].map(glob["users_global"]).to_numpy(np.float64)
        ident_rows.append(idt)
        amount = j["amount_total"] if "amount_total" in j else pd.Series(0.0, index=j.index)
        link_rows.append(
            pd.DataFrame(
                {
                    "cluster": j["cluster"].to_numpy(),
                    "dst": j["dst"].to_numpy(),
                    "rel": r,
                    "m": j["m"].to_numpy(),
                    "count": j["count"].to_numpy(np.float64),
                    "amount": amount.fillna(0).to_numpy(np.float64),
                    "first": j["first_seen"].to_numpy(np.float64),
                    "last": j["last_seen"].to_numpy(np.float64),
                    "at_onb": (j["first_seen"].to_numpy(np.float64) == onb_by_user[j["m"]].to_numpy()),
                }
            )
        )
    if ident_rows:
        idt = pd.concat(ident_rows, ignore_index=True)
        links = pd.concat(link_rows, ignore_index=True)
    else:
        idt = pd.DataFrame(
            columns=[
                "cluster",
                "dst",
                "holders",
                "first_min",
                "first_max",
                "ident_first",
                "rel",
                "users_global",
            ]
        )
        links = pd.DataFrame(
            columns=["cluster", "dst", "rel", "m", "count", "amount", "first", "last", "at_onb"]
        )
    K = len(idt)
    idt["node"] = M + np.arange(K)
    # Identifier node ids for each link, by (cluster, rel, dst).
    key = pd.MultiIndex.from_frame(
        idt[["cluster", "rel", "dst"]].astype({"cluster": np.int64, "rel": np.int64})
    )
    lkey = pd.MultiIndex.from_frame(
        links[["cluster", "rel", "dst"]].astype({"cluster": np.int64, "rel": np.int64})
    )
    l_ident = idt["node"].to_numpy(np.int64)[key.get_indexer(lkey)] if K else np.zeros(0, np.int64)
    at_onb_share = (
        pd.Series(links["at_onb"].to_numpy(np.float64))
        .groupby(l_ident)
        .mean()
        .reindex(idt["node"])
        .fillna(0)
        .to_numpy()
        if K
        else np.zeros(0)
    )
    icl = idt["cluster"].to_numpy(np.int64)
    ifeat = np.column_stack(
        [
            np.log1p(idt["users_global"].to_numpy(np.float64)),
            np.log1p(idt["holders"].to_numpy(np.float64)),
            idt["holders"].to_numpy(np.float64) / np.maximum(size[icl], 1),
            np.log1p(np.maximum(now - idt["ident_first"].to_numpy(np.float64), 0) / HOUR_MS),
            np.log1p(np.maximum(idt["first_max"].to_numpy(np.float64) - idt["first_min"].to_numpy(np.float64), 0) / HOUR_MS),
            at_onb_share,
        ]
    ) if K else np.zeros((0, len(IDENT_FEATURES)))  # fmt: skip

    x = np.zeros((M + K, NODE_DIM), dtype=np.float32)
    x[:M, 0] = 1.0
    x[:M, 1 + N_IDENT : 1 + N_IDENT + len(MEMBER_FEATURES)] = mfeat
    if K:
        x[M + np.arange(K), 1 + idt["rel"].to_numpy(np.int64)] = 1.0
        x[M:, 1 + N_IDENT + len(MEMBER_FEATURES) :] = np.nan_to_num(ifeat)
    node_cluster = np.r_[cl_m, icl]

    # Edges: member -> identifier and back; transfers inside a cluster, both ways.
    src_l, dst_l, attr_l = [], [], []

    def add(s: np.ndarray, d: np.ndarray, rel: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        n = len(s)
        base = np.zeros((n, EDGE_DIM), dtype=np.float32)
        base[np.arange(n), rel] = 1.0
        o = len(EDGE_RELS)
        base[:, o + 1] = np.log1p(cols["count"])
        base[:, o + 2] = np.log1p(np.maximum(cols["amount"], 0))
        base[:, o + 3] = np.log1p(np.maximum(now - cols["last"], 0) / HOUR_MS)
        base[:, o + 4] = np.log1p(np.maximum(now - cols["first"], 0) / HOUR_MS)
        base[:, o + 5] = cols["at_onb"]
        rev = base.copy()
        rev[:, o] = 1.0
        src_l.extend([s, d])
        dst_l.extend([d, s])
        attr_l.extend([base, rev])

    if len(links):
        add(
            links["m"].to_numpy(np.int64), l_ident, links["rel"].to_numpy(np.int64),
            {k: links[k].to_numpy(np.float64) for k in ("count", "amount", "first", "last", "at_onb")},
        )  # fmt: skip
    if t is not None and len(t):
        pos = pd.Series(np.arange(M), index=pd.MultiIndex.from_arrays([cl_m, mt["user_id"].to_numpy()]))
        tj = mt[["cluster", "user_id"]].merge(t, left_on="user_id", right_on="src")
        tj = tj[tj["src"] != tj["dst"]]
        dst_pos = pos.reindex(pd.MultiIndex.from_arrays([tj["cluster"].to_numpy(), tj["dst"].to_numpy()]))
        ok = dst_pos.notna().to_numpy()
        tj = tj[ok]
        if len(tj):
            s = pos.reindex(
                pd.MultiIndex.from_arrays([tj["cluster"].to_numpy(), tj["src"].to_numpy()])
            ).to_numpy(np.int64)
            add(
                s, dst_pos.to_numpy()[ok].astype(np.int64), np.full(len(tj), N_IDENT),
                {
                    "count": tj["count"].to_numpy(np.float64), "amount": tj["amount_total"].to_numpy(np.float64),
                    "first": tj["first_seen"].to_numpy(np.float64), "last": tj["last_seen"].to_numpy(np.float64),
                    "at_onb": np.zeros(len(tj)),
                },
            )  # fmt: skip
    if src_l:
        es, ed, ea = np.concatenate(src_l), np.concatenate(dst_l), np.concatenate(attr_l)
    else:
        es = ed = np.zeros(0, np.int64)
        ea = np.zeros((0, EDGE_DIM), np.float32)
    ea = np.nan_to_num(ea)

    # Split into one Data per cluster: sort nodes and edges by cluster, relabel locally.
    n_order = np.argsort(node_cluster, kind="stable")
    n_bounds = np.searchsorted(node_cluster[n_order], np.arange(C + 1))
    local = np.empty(M + K, dtype=np.int64)
    local[n_order] = np.arange(M + K) - n_bounds[node_cluster[n_order]]
    e_cl = node_cluster[es]
    e_order = np.argsort(e_cl, kind="stable")
    e_bounds = np.searchsorted(e_cl[e_order], np.arange(C + 1))
    n_trans = np.bincount(e_cl[ea[:, N_IDENT] == 1.0], minlength=C) / 2 if len(es) else np.zeros(C)
    xt = torch.from_numpy(x)
    out: list[Data] = []
    for c in range(C):
        nn_ = n_order[n_bounds[c] : n_bounds[c + 1]]
        ee = e_order[e_bounds[c] : e_bounds[c + 1]]
        n_id = int((node_cluster[nn_] == c).sum()) - int(size[c])
        gfeat = [np.log1p(size[c]), n_id / max(size[c], 1), n_trans[c] / max(size[c], 1)]
        out.append(
            Data(
                x=xt[torch.from_numpy(nn_)],
                edge_index=torch.from_numpy(np.vstack([local[es[ee]], local[ed[ee]]])),
                edge_attr=torch.from_numpy(ea[ee]),
                member=torch.from_numpy(x[nn_, 0] == 1.0),
                g=torch.tensor([gfeat], dtype=torch.float32),
            )
        )
    return out


class RingGNN(nn.Module):
    """GINE layers over a ring's subgraph, pooled to an embedding and a collusion logit."""

    def __init__(self, hidden: int = 48, layers: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.inp = nn.Linear(NODE_DIM, hidden)
        self.convs = nn.ModuleList(
            GINEConv(
                nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)),
                train_eps=True,
                edge_dim=EDGE_DIM,
            )
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = dropout
        # Pooled: mean and max over members, over identifiers, plus the ring-level numbers.
        self.embed = nn.Sequential(nn.Linear(4 * hidden + GRAPH_DIM, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)

    def embedding(self, batch: Batch) -> torch.Tensor:
        """Ring embedding per graph of the batch."""
        h = torch.relu(self.inp(batch.x))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            # Residual: a member's own features stay visible after the messages.
            h = norm(h + torch.relu(conv(h, batch.edge_index, batch.edge_attr)))
            h = nn.functional.dropout(h, self.dropout, self.training)
        n_graphs = int(batch.num_graphs)
        pooled = []
        for mask in (batch.member, ~batch.member):
            hb, bb = h[mask], batch.batch[mask]
            mean = global_mean_pool(hb, bb, size=n_graphs)
            # Graphs without identifiers: max pooling of nothing is 0, not -inf.
            mx = global_max_pool(hb, bb, size=n_graphs) if len(hb) else torch.zeros_like(mean)
            has = torch.bincount(bb, minlength=n_graphs) > 0
            pooled += [mean, torch.where(has[:, None], mx, torch.zeros_like(mx))]
        return self.embed(torch.cat([*pooled, batch.g], dim=1))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Collusion logit per graph."""
        return self.head(self.embedding(batch)).squeeze(-1)


@dataclass
class GNNConfig:
    """Training settings of the ring GNN."""

    hidden: int = 48
    layers: int = 3
    dropout: float = 0.1
    lr: float = 3e-3
    weight_decay: float = 1e-4
    epochs: int = 40
    batch_size: int = 128
    val_share: float = 0.2
    seed: int = 0


def _batches(graphs: list[Data], rows: np.ndarray, size: int) -> list[Batch]:
    return [Batch.from_data_list([graphs[i] for i in rows[k : k + size]]) for k in range(0, len(rows), size)]


def _logits(model: RingGNN, batches: list[Batch]) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = [model(b).numpy() for b in batches]
    return np.concatenate(out) if out else np.zeros(0)


def _train(
    graphs: list[Data], y: np.ndarray, rows: np.ndarray, cfg: GNNConfig, val: np.ndarray | None, epochs: int
) -> tuple[RingGNN, int]:
    """Fit on ``rows``; with ``val``, keep the epoch of best validation AP (and return it)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = RingGNN(cfg.hidden, cfg.layers, cfg.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    yt = torch.as_tensor(y, dtype=torch.float32)
    pos = max(float(y[rows].sum()), 1.0)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(rows) - pos) / pos))
    val_batches = _batches(graphs, val, 512) if val is not None else []
    best, best_ep, best_state = -1.0, epochs, None
    for ep in range(1, epochs + 1):
        model.train()
        perm = rows[rng.permutation(len(rows))]
        for k in range(0, len(perm), cfg.batch_size):
            idx = perm[k : k + cfg.batch_size]
            b = Batch.from_data_list([graphs[i] for i in idx])
            opt.zero_grad()
            loss = loss_fn(model(b), yt[torch.as_tensor(idx)])
            loss.backward()
            opt.step()
        if val is not None and y[val].sum() > 0:
            ap = float(average_precision_score(y[val], _logits(model, val_batches)))
            if ap > best:
                best, best_ep, best_state = ap, ep, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, best_ep


@dataclass
class RingGNNScorer:
    """A trained ring GNN, stored device-independently (a CPU state dict), and its settings."""

    state: bytes
    cfg: GNNConfig
    epochs: int
    metrics: dict[str, float] = field(default_factory=dict)
    platt: LogisticRegression | None = None

    def module(self) -> RingGNN:
        """The network, on the CPU, in eval mode."""
        m = RingGNN(self.cfg.hidden, self.cfg.layers, self.cfg.dropout)
        m.load_state_dict(torch.load(io.BytesIO(self.state), map_location="cpu", weights_only=True))
        return m.eval()

    def logits(self, graphs: list[Data]) -> np.ndarray:
        """Collusion logit per ring graph."""
        return _logits(self.module(), _batches(graphs, np.arange(len(graphs)), 512))

    def predict(self, graphs: list[Data]) -> np.ndarray:
        """Calibrated collusion probability per ring graph (needs :func:`fit_ring_gnn`'s Platt)."""
        if self.platt is None:
            raise ValueError("uncalibrated ring GNN: fit it with fit_ring_gnn")
        z = self.logits(graphs)
        return self.platt.predict_proba(z.reshape(-1, 1))[:, 1] if len(z) else np.zeros(0)

    def embeddings(self, graphs: list[Data]) -> np.ndarray:
        """Ring embedding per ring graph."""
        m = self.module()
        with torch.no_grad():
            out = [m.embedding(b).numpy() for b in _batches(graphs, np.arange(len(graphs)), 512)]
        return np.concatenate(out) if out else np.zeros((0, self.cfg.hidden))


def _pack(model: RingGNN) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def train_ring_gnn(graphs: list[Data], y: np.ndarray, cfg: GNNConfig | None = None) -> RingGNNScorer:
    """Choose the epoch count on a stratified inner split, then refit on every graph."""
    cfg = cfg or GNNConfig()
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=cfg.val_share, stratify=y, random_state=cfg.seed)
    _, epochs = _train(graphs, y, tr, cfg, va, cfg.epochs)
    model, _ = _train(graphs, y, idx, cfg, None, epochs)
    return RingGNNScorer(_pack(model), cfg, epochs, {"epochs": float(epochs)})


def out_of_fold_logits(
    graphs: list[Data], y: np.ndarray, cfg: GNNConfig | None = None, folds: int = 5, epochs: int | None = None
) -> np.ndarray:
    """Each graph's logit from a network fitted without its fold.

    ``epochs``: train each fold for this many epochs (e.g. the count :func:`train_ring_gnn`
    chose); None chooses it inside each fold on an inner split (twice the cost). An epoch
    count read off all labels leaks one integer, not a label, into the folds.
    """
    cfg = cfg or GNNConfig()
    oof = np.zeros(len(y))
    for tr, va in StratifiedKFold(folds, shuffle=True, random_state=cfg.seed).split(np.zeros(len(y)), y):
        ep = epochs
        if ep is None:
            inner_tr, inner_va = train_test_split(
                tr, test_size=cfg.val_share, stratify=y[tr], random_state=cfg.seed
            )
            _, ep = _train(graphs, y, inner_tr, cfg, inner_va, cfg.epochs)
        model, _ = _train(graphs, y, tr, cfg, None, ep)
        oof[va] = _logits(model, _batches(graphs, va, 512))
    return oof


def fit_ring_gnn(
    graphs: list[Data], y: np.ndarray, cfg: GNNConfig | None = None, folds: int = 5
) -> tuple[RingGNNScorer, np.ndarray]:
    """The trained scorer, Platt-calibrated on its out-of-fold logits, and those logits.

    The calibration maps a logit to a probability, so the GNN alone has a ring threshold
    (0.5) as the trees do; the out-of-fold logits are what the trees may stack on.
    """
    cfg = cfg or GNNConfig()
    scorer = train_ring_gnn(graphs, y, cfg)
    oof = out_of_fold_logits(graphs, y, cfg, folds, epochs=scorer.epochs)
    scorer.platt = LogisticRegression(C=1e6).fit(oof.reshape(-1, 1), y)
    scorer.metrics["oof_auprc"] = float(average_precision_score(y, oof))
    return scorer, oof
