"""Graph-derived features for the scored nodes: neighbour aggregates and label features.

All aggregation is ``torch_geometric.utils.scatter`` over edge lists (no torch-sparse), so it
runs full-graph on CPU in seconds. Label features read *training* labels only and never a
node's own label: a node's 2-hop label count drops the paths that return to the node itself.

Edge convention: an edge type ``(src, rel, dst)`` with ``dst`` the target type sends ``src``
information to the target node. Loaders store undirected relations in both directions and
give directed ones an explicit reverse type, so "incoming" covers every neighbour once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh
from torch_geometric.utils import scatter

from gnn.data.dataset import NodeDataset
from gnn.data.history import windowed_sums

Reduce = str  # "mean" | "max" | "min" | "sum" | "std"


def scatter_aggregate(
    x_src: torch.Tensor, edge_index: torch.Tensor, num_dst: int, reduce: Reduce
) -> torch.Tensor:
    """Aggregate ``x_src[edge_index[0]]`` onto ``edge_index[1]``.

    ``std`` is the population standard deviation; nodes with no incoming edge get 0 (mean,
    sum, std) or NaN (max, min: "no neighbour" is not a value).
    """
    return scatter_aggregates(x_src, edge_index, num_dst, (reduce,))[0]


def scatter_aggregates(
    x_src: torch.Tensor, edge_index: torch.Tensor, num_dst: int, reduces: tuple[Reduce, ...]
) -> list[torch.Tensor]:
    """:func:`scatter_aggregate` for several reductions of the same messages.

    The messages are gathered once, and sum, mean and std share one scatter-sum (plus one of
    squares): at a million users each gather is gigabytes of edge-by-feature values.
    """
    src, dst = edge_index
    msg = x_src[src]
    deg = scatter(torch.ones_like(dst, dtype=msg.dtype), dst, 0, dim_size=num_dst, reduce="sum")[:, None]
    per = deg.clamp_min(1)
    total = (
        scatter(msg, dst, 0, dim_size=num_dst, reduce="sum")
        if {"sum", "mean", "std"} & set(reduces)
        else None
    )
    out = []
    for reduce in reduces:
        if reduce == "sum":
            out.append(total)
        elif reduce == "mean":
            out.append(total / per)
        elif reduce == "std":
            mean = total / per
            sq = scatter(msg * msg, dst, 0, dim_size=num_dst, reduce="sum") / per
            out.append((sq - mean * mean).clamp_min(0).sqrt())
        elif reduce in ("max", "min"):
            ext = scatter(msg, dst, 0, dim_size=num_dst, reduce=reduce)
            ext[(deg == 0).expand_as(ext)] = float("nan")
            out.append(ext)
        else:
            raise ValueError(f"unknown reduce {reduce!r}")
    return out


def degree(edge_index: torch.Tensor, num_dst: int) -> torch.Tensor:
    """In-degree ``[num_dst]`` as float32."""
    dst = edge_index[1]
    return scatter(torch.ones(dst.numel()), dst, 0, dim_size=num_dst, reduce="sum")


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0)


def _relations_into_target(dataset: NodeDataset) -> list[tuple[tuple[str, str, str], torch.Tensor]]:
    """Edge types that end at the target type, with their edge_index."""
    out = []
    for et in dataset.data.edge_types:
        if et[2] == dataset.target:
            out.append((et, dataset.data[et].edge_index))
    return out


def _reverse_edges(dataset: NodeDataset, et: tuple[str, str, str]) -> torch.Tensor:
    """Edges ``dst -> src`` of ``et`` (target -> other type), for metapath hops."""
    return dataset.data[et].edge_index.flip(0)


def neighbour_features(
    dataset: NodeDataset,
    hops: int = 2,
    reduces: tuple[Reduce, ...] = ("mean", "max", "std"),
    columns: list[int] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Aggregates of neighbours' features as one matrix: :func:`neighbour_blocks`, joined."""
    blocks, names = neighbour_blocks(dataset, hops, reduces, columns)
    mat = torch.cat(blocks, dim=1) if blocks else torch.zeros((dataset.num_nodes, 0))
    return mat.numpy().astype(np.float32, copy=False), names


