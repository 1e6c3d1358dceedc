"""S-FFSD (simulated card transactions, AI4Risk ``antifraud``): one node per transaction.

Features of a transaction come only from strictly earlier transactions (point-in-time), per
card (Source), merchant (Target), Location, Type and their pairs. Label-derived features are
not built here: they depend on the split and are added by the model from training labels only
(:func:`gnn.features.history_label_features`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from gnn.data.dataset import NodeDataset, as_tensor_x, stratified_splits
from gnn.data.history import group_codes, history_aggregates, previous_k_edges

TARGET = "txn"
# Group keys for history features: each entity, and the pairs a fraudster's pattern shows in.
HISTORY_KEYS: tuple[tuple[str, ...], ...] = (
    ("Source",),
    ("Target",),
    ("Location",),
    ("Type",),
    ("Source", "Target"),
    ("Source", "Location"),
    ("Source", "Type"),
    ("Target", "Location"),
    ("Target", "Type"),
    ("Location", "Type"),
    ("Source", "Target", "Location", "Type"),
)
# Rolling windows in rows (S-FFSD's Time is a row counter: one transaction per tick).
WINDOWS: tuple[float, ...] = (50.0, 500.0, 5000.0)
DISTINCT: dict[str, tuple[str, ...]] = {
    "Source": ("Target", "Location", "Type"),
    "Target": ("Source", "Location", "Type"),
    "Location": ("Source", "Target"),
    "Type": ("Source", "Target"),
}
# Relations of the transaction graph: previous transactions sharing this column.
EDGE_KEYS: tuple[str, ...] = ("Source", "Target", "Location")


def sffsd_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features for a transaction log with S-FFSD's columns, in time order.

    Own columns: Time, Amount, log Amount and category codes of Target, Location and Type
    (codes are an attribute of the row itself, not of other rows).
    """
    frame = frame.reset_index(drop=True)
    own = pd.DataFrame(
        {
            "time": frame["Time"].to_numpy(np.float64),
            "amount": frame["Amount"].to_numpy(np.float64),
            "log_amount": np.log1p(frame["Amount"].clip(lower=0).to_numpy(np.float64)),
            "amount_cents": np.round(frame["Amount"].to_numpy(np.float64) % 1, 2),
            "target_code": group_codes(frame, ["Target"]).astype(np.float64),
            "location_code": group_codes(frame, ["Location"]).astype(np.float64),
            "type_code": group_codes(frame, ["Type"]).astype(np.float64),
            "new_source": (~frame["Source"].duplicated()).to_numpy(np.float64),
            "new_pair": (~frame[["Source", "Target"]].duplicated()).to_numpy(np.float64),
        }
    )
    parts = [own]
    # Row-level flags about the row itself (known when it happens): summed over a group's
    # earlier rows they show bursts of brand-new cards or card-merchant pairs.
    indicators = {
        "new_source": (~frame["Source"].duplicated()).to_numpy(np.float64),
        "new_pair": (~frame[["Source", "Target"]].duplicated()).to_numpy(np.float64),
    }
    for key in HISTORY_KEYS:
        single = len(key) == 1
        parts.append(
            history_aggregates(
                frame,
                list(key),
                amount="Amount",
                time="Time",
                windows=WINDOWS if single or len(key) == 2 else (),
                distinct=DISTINCT.get(key[0], ()) if single else (),
                indicators=indicators if single and key[0] != "Source" else None,
            )
        )
    return pd.concat(parts, axis=1)


def load_sffsd(
    path: str | Path,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
    train_fraction: float = 0.4,
    edges_per_key: int = 3,
) -> NodeDataset:
    """Load ``S-FFSD.csv`` as transaction-level node classification.

    Every transaction is a node (unlabelled ones, ``Labels == 2``, stay as context with
    ``y = -1``). Splits: ``train_fraction`` of the labelled transactions for training, the rest
    for test, stratified, one per seed; validation is carved from training by the evaluator.
    Edges: per :data:`EDGE_KEYS` column, each transaction receives edges from its
    ``edges_per_key`` previous transactions with the same value.

    Args:
        path: The CSV file.
        seeds: One split per seed.
        train_fraction: Fraction of labelled transactions used for training (published: 0.4).
        edges_per_key: Fan-in per relation.
    """
    frame = pd.read_csv(path)
    frame = frame.sort_values("Time", kind="stable").reset_index(drop=True)
    feats = sffsd_features(frame)
    y = frame["Labels"].to_numpy(np.int64)
    y = np.where(y == 2, -1, y)

    data = HeteroData()
    data[TARGET].x = as_tensor_x(feats.to_numpy(np.float32))
    for col in EDGE_KEYS:
        codes = group_codes(frame, [col])
        data[TARGET, f"prev_{col.lower()}", TARGET].edge_index = torch.as_tensor(
            previous_k_edges(codes, edges_per_key)
        )
    history = {col: group_codes(frame, [col]) for col in ("Source", "Target", "Location", "Type")}
    history["Source+Target"] = group_codes(frame, ["Source", "Target"])
    history["Target+Location"] = group_codes(frame, ["Target", "Location"])
    history["all"] = np.zeros(len(frame), dtype=np.int64)
    splits = stratified_splits(y, (train_fraction, 0.0, 1.0 - train_fraction), seeds)
    return NodeDataset(
        name="S-FFSD",
        data=data,
        target=TARGET,
        y=y,
        feature_names=list(feats.columns),
        node_ids=frame.index.to_numpy().astype(str),
        splits=splits,
        history_keys=history,
        categorical=["target_code", "location_code", "type_code"],
    )
