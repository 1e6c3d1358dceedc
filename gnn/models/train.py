"""GNN training shared by the graph models, wrapped as a scorer.

Full-batch by default: every epoch runs the whole graph, best for graphs of up to a few hundred
thousand nodes. With ``batch_size`` set, epochs run over mini-batches of sampled neighbourhoods
(:class:`gnn.sampling.CSRNeighborLoader`: plain torch, pyg-lib / torch-sparse are not required)
and whole-graph scoring runs layer by layer (the module's ``layerwise_inference``), so memory
grows with the graph's size, not with its receptive fields. Inputs are the target nodes'
own features plus their training-label features, scaled by :class:`gnn.features.FeatureScaler`
fitted once at ``fit`` (target type: training nodes; other types: the training graph's nodes) and
stored on the scorer, so a node's score never depends on which other nodes are scored with it.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.utils import k_hop_subgraph

from gnn.data.dataset import NodeDataset, Split
from gnn.device import get_device
from gnn.features import FeatureScaler
from gnn.models.base import FeatureOptions, seed_everything, tabular_features
from gnn.models.losses import focal_loss, weighted_bce
from gnn.sampling import CSRGraph, CSRNeighborLoader

# Whole-graph scoring switches to layer-wise inference (when the module has it) from this many
# nodes, even for a full-batch model: full-batch message passing materialises [E, hidden] messages
# per relation, which is what runs out of memory first.
LAYERWISE_NODES = 500_000


def raw_inputs(
    dataset: NodeDataset, label_mask: np.ndarray, features: FeatureOptions, label_prior: float | None = None
) -> tuple[dict[str, np.ndarray | torch.Tensor | None], list[str]]:
    """Unscaled inputs per node type (``None``: a type without features) and the target's names;
    label features shrink towards ``label_prior`` (see :func:`tabular_features`)."""
    x, names = tabular_features(dataset, label_mask, features, label_prior=label_prior)
    raw: dict[str, np.ndarray | torch.Tensor | None] = {dataset.target: x}
    for nt in dataset.data.node_types:
        if nt != dataset.target:
            xs = dataset.data[nt].x
            raw[nt] = xs if xs is not None and xs.shape[1] > 0 else None
    return raw, names


def training_prior(dataset: NodeDataset, train: np.ndarray) -> float:
    """The rate label features shrink towards: the dataset's ``label_prior``, else the fraud
    rate of the labelled training nodes (what :func:`gnn.features.label_features` would use)."""
    if dataset.label_prior is not None:
        return float(dataset.label_prior)
    known = train & (dataset.y >= 0)
    return float((dataset.y[known] == 1).sum() / max(int(known.sum()), 1))


def fit_scalers(
    raw: dict[str, np.ndarray | torch.Tensor | None], target: str, train: np.ndarray
) -> dict[str, FeatureScaler]:
    """One :class:`FeatureScaler` per node type with features: the target type's fitted on the
    ``train`` nodes, every other type's on all its nodes (they carry no labels or split)."""
    return {
        nt: FeatureScaler.fit(x, train if nt == target else None) for nt, x in raw.items() if x is not None
    }


def scale_inputs(
    dataset: NodeDataset,
    raw: dict[str, np.ndarray | torch.Tensor | None],
    scalers: dict[str, FeatureScaler],
) -> dict[str, torch.Tensor]:
    """``raw`` scaled with the fitted ``scalers``; types without features get a constant column."""
    x_dict = {}
    for nt, x in raw.items():
        if x is None:
            x_dict[nt] = torch.ones((dataset.data[nt].num_nodes, 1))
        elif nt not in scalers:
            raise ValueError(f"node type {nt!r} has features here but had none when the model was fit")
        else:
            x_dict[nt] = scalers[nt].transform(x)
    return x_dict


def gnn_inputs(
    dataset: NodeDataset,
    label_mask: np.ndarray,
    features: FeatureOptions,
    scalers: dict[str, FeatureScaler],
    label_prior: float | None = None,
) -> tuple[dict[str, torch.Tensor], dict[tuple[str, str, str], torch.Tensor], list[str]]:
    """``x_dict`` (:func:`scale_inputs`), ``edge_index_dict`` and the target's feature names."""
    raw, names = raw_inputs(dataset, label_mask, features, label_prior)
    edge_index_dict = {et: dataset.data[et].edge_index for et in dataset.data.edge_types}
    return scale_inputs(dataset, raw, scalers), edge_index_dict, names


