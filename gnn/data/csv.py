"""Bring your own labelled graph: a nodes CSV and an edges CSV become a :class:`NodeDataset`.

Nodes: columns ``id``, ``type``, optional ``label`` (1 / 0 / empty = unlabelled), optional
``train_mask`` / ``val_mask`` / ``test_mask`` (0/1), and any other columns as features.
Numeric feature columns are used as they are; text columns become integer category codes. A
node type keeps only the feature columns it has values for.
Edges: columns ``src``, ``dst``, ``type`` (ids from the nodes file). Each relation
``(type(src), type, type(dst))`` is stored, plus its reverse ``rev_<type>``, so messages flow
both ways.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from gnn.data.dataset import NodeDataset, Split, as_tensor_x, stratified_splits

RESERVED = ("id", "type", "label", "train_mask", "val_mask", "test_mask")


def load_labelled_csv(
    nodes_csv: str | Path,
    edges_csv: str | Path,
    target: str | None = None,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    name: str = "csv",
) -> NodeDataset:
    """Read the two CSVs (see module docstring) into a heterogeneous :class:`NodeDataset`.

    Args:
        nodes_csv: Nodes file.
        edges_csv: Edges file.
        target: Node type to score (default: the only type with labels).
        fractions: Stratified train/val/test fractions when no mask columns are given.
        seeds: One stratified split per seed (ignored when masks are given).
        name: Dataset name for reports.

    Raises:
        ValueError: Unknown ids in the edges, duplicate node ids, or an ambiguous target.
    """
    nodes = pd.read_csv(nodes_csv, dtype={"id": str, "type": str})
    edges = pd.read_csv(edges_csv, dtype={"src": str, "dst": str, "type": str})
    if nodes["id"].duplicated().any():
        raise ValueError(
            f"{nodes_csv}: duplicate node ids, e.g. {nodes['id'][nodes['id'].duplicated()].iloc[0]}"
        )
    if target is None:
        if "label" not in nodes:
            raise ValueError(f"{nodes_csv}: no 'label' column and no target type given")
        typed = nodes.loc[nodes["label"].notna(), "type"].unique()
        if len(typed) != 1:
            raise ValueError(f"{nodes_csv}: labels on types {list(typed)}; pass target=")
        target = str(typed[0])

    feature_cols = [c for c in nodes.columns if c not in RESERVED]
    data = HeteroData()
    local: dict[str, pd.Series] = {}  # type -> id -> local index
    names: dict[str, list[str]] = {}
    frames: dict[str, pd.DataFrame] = {}
    for ntype, part in nodes.groupby("type", sort=True):
        part = part.reset_index(drop=True)
        cols = [c for c in feature_cols if part[c].notna().any()]
        feats = pd.DataFrame(index=part.index)
        for c in cols:
            if pd.api.types.is_numeric_dtype(part[c]):
                feats[c] = part[c].astype(np.float64)
            else:
                # Text categories: stable codes (sorted), missing stays missing.
                codes = pd.Categorical(part[c]).codes.astype(np.float64)
                feats[c] = np.where(codes < 0, np.nan, codes)
        data[ntype].x = as_tensor_x(feats.to_numpy(np.float32).reshape(len(part), len(cols)))
        data[ntype].num_nodes = len(part)
        local[ntype] = pd.Series(np.arange(len(part)), index=part["id"].to_numpy())
        names[ntype] = cols
        frames[ntype] = part

    node_type = pd.Series(nodes["type"].to_numpy(), index=nodes["id"].to_numpy())
    missing = ~edges["src"].isin(node_type.index) | ~edges["dst"].isin(node_type.index)
    if missing.any():
        row = edges[missing].iloc[0]
        raise ValueError(f"{edges_csv}: {int(missing.sum())} edges name unknown nodes, e.g. {dict(row)}")
    edges = edges.assign(st=node_type.loc[edges["src"]].to_numpy(), dt=node_type.loc[edges["dst"]].to_numpy())
    for (st, rel, dt), part in edges.groupby(["st", "type", "dt"], sort=True):
        src = local[st].loc[part["src"]].to_numpy(np.int64)
        dst = local[dt].loc[part["dst"]].to_numpy(np.int64)
        ei = torch.as_tensor(np.stack([src, dst]))
        data[st, rel, dt].edge_index = ei
        data[dt, f"rev_{rel}", st].edge_index = ei.flip(0)

    tf = frames[target]
    label = tf["label"] if "label" in tf else pd.Series(np.nan, index=tf.index)
    y = np.where(label.isna(), -1, label.fillna(0)).astype(np.int64)
    if {"train_mask", "val_mask", "test_mask"} <= set(tf.columns):
        masks = [
            tf[c].fillna(0).astype(bool).to_numpy() & (y >= 0)
            for c in ("train_mask", "val_mask", "test_mask")
        ]
        splits = [Split(*masks, seed=0)]
    else:
        splits = stratified_splits(y, fractions, seeds)
    return NodeDataset(
        name=name,
        data=data,
        target=target,
        y=y,
        feature_names=names[target],
        node_ids=tf["id"].to_numpy().astype(str),
        splits=splits,
    )