def neighbour_blocks(
    dataset: NodeDataset,
    hops: int = 2,
    reduces: tuple[Reduce, ...] = ("mean", "max", "std"),
    columns: list[int] | None = None,
) -> tuple[list[torch.Tensor], list[str]]:
    """Aggregates of neighbours' features, per relation, at 1 and (optionally) 2 hops.

    Returned as float32 column blocks, so a caller joining them with other features copies
    each value once (a million users' aggregates are gigabytes).

    For a relation ``T -> T``: degree, ``reduces`` of neighbours' target features, and at hop 2
    the mean of the neighbours' hop-1 means. For ``X -> T`` with another node type ``X``:
    degree, ``reduces`` of ``X``'s own features, and at hop 2 the mean over ``X`` of the mean
    target features of ``X``'s target neighbours (the nodes sharing a device, say) plus those
    nodes' count.

    Args:
        dataset: The graph.
        hops: 1 or 2 (0 returns no blocks).
        reduces: Aggregations at hop 1.
        columns: Target feature columns to aggregate (default all).

    Returns:
        ``(blocks, names)``: ``[N_target, f_i]`` tensors whose widths sum to ``len(names)``.
    """
    n = dataset.num_nodes
    x_t = _finite(dataset.data[dataset.target].x)
    names_t = list(dataset.feature_names)
    if columns is not None:
        x_t = x_t[:, columns]
        names_t = [names_t[c] for c in columns]
    blocks: list[torch.Tensor] = []
    names: list[str] = []
    if hops <= 0:
        return [], []
    for et, ei in _relations_into_target(dataset):
        rel = et[1]
        blocks.append(degree(ei, n)[:, None])
        names.append(f"{rel}_deg")
        src_type = et[0]
        if src_type == dataset.target:
            x_s, src_names = x_t, names_t
        else:
            x_s = _finite(dataset.data[src_type].x)
            src_names = [f"{src_type}.{i}" for i in range(x_s.shape[1])]
        if x_s.shape[1] > 0:
            blocks += scatter_aggregates(x_s, ei, n, reduces)
            for red in reduces:
                names += [f"{rel}_{red}_{c}" for c in src_names]
        if hops >= 2:
            if src_type == dataset.target:
                m1 = scatter_aggregate(x_t, ei, n, "mean")
                blocks.append(scatter_aggregate(m1, ei, n, "mean"))
                names += [f"{rel}_hop2_mean_{c}" for c in names_t]
            else:
                rev = _reverse_edges(dataset, et)
                n_x = dataset.data[src_type].num_nodes
                at_x = scatter_aggregate(x_t, rev, n_x, "mean")
                cnt_x = degree(rev, n_x)[:, None]
                blocks.append(scatter_aggregate(at_x, ei, n, "mean"))
                blocks.append(scatter_aggregate(cnt_x, ei, n, "sum"))
                names += [f"{rel}_via_mean_{c}" for c in names_t] + [f"{rel}_via_count"]
    return blocks, names


def _reciprocal_count(ei: torch.Tensor, n: int) -> torch.Tensor:
    """Per node ``i``: number of ``j`` with both ``j -> i`` and ``i -> j`` (2-hop paths back to i)."""
    src, dst = ei.numpy()
    fwd = pd.Index(src.astype(np.int64) * n + dst)
    back = dst.astype(np.int64) * n + src
    hit = fwd.isin(back)
    return torch.as_tensor(np.bincount(dst[hit], minlength=n).astype(np.float32))


