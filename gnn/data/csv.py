"""Bring your own labelled graph: a nodes CSV and an edges CSV become a :class:`NodeDataset`.

Nodes: columns ``id``, ``type``, optional ``label`` (1 / 0 / empty = unlabelled), optional
``train_mask`` / ``val_mask`` / ``test_mask`` (0/1), and any other columns as features.
Numeric feature columns are used as they are; text columns become integer category codes. A
node type keeps only the feature columns it has values for.
Edges: columns ``src``, ``dst``, ``type`` (ids from the nodes file), and any other columns as
edge attributes: numbers as they are, dates and times (text ``pd.to_datetime`` reads whole) as
epoch seconds. Each relation ``(type(src), type, type(dst))`` is stored, plus its reverse
``rev_<type>``, so messages flow both ways, each with its ``edge_attr``.

Every model reads the edges' attributes through node features: per node and relation, the
count of edges out and in and, per attribute, their mean, minimum and maximum (a trust network's
rating column, summarised over a node's incoming ratings, is the strongest signal it has). Every
node gets its degree, so a graph whose nodes have no feature columns works with every model.
Nothing is dropped without a note (``NodeDataset.notes``): text edge columns that are not
times, and labelled nodes with no edge at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from gnn.data.dataset import NodeDataset, Split, as_tensor_x, stratified_splits

RESERVED = ("id", "type", "label", "train_mask", "val_mask", "test_mask")
EDGE_KEYS = ("src", "dst", "type")


def _edge_attributes(edges: pd.DataFrame, edges_csv: str | Path, notes: list[str]) -> pd.DataFrame:
    """Numeric edge attributes (times as epoch seconds); other text columns are noted, not used."""
    attrs = pd.DataFrame(index=edges.index)
    for c in (c for c in edges.columns if c not in EDGE_KEYS):
        col = edges[c]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            attrs[c] = col.astype(np.float64)
            continue
        when = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
        if when.notna().sum() == col.notna().sum() and col.notna().any():
            attrs[c] = (when - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        else:
            notes.append(f"{edges_csv}: column {c!r} is text that is not a time; not used")
    return attrs


def _edge_summaries(n: int, index: np.ndarray, attrs: pd.DataFrame, prefix: str) -> dict[str, np.ndarray]:
    """Per node (``index`` in ``0..n-1`` per edge): edge count, and each attribute's mean, min and max."""
    out = {f"{prefix}_edges": np.bincount(index, minlength=n).astype(np.float64)}
    if attrs.shape[1]:
        grouped = attrs.groupby(index)
        for stat in ("mean", "min", "max"):
            table = grouped.agg(stat).reindex(range(n))
            for c in attrs.columns:
                out[f"{prefix}_{c}_{stat}"] = table[c].to_numpy(np.float64)
    return out


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
    notes: list[str] = []
    if "label" in nodes:
        bad = nodes["label"].notna() & ~nodes["label"].isin([0, 1])
        if bad.any():
            row = nodes[bad].iloc[0]
            raise ValueError(
                f"{nodes_csv}: row {int(row.name) + 2} (id {row['id']}): label must be 1, 0 or empty,"
                f" got {row['label']}"
            )
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
    node_type = pd.Series(nodes["type"].to_numpy(), index=nodes["id"].to_numpy())
    missing = ~edges["src"].isin(node_type.index) | ~edges["dst"].isin(node_type.index)
    if missing.any():
        row = edges[missing].iloc[0]
        raise ValueError(f"{edges_csv}: {int(missing.sum())} edges name unknown nodes, e.g. {dict(row)}")
    attrs = _edge_attributes(edges, edges_csv, notes)
    edges = edges.assign(st=node_type.loc[edges["src"]].to_numpy(), dt=node_type.loc[edges["dst"]].to_numpy())

    data = HeteroData()
    local: dict[str, pd.Series] = {}  # type -> id -> local index
    frames: dict[str, pd.DataFrame] = {}
    for ntype, part in nodes.groupby("type", sort=True):
        part = part.reset_index(drop=True)
        local[str(ntype)] = pd.Series(np.arange(len(part)), index=part["id"].to_numpy())
        frames[str(ntype)] = part

    # Edge summaries per node type: (node type) -> name -> column.
    summaries: dict[str, dict[str, np.ndarray]] = {t: {} for t in frames}
    degree = {t: np.zeros(len(f)) for t, f in frames.items()}
    for (st, rel, dt), part in edges.groupby(["st", "type", "dt"], sort=True):
        src = local[st].loc[part["src"]].to_numpy(np.int64)
        dst = local[dt].loc[part["dst"]].to_numpy(np.int64)
        ei = torch.as_tensor(np.stack([src, dst]))
        ea = torch.as_tensor(attrs.loc[part.index].to_numpy(np.float32))
        data[st, rel, dt].edge_index = ei
        data[dt, f"rev_{rel}", st].edge_index = ei.flip(0)
        if ea.shape[1]:
            data[st, rel, dt].edge_attr = ea
            data[dt, f"rev_{rel}", st].edge_attr = ea
        part_attrs = attrs.loc[part.index].reset_index(drop=True)
        summaries[st] |= _edge_summaries(len(frames[st]), src, part_attrs, f"{rel}_out")
        summaries[dt] |= _edge_summaries(len(frames[dt]), dst, part_attrs, f"{rel}_in")
        np.add.at(degree[st], src, 1)
        np.add.at(degree[dt], dst, 1)

    names: dict[str, list[str]] = {}
    for ntype, part in frames.items():
        cols = [c for c in feature_cols if part[c].notna().any()]
        feats = pd.DataFrame(index=part.index)
        for c in cols:
            if pd.api.types.is_numeric_dtype(part[c]):
                feats[c] = part[c].astype(np.float64)
            else:
                # Text categories: stable codes (sorted), missing stays missing.
                codes = pd.Categorical(part[c]).codes.astype(np.float64)
                feats[c] = np.where(codes < 0, np.nan, codes)
        extra = {"degree": degree[ntype], **summaries[ntype]}
        feats = pd.concat([feats, pd.DataFrame(extra, index=part.index)], axis=1)
        data[ntype].x = as_tensor_x(feats.to_numpy(np.float32).reshape(len(part), feats.shape[1]))
        data[ntype].num_nodes = len(part)
        names[ntype] = list(feats.columns)

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
    isolated = int(((y >= 0) & (degree[target] == 0)).sum())
    if isolated:
        notes.append(
            f"{nodes_csv}: {isolated} of {int((y >= 0).sum())} labelled {target} nodes have no edge"
            " (scored on their own features only)"
        )
    return NodeDataset(
        name=name,
        data=data,
        target=target,
        y=y,
        feature_names=names[target],
        node_ids=tf["id"].to_numpy().astype(str),
        splits=splits,
        notes=notes,
    )
