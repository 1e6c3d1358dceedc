"""IBM AMLSim 20K simulations: accounts (per-account ``isFraud``) and transfers between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from gnn.data.dataset import NodeDataset, as_tensor_x, stratified_splits

TARGET = "account"


def side_stats(tx: pd.DataFrame, by: str, other: str, prefix: str, n: int) -> pd.DataFrame:
    """Per account (rows ``0..n-1``), stats of its transfers on one side (``by`` = src: sent, dst: received)."""
    g = tx.groupby(by)
    stats = pd.DataFrame(
        {
            f"{prefix}_count": g.size(),
            f"{prefix}_amt_sum": g["value"].sum(),
            f"{prefix}_amt_mean": g["value"].mean(),
            f"{prefix}_amt_std": g["value"].std(),
            f"{prefix}_amt_max": g["value"].max(),
            f"{prefix}_amt_min": g["value"].min(),
            f"{prefix}_distinct": g[other].nunique(),
            f"{prefix}_t_first": g["time"].min(),
            f"{prefix}_t_last": g["time"].max(),
            f"{prefix}_t_distinct": g["time"].nunique(),
        }
    )
    return stats.reindex(np.arange(n))


def load_amlsim(
    directory: str | Path,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
    fractions: tuple[float, float, float] = (0.4, 0.2, 0.4),
) -> NodeDataset:
    """Load an AMLSim folder (``nodes.csv``, ``transactions.csv``) as account classification.

    Features: initial balance and per-side (sent, received) transfer statistics. ``fraudStep``
    is dropped: it is set only for laundering accounts, so it would leak the label.
    Relations: ``transfer`` (sender -> receiver) and its reverse ``received_from``, both into
    accounts, so aggregation sees senders and receivers separately.
    """
    directory = Path(directory)
    nodes = pd.read_csv(directory / "nodes.csv").sort_values("nodeid").reset_index(drop=True)
    tx = pd.read_csv(directory / "transactions.csv")
    index = pd.Index(nodes["nodeid"])
    n = len(nodes)
    tx = tx.assign(src=index.get_indexer(tx["sourceNodeId"]), dst=index.get_indexer(tx["targetNodeId"]))
    tx = tx[(tx["src"] >= 0) & (tx["dst"] >= 0)]
    out = side_stats(tx, "src", "dst", "out", n)
    inc = side_stats(tx, "dst", "src", "in", n)
    feats = pd.concat([nodes[["init_balance"]], out, inc], axis=1)
    feats["in_out_amt_ratio"] = feats["in_amt_sum"] / (feats["out_amt_sum"] + 1.0)
    feats["in_out_count_ratio"] = feats["in_count"] / (feats["out_count"] + 1.0)
    y = nodes["isFraud"].astype(np.int64).to_numpy()

    # One edge per (sender, receiver) pair: repeated transfers are already in the features.
    pairs = tx[["src", "dst"]].drop_duplicates().to_numpy().T.astype(np.int64)
    data = HeteroData()
    data[TARGET].x = as_tensor_x(feats.to_numpy(np.float32))
    data[TARGET, "transfer", TARGET].edge_index = torch.as_tensor(pairs)
    data[TARGET, "received_from", TARGET].edge_index = torch.as_tensor(pairs[::-1].copy())
    return NodeDataset(
        name=f"AMLSim-{directory.name}",
        data=data,
        target=TARGET,
        y=y,
        feature_names=list(feats.columns),
        node_ids=nodes["nodeid"].astype(str).to_numpy(),
        splits=stratified_splits(y, fractions, seeds),
    )
