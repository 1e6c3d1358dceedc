"""The common structure every loader returns, and the split helpers.

A :class:`NodeDataset` is a (possibly heterogeneous) graph with one *target* node type whose
nodes are scored. Labels live beside the graph (``y``, ``-1`` = unlabelled) so a split can never
leak them into the tensors a model reads; models build label-derived features themselves, from
the training part of a :class:`Split` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch_geometric.data import HeteroData


@dataclass(frozen=True)
class Split:
    """Boolean masks over the target nodes; disjoint, labelled nodes only.

    Attributes:
        train: Nodes whose labels a model may read (fit, label features).
        val: Nodes for early stopping, model choice, calibration and thresholds.
        test: Nodes only scored at the end.
        seed: The seed that drew the split (or the mask index for given splits).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int = 0

    def __post_init__(self) -> None:
        overlap = (self.train & self.val) | (self.train & self.test) | (self.val & self.test)
        if overlap.any():
            raise ValueError(f"split {self.seed}: {int(overlap.sum())} nodes are in two parts")


@dataclass
class NodeDataset:
    """A graph with one scored node type, its labels and its splits.

    Attributes:
        name: Short dataset name used in reports.
        data: ``HeteroData``; ``data[t].x`` is float32 for every node type ``t`` (possibly zero
            columns), ``data[et].edge_index`` int64 ``[2, E]`` per edge type. Edges of temporal
            datasets point from earlier to later nodes only, so message passing never reads the
            future.
        target: The node type that is scored.
        y: int64 ``[N_target]``; 1 = fraud, 0 = legitimate, -1 = unlabelled.
        feature_names: Names of the columns of ``data[target].x``.
        node_ids: ``[N_target]`` external ids, for reports and write-back.
        splits: One :class:`Split` per seed (or per given mask).
        history_keys: Temporal datasets only: name -> int64 group code per target node (for
            example the card of a transaction). Nodes are in time order; label features for a node
            then read only earlier training nodes of the same group.
        categorical: Feature names that are integer category codes (the GBDT treats them so).
        label_prior: The fraud rate label features shrink towards; ``None``: the labelled
            fraction of the label mask in use. A small neighbourhood scored online carries the
            training rate, which its own few labels do not give.
        notes: What the loader left out or could not use, in words, for the report.
    """

    name: str
    data: HeteroData
    target: str
    y: np.ndarray
    feature_names: list[str]
    node_ids: np.ndarray
    splits: list[Split] = field(default_factory=list)
    history_keys: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: list[str] = field(default_factory=list)
    label_prior: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        """Number of target nodes."""
        return int(self.y.shape[0])

    @property
    def x(self) -> np.ndarray:
        """Own features of the target nodes, float32 ``[N_target, F]``."""
        return self.data[self.target].x.numpy()

    @property
    def labelled(self) -> np.ndarray:
        """Mask of target nodes with a 0/1 label."""
        return self.y >= 0

    def __repr__(self) -> str:
        pos = int((self.y == 1).sum())
        return (
            f"NodeDataset({self.name}, target={self.target}, nodes={self.num_nodes}, "
            f"features={len(self.feature_names)}, positives={pos}, "
            f"edge_types={len(self.data.edge_types)}, splits={len(self.splits)})"
        )


def stratified_splits(
    y: np.ndarray,
    fractions: tuple[float, float, float],
    seeds: list[int] | tuple[int, ...],
) -> list[Split]:
    """Stratified random train/val/test splits over the labelled nodes (``y >= 0``).

    Args:
        y: Labels, ``-1`` = unlabelled (never put in any part).
        fractions: ``(train, val, test)`` fractions of the labelled nodes, summing to at most 1.
        seeds: One split per seed.
    """
    f_train, f_val, f_test = fractions
    if f_train + f_val + f_test > 1 + 1e-9:
        raise ValueError(f"fractions {fractions} sum above 1")
    idx = np.flatnonzero(y >= 0)
    out: list[Split] = []
    for seed in seeds:
        rest_frac = 1.0 - f_train
        tr, rest = train_test_split(idx, train_size=f_train, stratify=y[idx], random_state=seed)
        masks = {name: np.zeros(len(y), dtype=bool) for name in ("train", "val", "test")}
        masks["train"][tr] = True
        if f_val > 0:
            va, te = train_test_split(rest, train_size=f_val / rest_frac, stratify=y[rest], random_state=seed)
            if f_test < rest_frac - f_val - 1e-9:
                te, _ = train_test_split(
                    te, train_size=f_test / (rest_frac - f_val), stratify=y[te], random_state=seed
                )
            masks["val"][va] = True
        else:
            te = rest
        masks["test"][te] = True
        out.append(Split(masks["train"], masks["val"], masks["test"], seed))
    return out


def carve_validation(split: Split, y: np.ndarray, fraction: float = 0.25) -> Split:
    """Move a stratified ``fraction`` of the training nodes into validation.

    For protocols with no validation part (S-FFSD's 40/60), so early stopping, model choice
    and thresholds never look at test labels.
    """
    tr = np.flatnonzero(split.train)
    keep, va = train_test_split(tr, test_size=fraction, stratify=y[tr], random_state=split.seed)
    train = np.zeros_like(split.train)
    val = split.val.copy()
    train[keep] = True
    val[va] = True
    return Split(train, val, split.test.copy(), split.seed)


def as_tensor_x(x: np.ndarray) -> torch.Tensor:
    """float32 tensor; infinities become NaN.

    NaN ("no history") is kept: the GBDT reads it as missing, and GNN models map it to 0
    after scaling (:class:`gnn.features.FeatureScaler`, fitted at fit time).
    """
    # pandas 3 hands out read-only views, which torch refuses to share: copy only those.
    t = torch.as_tensor(np.require(x, dtype=np.float32, requirements=["W"]))
    return torch.where(torch.isinf(t), torch.full_like(t, float("nan")), t)