EdgeType = tuple[str, str, str]


def raw_edges(
    dataset: NodeDataset, with_attrs: bool
) -> tuple[dict[EdgeType, torch.Tensor], dict[EdgeType, torch.Tensor]]:
    """Edges the GNN may read and, with ``with_attrs``, their unscaled ``edge_attr`` per relation.

    The as-of rule: a relation whose store carries ``edge_age_h`` (hours from the edge's first
    sighting to the dataset's decision time, :mod:`gnn.data.entity_graph`) keeps only edges seen
    before that time, so no message crosses an edge from the decision's future.
    """
    ei_dict: dict[EdgeType, torch.Tensor] = {}
    ea_dict: dict[EdgeType, torch.Tensor] = {}
    for et in dataset.data.edge_types:
        store = dataset.data[et]
        ei = store.edge_index
        ea = store.get("edge_attr") if with_attrs else None
        age = store.get("edge_age_h")
        if age is not None:
            keep = age >= 0
            if not bool(keep.all()):
                ei = ei[:, keep]
                ea = None if ea is None else ea[keep]
        ei_dict[et] = ei
        if ea is not None and ea.dim() == 2 and ea.shape[1] > 0:
            ea_dict[et] = ea
    return ei_dict, ea_dict


class GNNScorer:
    """Train a graph module, full-batch or on sampled mini-batches; early stopping on validation AUPRC.

    Subclasses set ``name`` and implement ``build(in_dims, metadata) -> nn.Module`` whose
    forward is ``(x_dict, edge_index_dict) -> logits [N_target]``; a module that also has
    ``layerwise_inference(x_dict, graph: CSRGraph, chunk_size) -> logits`` is scored layer by
    layer in mini-batch mode and on large graphs (:data:`LAYERWISE_NODES`).

    Args:
        hidden: Hidden width.
        layers: Message-passing layers (or filter order, for BWGNN).
        dropout: Dropout rate.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        epochs: Maximum epochs.
        patience: Early-stopping patience (epochs without a validation AUPRC gain).
        loss: ``"weighted_bce"`` or ``"focal"``.
        features: Derived input features (default: no neighbour aggregates, the model
            aggregates itself; training-label features on).
        seed: Seed for torch / numpy / random.
        device: Explicit device (default :func:`gnn.device.get_device`).
        batch_size: ``None``: full-batch (default). An int: seeds per mini-batch; each epoch
            visits every training node once, in neighbourhoods sampled by
            :class:`gnn.sampling.CSRNeighborLoader`; validation scores come layer-wise.
        num_neighbors: Neighbours sampled per relation per hop in mini-batch mode (default
            ``[10] * layers``; ``-1`` takes all).
        chunk_size: Nodes per chunk in layer-wise inference.
        edge_features: Read each relation's ``edge_attr`` (scaled by a :class:`FeatureScaler`
            per relation fitted at ``fit``) where the module supports it (:class:`HeteroSAGE`).
        amp: Train under ``torch.autocast`` (bfloat16) when the device is CUDA; scoring stays in
            float32, so served scores do not depend on it. Ignored on the CPU.
    """

    name = "gnn"
    # Inputs are scaled with statistics fitted at ``fit`` (``scalers_``), so scoring an
    # applicant's star gives the applicant its own scaled row. But the star holds each
    # neighbour with only the identifier it shares with the applicant: the neighbours' label
    # features, and the messages they pass on, are not the batch graph's.
    serves_new_graph = True
    serves_applicants = False
    serving_limit = (
        "an applicant's star holds each neighbour with only the identifier it shares with the applicant, "
        "so the neighbours' inputs and messages differ from the batch graph's"
    )

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.2,
        lr: float = 5e-3,
        weight_decay: float = 1e-5,
        epochs: int = 300,
        patience: int = 40,
        loss: str = "weighted_bce",
        features: FeatureOptions | None = None,
        seed: int = 0,
        device: str | None = None,
        batch_size: int | None = None,
        num_neighbors: list[int] | None = None,
        chunk_size: int = 65_536,
        edge_features: bool = False,
        amp: bool = False,
    ) -> None:
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.patience = patience
        self.loss = loss
        self.features = features or FeatureOptions(neighbour_hops=0, label_hops=1)
        self.seed = seed
        self.device = device
        self.batch_size = batch_size
        self.num_neighbors = num_neighbors
        self.chunk_size = chunk_size
        self.edge_features = edge_features
        self.amp = amp
        self.edge_scalers_: dict[EdgeType, FeatureScaler] = {}
        self.edge_dims_: dict[EdgeType, int] = {}
        self.feature_names: list[str] = []
        self.validation_scores_: np.ndarray | None = None
        self.label_mask_: np.ndarray | None = None
        self.module_: nn.Module | None = None
        self.scalers_: dict[str, FeatureScaler] | None = None
        self.label_prior_: float | None = None
        self.best_epoch_: int = 0

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        keys = ("hidden", "layers", "dropout", "lr", "weight_decay", "epochs", "patience", "loss", "seed")
        out = {"name": self.name, **{k: getattr(self, k) for k in keys}, "features": vars(self.features)}
        if getattr(self, "batch_size", None) is not None:
            # Only when set: full-batch configs stay as they were saved before mini-batches existed.
            out.update(batch_size=self.batch_size, num_neighbors=self._fanout())
        if getattr(self, "edge_features", False):
            out["edge_features"] = True
        if getattr(self, "amp", False):
            out["amp"] = True
        return out

    def _fanout(self) -> list[int]:
        return list(self.num_neighbors) if self.num_neighbors is not None else [10] * self.layers

    def _layerwise(self, num_nodes: int) -> bool:
        """Whether whole-graph scoring goes layer by layer (see :data:`LAYERWISE_NODES`)."""
        return hasattr(self.module_, "layerwise_inference") and (
            getattr(self, "batch_size", None) is not None or num_nodes >= LAYERWISE_NODES
        )

    def _all_logits(
        self,
        x_dict: dict[str, torch.Tensor],
        ei_dict: dict[tuple[str, str, str], torch.Tensor],
        graph: CSRGraph | None = None,
        ea_dict: dict[EdgeType, torch.Tensor] | None = None,
        return_embedding: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode logits of every target node: layer-wise (over ``graph``, built from
        ``ei_dict`` when not given) or one full-batch forward; with ``return_embedding`` the
        module's embedding too."""
        self.module_.eval()
        dev = next(self.module_.parameters()).device
        extra: dict[str, Any] = {}
        if ea_dict:
            extra["edge_attr_dict"] = ea_dict
        if return_embedding:
            extra["return_embedding"] = True
        if self._layerwise(sum(x.shape[0] for x in x_dict.values())):
            if graph is None:
                graph = CSRGraph(
                    {et: ei.cpu() for et, ei in ei_dict.items()}, {nt: x.shape[0] for nt, x in x_dict.items()}
                )
            return self.module_.layerwise_inference(
                x_dict, graph, getattr(self, "chunk_size", 65_536), **extra
            )
        if ea_dict:
            extra["edge_attr_dict"] = {k: v.to(dev) for k, v in ea_dict.items()}
        return self.module_(
            {k: v.to(dev) for k, v in x_dict.items()}, {k: v.to(dev) for k, v in ei_dict.items()}, **extra
        )

    def _edges(
        self, dataset: NodeDataset
    ) -> tuple[dict[EdgeType, torch.Tensor], dict[EdgeType, torch.Tensor]]:
        """Edges (as-of filtered) and the scaled edge attributes the module was fit with."""
        ei_dict, raw = raw_edges(dataset, getattr(self, "edge_features", False))
        scalers = getattr(self, "edge_scalers_", None) or {}
        return ei_dict, {et: scalers[et].transform(ea) for et, ea in raw.items() if et in scalers}

    def build(
        self, in_dims: dict[str, int], metadata: tuple[list[str], list[tuple[str, str, str]]], target: str
    ) -> nn.Module:
        """The module to train; subclasses override."""
        raise NotImplementedError

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, pos_weight: float) -> torch.Tensor:
        if self.loss == "focal":
            return focal_loss(logits, y)
        if self.loss == "weighted_bce":
            return weighted_bce(logits, y, pos_weight)
        raise ValueError(f"unknown loss {self.loss!r}")

    def fit(self, dataset: NodeDataset, split: Split) -> GNNScorer:
        """Train on ``split.train`` (full-batch, or mini-batches with ``batch_size``); keep the
        epoch with the best validation AUPRC."""
        seed_everything(self.seed)
        dev = get_device(self.device)
        # Fixed here, like the scalers: with the prior taken from the scored set's readable
        # labels, adding labelled nodes anywhere would move every node's label features.
        self.label_prior_ = training_prior(dataset, split.train)
        raw, self.feature_names = raw_inputs(dataset, split.train, self.features, self.label_prior_)
        self.scalers_ = fit_scalers(raw, dataset.target, split.train)
        minibatch = self.batch_size is not None
        # Mini-batches move to the device one at a time; the whole graph stays on the host.
        home = torch.device("cpu") if minibatch else dev
        x_dict = {k: v.to(home) for k, v in scale_inputs(dataset, raw, self.scalers_).items()}
        del raw
        ei_dict, ea_raw = raw_edges(dataset, self.edge_features)
        # Edge attributes carry no labels: scaled on every edge of the training graph.
        self.edge_scalers_ = {et: FeatureScaler.fit(ea) for et, ea in ea_raw.items()}
        self.edge_dims_ = {et: int(ea.shape[1]) for et, ea in ea_raw.items()}
        ea_dict = {et: self.edge_scalers_[et].transform(ea).to(home) for et, ea in ea_raw.items()}
        del ea_raw
        ei_dict = {et: ei.to(home) for et, ei in ei_dict.items()}
        metadata = (list(x_dict), list(ei_dict))
        self.module_ = self.build({k: v.shape[1] for k, v in x_dict.items()}, metadata, dataset.target).to(
            dev
        )
        y = torch.as_tensor(np.clip(dataset.y, 0, 1), dtype=torch.float32, device=dev)
        tr = torch.as_tensor(split.train, device=dev)
        y_val = dataset.y[split.val]
        pos = float(y[tr].sum())
        pos_weight = (float(tr.sum()) - pos) / max(pos, 1.0)
        opt = torch.optim.Adam(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loader = None
        if minibatch:
            graph = HeteroData()
            for nt, x in x_dict.items():
                graph[nt].x = x
            for et, ei in ei_dict.items():
                graph[et].edge_index = ei
                if et in ea_dict:
                    graph[et].edge_attr = ea_dict[et]
            loader = CSRNeighborLoader(
                graph,
                self._fanout(),
                (dataset.target, torch.as_tensor(split.train)),
                batch_size=self.batch_size,
                shuffle=True,
                seed=self.seed,
            )
        # bfloat16 autocast on CUDA only: its exponent range is float32's, so no loss scaling is
        # needed; the loss is computed in float32 on float32 logits.
        autocast = bool(getattr(self, "amp", False)) and dev.type == "cuda"
        edge_kw = {"edge_attr_dict": ea_dict} if ea_dict else {}
        best, best_state, bad = -1.0, None, 0
        for epoch in range(self.epochs):
            self.module_.train()
            if loader is None:
                opt.zero_grad()
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = self.module_(x_dict, ei_dict, **edge_kw)
                loss = self._loss(logits.float()[tr], y[tr], pos_weight)
                loss.backward()
                opt.step()
            else:
                for batch in loader:
                    batch = batch.to(dev)
                    size = batch[dataset.target].batch_size
                    opt.zero_grad()
                    kw = {"edge_attr_dict": batch.edge_attr_dict} if ea_dict else {}
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                        logits = self.module_(batch.x_dict, batch.edge_index_dict, **kw)[:size]
                    # pos_weight stays the whole training set's: batches vary in fraud rate.
                    loss = self._loss(logits.float(), y[batch[dataset.target].n_id[:size]], pos_weight)
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                # The loader's CSR index serves validation too: built once per fit, not per epoch.
                graph = None if loader is None else loader.sampler.graph
                val = (
                    torch.sigmoid(self._all_logits(x_dict, ei_dict, graph, ea_dict)).cpu().numpy()[split.val]
                )
            ap = average_precision_score(y_val, val)
            if ap > best:
                best, best_state, bad, self.best_epoch_ = (
                    ap,
                    copy.deepcopy(self.module_.state_dict()),
                    0,
                    epoch,
                )
                self.validation_scores_ = val.astype(np.float64)
            else:
                bad += 1
                if bad >= self.patience:
                    break
        self.module_.load_state_dict(best_state)
        self.label_mask_ = split.train.copy()
        return self

    @torch.no_grad()
    def predict_proba(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """P(fraud) per target node, full graph, inputs scaled as at ``fit``.

        ``label_mask`` (default: the training nodes) says whose labels the label features
        read; pass one for any dataset other than the training one. Label rates shrink towards
        the training prior (``label_prior_``), whatever the dataset's own.
        """
        if self.module_ is None:
            raise RuntimeError(f"{type(self).__name__}.predict_proba before fit")
        scalers = getattr(self, "scalers_", None)  # absent from scorers pickled before it existed
        if scalers is None:
            raise RuntimeError(f"{type(self).__name__} was fit without stored input scalers; refit it")
        mask = self.label_mask_ if label_mask is None else label_mask
        prior = getattr(self, "label_prior_", None)
        x_dict, _, _ = gnn_inputs(dataset, mask, self.features, scalers, prior)
        ei_dict, ea_dict = self._edges(dataset)
        return (
            torch.sigmoid(self._all_logits(x_dict, ei_dict, None, ea_dict)).cpu().numpy().astype(np.float64)
        )

    @torch.no_grad()
    def embed(
        self, dataset: NodeDataset, label_mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """P(fraud) per target node and the module's embedding ``[N_target, embed_dim]``
        (a module built with one, :class:`HeteroSAGE`'s ``embed_dim``); inputs as :meth:`predict_proba`."""
        if self.module_ is None:
            raise RuntimeError(f"{type(self).__name__}.embed before fit")
        mask = self.label_mask_ if label_mask is None else label_mask
        x_dict, _, _ = gnn_inputs(dataset, mask, self.features, self.scalers_, self.label_prior_)
        ei_dict, ea_dict = self._edges(dataset)
        logits, emb = self._all_logits(x_dict, ei_dict, None, ea_dict, return_embedding=True)
        return (
            torch.sigmoid(logits).cpu().numpy().astype(np.float64),
            emb.float().cpu().numpy().astype(np.float64),
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the module on the CPU: a model trained on a GPU loads on a host without CUDA.

        The live module stays where it is (a copy is moved), so training can go on after a save.
        """
        state = dict(self.__dict__)
        module = state.get("module_")
        if module is not None and any(p.device.type != "cpu" for p in module.parameters()):
            state["module_"] = copy.deepcopy(module).cpu()
        return state

    def state_dict(self) -> dict[str, Any]:
        """Weights, input scalers and label prior, config and feature names, for a registry to save."""
        return {
            "config": self.config,
            "feature_names": self.feature_names,
            "weights": None
            if self.module_ is None
            else {k: v.detach().cpu() for k, v in self.module_.state_dict().items()},
            "label_prior": self.label_prior_,
            "scalers": {
                nt: {"mean": torch.as_tensor(sc.mean), "std": torch.as_tensor(sc.std)}
                for nt, sc in (self.scalers_ or {}).items()
            },
            "edge_scalers": {
                "__".join(et): {"mean": torch.as_tensor(sc.mean), "std": torch.as_tensor(sc.std)}
                for et, sc in (getattr(self, "edge_scalers_", None) or {}).items()
            },
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.module_!r})"
            if self.module_ is not None
            else f"{type(self).__name__}()"
        )


def k_hop_data(data: HeteroData, target: str, node: int, hops: int) -> tuple[HeteroData, int]:
    """The ``hops``-hop in-neighbourhood of one target node over target-to-target relations,
    for single-node inference; returns the subgraph and the node's index in it.

    Relations from other node types are dropped (their nodes are not re-indexed here).
    """
    rels = [et for et in data.edge_types if et[0] == target and et[2] == target]
    n = data[target].num_nodes
    merged = (
        torch.cat([data[et].edge_index for et in rels], 1) if rels else torch.zeros((2, 0), dtype=torch.long)
    )
    subset, _, mapping, _ = k_hop_subgraph(
        node, hops, merged, relabel_nodes=True, num_nodes=n, flow="source_to_target"
    )
    out = HeteroData()
    out[target].x = data[target].x[subset]
    keep = torch.full((n,), -1, dtype=torch.long)
    keep[subset] = torch.arange(len(subset))
    for et in rels:
        ei = data[et].edge_index
        m = (keep[ei[0]] >= 0) & (keep[ei[1]] >= 0)
        out[et].edge_index = keep[ei[:, m]]
    return out, int(mapping[0])