def label_features(
    dataset: NodeDataset, train_mask: np.ndarray, hops: int = 2, prior: float | None = None
) -> tuple[np.ndarray, list[str]]:
    """Neighbours' *training* labels: counts, fraud counts and smoothed fraud rates.

    Only nodes in ``train_mask`` contribute; a node's own label never reaches its features (the
    2-hop sums drop the paths ``i -> j -> i``; ``X``-mediated sums drop ``i``'s own share).

    Args:
        dataset: The graph.
        train_mask: Nodes whose labels may be read.
        hops: 1 or 2.
        prior: Rate the smoothing shrinks towards (default: training fraud rate).
    """
    n = dataset.num_nodes
    known = torch.as_tensor(train_mask & (dataset.y >= 0), dtype=torch.float32)
    fraud = known * torch.as_tensor(np.clip(dataset.y, 0, 1), dtype=torch.float32)
    if prior is None:
        prior = float(fraud.sum() / known.sum().clamp_min(1))
    kv = torch.stack([known, fraud], dim=1)  # [N, 2]: (labelled, fraud)
    blocks: list[torch.Tensor] = []
    names: list[str] = []

    def emit(tag: str, agg: torch.Tensor) -> None:
        cnt, pos = agg[:, 0], agg[:, 1]
        blocks.extend([cnt, pos, (pos + 2 * prior) / (cnt + 2)])
        names.extend([f"{tag}_train_count", f"{tag}_train_fraud", f"{tag}_train_rate"])

    for et, ei in _relations_into_target(dataset):
        rel = et[1]
        if et[0] == dataset.target:
            h1 = scatter(kv[ei[0]], ei[1], 0, dim_size=n, reduce="sum")
            emit(f"{rel}_h1", h1)
            if hops >= 2:
                h2 = scatter(h1[ei[0]], ei[1], 0, dim_size=n, reduce="sum")
                h2 = h2 - _reciprocal_count(ei, n)[:, None] * kv
                emit(f"{rel}_h2", h2.clamp_min(0))
        else:
            rev = _reverse_edges(dataset, et)
            n_x = dataset.data[et[0]].num_nodes
            at_x = scatter(kv[rev[0]], rev[1], 0, dim_size=n_x, reduce="sum")
            via = scatter(at_x[ei[0]], ei[1], 0, dim_size=n, reduce="sum")
            via = via - degree(ei, n)[:, None] * kv
            emit(f"{rel}_via", via.clamp_min(0))
    mat = torch.stack(blocks, dim=1) if blocks else torch.zeros((n, 0))
    return mat.numpy().astype(np.float32, copy=False), names


def history_label_features(
    dataset: NodeDataset,
    train_mask: np.ndarray,
    prior: float | None = None,
    windows: tuple[float, ...] = (100.0, 1000.0),
) -> tuple[np.ndarray, list[str]]:
    """Temporal label features: per history key, earlier *training* nodes of the same group.

    Nodes are in time order; a node reads only strictly earlier rows, so its own label and any
    later label never reach it. Per key: earlier training count, earlier frauds, smoothed rate,
    the last earlier training label, rows since the last earlier training fraud, and the
    training count, frauds and smoothed rate over the last ``windows`` rows (fraud comes in waves).
    """
    n = dataset.num_nodes
    known = (train_mask & (dataset.y >= 0)).astype(np.float64)
    fraud = known * np.clip(dataset.y, 0, 1)
    if prior is None:
        prior = float(fraud.sum() / max(known.sum(), 1.0))
    rows = np.arange(n, dtype=np.float64)
    cols: dict[str, np.ndarray] = {}
    for key, codes in dataset.history_keys.items():
        g = pd.Series(codes)
        cnt = pd.Series(known).groupby(g).cumsum().to_numpy() - known
        pos = pd.Series(fraud).groupby(g).cumsum().to_numpy() - fraud
        last_label = pd.Series(np.where(known > 0, fraud, np.nan)).groupby(g).shift(1)
        last_label = last_label.groupby(g).ffill().to_numpy()
        fraud_row = pd.Series(np.where(fraud > 0, rows, np.nan)).groupby(g).shift(1)
        fraud_row = fraud_row.groupby(g).ffill().to_numpy()
        cols[f"{key}_hist_train_count"] = cnt
        cols[f"{key}_hist_train_fraud"] = pos
        cols[f"{key}_hist_train_rate"] = (pos + 2 * prior) / (cnt + 2)
        cols[f"{key}_hist_last_label"] = last_label
        cols[f"{key}_hist_since_fraud"] = rows - fraud_row
        for w in windows:
            _, kc = windowed_sums(codes, rows, known, w)
            _, fc = windowed_sums(codes, rows, fraud, w)
            cols[f"{key}_hist_train_count_w{int(w)}"] = kc
            cols[f"{key}_hist_train_rate_w{int(w)}"] = (fc + 2 * prior) / (kc + 2)
    frame = pd.DataFrame(cols)
    return frame.to_numpy(np.float32), list(frame.columns)


