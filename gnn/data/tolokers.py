"""Tolokers (yandex-research/heterophilous-graphs): crowd workers, banned ones are positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_undirected

from gnn.data.dataset import NodeDataset, Split, as_tensor_x

TARGET = "worker"


def load_tolokers(path: str | Path) -> NodeDataset:
    """Load ``tolokers.npz`` with its ten given 50/25/25 masks as splits.

    Edges are stored once in the file; they are made undirected here (both directions, one
    relation ``("worker", "shared_task", "worker")``).
    """
    z = np.load(path)
    x = z["node_features"].astype(np.float32)
    y = z["node_labels"].astype(np.int64)
    edges = torch.as_tensor(z["edges"].T.astype(np.int64))
    data = HeteroData()
    data[TARGET].x = as_tensor_x(x)
    data[TARGET, "shared_task", TARGET].edge_index = to_undirected(edges, num_nodes=len(y))
    splits = [
        Split(z["train_masks"][i], z["val_masks"][i], z["test_masks"][i], seed=i)
        for i in range(z["train_masks"].shape[0])
    ]
    return NodeDataset(
        name="Tolokers",
        data=data,
        target=TARGET,
        y=y,
        feature_names=[f"f{i}" for i in range(x.shape[1])],
        node_ids=np.arange(len(y)).astype(str),
        splits=splits,
    )
