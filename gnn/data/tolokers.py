"""Tolokers (yandex-research/heterophilous-graphs): crowd workers, banned ones are positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_undirected

from gnn.data.dataset import NodeDataset, Split, as_tensor_x
from gnn.features import spectral_embedding, structural_features

TARGET = "worker"
# Columns of ``node_features`` in the file; label-free graph columns, when asked for, follow them.
RAW_FEATURES = 10


def load_tolokers(path: str | Path, structure: bool = False, spectral_dims: int = 0) -> NodeDataset:
    """Load ``tolokers.npz`` with its ten given 50/25/25 masks as splits.

    Edges are stored once in the file; they are made undirected here (both directions, one
    relation ``("worker", "shared_task", "worker")``).

    Args:
        path: The ``.npz`` file.
        structure: Append :func:`gnn.features.structural_features` (degree, neighbours'
            degree, clustering) to the node features.
        spectral_dims: Append this many :func:`gnn.features.spectral_embedding` columns.
            Both read the graph only, never labels, so they are computed once for all splits.
    """
    z = np.load(path)
    x = z["node_features"].astype(np.float32)
    names = [f"f{i}" for i in range(x.shape[1])]
    y = z["node_labels"].astype(np.int64)
    edges = to_undirected(torch.as_tensor(z["edges"].T.astype(np.int64)), num_nodes=len(y))
    blocks = [x]
    if structure:
        mat, extra = structural_features(edges, len(y))
        blocks.append(mat)
        names += extra
    if spectral_dims > 0:
        mat, extra = spectral_embedding(edges, len(y), spectral_dims)
        blocks.append(mat)
        names += extra
    data = HeteroData()
    data[TARGET].x = as_tensor_x(np.hstack(blocks))
    data[TARGET, "shared_task", TARGET].edge_index = edges
    splits = [
        Split(z["train_masks"][i], z["val_masks"][i], z["test_masks"][i], seed=i)
        for i in range(z["train_masks"].shape[0])
    ]
    return NodeDataset(
        name="Tolokers",
        data=data,
        target=TARGET,
        y=y,
        feature_names=names,
        node_ids=np.arange(len(y)).astype(str),
        splits=splits,
    )