def signed_log1p(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``sign(x) * log1p(|x|)`` as a float32 tensor (heavy-tailed amounts)."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    return torch.sign(t) * torch.log1p(t.abs())


@dataclass(frozen=True, eq=False)
class FeatureScaler:
    """GNN input scaling fitted once: signed ``log1p``, missing -> training mean, standardise.

    ``mean`` and ``std`` are per column of the signed-log values of the rows it was fitted on
    (NaN and infinite values count as missing; ``std`` is that of the mean-imputed column).
    Transforming any matrix uses these statistics only, so a node's scaled row never depends
    on which other nodes are scored with it. A missing value scales to 0 (the training mean);
    a column constant in training keeps its deviation from that constant unscaled. Statistics
    are float32 NumPy arrays: they pickle with the model and move to whatever device the
    input is on.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(
        cls, x: np.ndarray | torch.Tensor, rows: np.ndarray | None = None, chunk: int = 65_536
    ) -> FeatureScaler:
        """Statistics of ``x[rows]`` (default: all rows); no rows gives mean 0, std 1.

        Two passes over ``chunk`` rows at a time, in float64: a million rows never need a
        float64 copy of the whole matrix.
        """
        idx = np.arange(x.shape[0]) if rows is None else np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        width = x.shape[1]
        parts = [idx[i : i + chunk] for i in range(0, len(idx), chunk)]

        def block(part: np.ndarray) -> torch.Tensor:
            t = x[torch.as_tensor(part)] if isinstance(x, torch.Tensor) else x[part]
            return signed_log1p(t).detach().cpu().to(torch.float64)

        total = torch.zeros(width, dtype=torch.float64)
        count = torch.zeros(width, dtype=torch.float64)
        for part in parts:
            t = block(part)
            ok = torch.isfinite(t)
            total += torch.where(ok, t, 0.0).sum(dim=0)
            count += ok.sum(dim=0)
        mean = total / count.clamp_min(1)  # a column never seen: mean 0
        squares = torch.zeros(width, dtype=torch.float64)
        for part in parts:
            t = block(part)
            squares += torch.where(torch.isfinite(t), t - mean, 0.0).pow(2).sum(dim=0)
        # Unbiased std of the column with its missing values imputed to the mean (they add 0).
        std = (squares / max(len(idx) - 1, 1)).sqrt()
        std = torch.where(std > 1e-6, std, 1.0)
        return cls(mean.numpy().astype(np.float32), std.numpy().astype(np.float32))

    @property
    def width(self) -> int:
        """Number of columns."""
        return int(self.mean.shape[0])

    def transform(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Scaled float32 tensor (on ``x``'s device when ``x`` is a tensor); missing -> 0.

        Raises:
            ValueError: ``x`` has another number of columns than the scaler was fitted on.
        """
        t = signed_log1p(x)
        if t.shape[-1] != self.width:
            raise ValueError(f"FeatureScaler fitted on {self.width} columns, got {t.shape[-1]}")
        mean = torch.as_tensor(self.mean, device=t.device)
        std = torch.as_tensor(self.std, device=t.device)
        t.sub_(mean).div_(std)  # t is a fresh tensor: scaled in place (inputs can be gigabytes)
        return torch.nan_to_num_(t, nan=0.0, posinf=0.0, neginf=0.0)


def _adjacency(edge_index: torch.Tensor | np.ndarray, num_nodes: int) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency (CSR) of an edge list; self-loops dropped, duplicates merged."""
    src, dst = np.asarray(edge_index, dtype=np.int64)
    keep = src != dst
    adj = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float64), (dst[keep], src[keep])), shape=(num_nodes, num_nodes)
    )
    adj = adj.maximum(adj.T)  # undirected whichever direction(s) the edges were stored in
    adj.data[:] = 1.0
    return adj


def structural_features(
    edge_index: torch.Tensor | np.ndarray, num_nodes: int
) -> tuple[np.ndarray, list[str]]:
    """Label-free shape of each node's neighbourhood in an undirected graph.

    Columns: log degree; mean and variance of the neighbours' log degree (a worker attached
    to hubs versus to a clique); the 2-hop mean of log degree; the local clustering
    coefficient (the share of a node's neighbour pairs that are themselves linked: dense
    co-working groups). Nodes without neighbours get 0 for the neighbour columns.
    """
    adj = _adjacency(edge_index, num_nodes)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    walk = sp.diags(1.0 / np.maximum(deg, 1.0)) @ adj  # row-normalised: neighbour means
    logdeg = np.log1p(deg)
    nb_mean = walk @ logdeg
    nb_var = np.clip(walk @ (logdeg * logdeg) - nb_mean * nb_mean, 0.0, None)
    # Triangles through i = (A^2 ∘ A) row sum / 2; pairs of neighbours = d (d - 1) / 2.
    triangles = np.asarray(adj.multiply(adj @ adj).sum(axis=1)).ravel()
    clustering = triangles / np.maximum(deg * (deg - 1.0), 1.0)
    mat = np.column_stack([logdeg, nb_mean, nb_var, walk @ nb_mean, clustering])
    names = ["log_degree", "nb_log_degree_mean", "nb_log_degree_var", "hop2_log_degree_mean", "clustering"]
    return mat.astype(np.float32), names


def spectral_embedding(
    edge_index: torch.Tensor | np.ndarray, num_nodes: int, dims: int, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Top ``dims`` eigenvectors of the normalised adjacency ``D^-1/2 A D^-1/2``.

    A label-free position of each node in the graph's community structure (on Tolokers: which
    projects a worker shares tasks in), which per-node aggregates of a few hops cannot see.
    Eigenvectors are ordered by decreasing eigenvalue and sign-fixed (largest-magnitude entry
    positive), and the Lanczos start vector is seeded, so the columns are reproducible.

    Args:
        edge_index: ``[2, E]`` edges, any direction (made undirected).
        num_nodes: Number of nodes.
        dims: Number of eigenvectors (must be below ``num_nodes``).
        seed: Seed of the Lanczos start vector.

    Returns:
        ``(matrix [num_nodes, dims] float32, names)``.
    """
    adj = _adjacency(edge_index, num_nodes)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    d_isqrt = sp.diags(1.0 / np.sqrt(np.maximum(deg, 1.0)))
    norm = (d_isqrt @ adj @ d_isqrt).tocsr()
    v0 = np.random.default_rng(seed).standard_normal(num_nodes)
    _, vecs = eigsh(norm, k=dims, which="LA", v0=v0, tol=1e-6)
    vecs = vecs[:, ::-1]
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(dims)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    return vecs.astype(np.float32), [f"spectral_{i}" for i in range(dims)]
