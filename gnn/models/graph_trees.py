"""GNN into trees: a heterogeneous GNN's score and embedding become columns of the GBDT.

Trees over fixed neighbour aggregates are a strong baseline (GADBench); what they cannot build is
a learned, multi-hop, time-aware summary of a node's neighbourhood. :class:`GraphTreesScorer`
hands them one: a :class:`gnn.models.hetero_sage.HeteroSAGEScorer` with a narrow embedding layer
is fitted, and its fraud probability and embedding are appended to the tree model's own columns.

Out of fold, so no training row's GNN columns saw its own label: the training nodes are split
into ``folds`` stratified folds; for each fold a GNN is fitted on the other folds' labels (its
label features read only those too), and it supplies the columns of the fold's nodes. Every
other node (validation, test, unlabelled), and every node of any graph scored later, gets its
columns from the GNN fitted on all training nodes, which is the one kept and served.

Embeddings of separately trained networks live in different bases, so each network's embedding
is put in a canonical basis computed from that network's own outputs on every node of the
training graph (:func:`canonical_basis`: principal axes, whitened, each signed to rise with the
network's own fraud logit). A fold's columns are then a function of the fold model alone, and no
training row's columns, score or embedding, depend on its own label
(``tests/test_graph_trees.py`` flips one and checks). The bases of different folds agree only
approximately; :attr:`GraphTreesScorer.basis_agreement_` reports how well, per fold.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from gnn.data.dataset import NodeDataset, Split
from gnn.models.base import FeatureOptions
from gnn.models.gbdt import GBDTScorer
from gnn.models.hetero_sage import HeteroSAGEScorer


def default_gnn(seed: int = 0, device: str | None = None, embed_dim: int = 8) -> HeteroSAGEScorer:
    """The combination's GNN: 2-layer heterogeneous SAGE with edge-time inputs and an
    ``embed_dim``-wide embedding; own features plus 1-hop training-label features."""
    return HeteroSAGEScorer(
        hidden=64,
        layers=2,
        epochs=200,
        patience=30,
        features=FeatureOptions(neighbour_hops=0, label_hops=1),
        seed=seed,
        device=device,
        embed_dim=embed_dim,
        edge_features=True,
    )


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """``folds`` disjoint position arrays covering ``range(n)``, from a seeded permutation.

    Not stratified on purpose: folds drawn from the labels would move when a label changes, and
    a node's out-of-fold column would then depend on its own label through its fold.
    """
    return np.array_split(np.random.default_rng(seed).permutation(n), folds)


def canonical_basis(emb: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, W)`` such that ``(emb - mean) @ W`` are ``emb``'s principal components over its
    rows, each scaled to unit variance and signed to correlate positively with ``logit(score)``.

    Principal axes order the columns by variance, whitening puts them on one scale, the sign fixes
    the last freedom: two networks that learnt the same directions give the same columns.
    """
    mean = emb.mean(axis=0)
    centred = emb - mean
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    std = sv / np.sqrt(max(len(emb) - 1, 1))
    w = vt.T / np.where(std > 1e-12, std, 1.0)
    proj = centred @ w
    p = np.clip(score, 1e-7, 1 - 1e-7)
    logit = np.log(p / (1 - p))
    corr = (proj * (logit - logit.mean())[:, None]).sum(axis=0)
    w *= np.where(corr < 0, -1.0, 1.0)
    return mean, w


class GraphTreesScorer:
    """GBDT over its own columns plus a GNN's out-of-fold score and embedding.

    Args:
        gnn: The GNN (default :func:`default_gnn`), or keyword arguments of a
            :class:`HeteroSAGEScorer` (``embed_dim`` defaults to 8); it must have an ``embed_dim``.
        trees: The tree model (default: :class:`GBDTScorer` without refit, so the served booster
            is the validated one and its validation scores are held out for calibration), or
            keyword arguments of a :class:`GBDTScorer` (``refit`` defaults to False).
        folds: Out-of-fold folds over the training nodes (each one more GNN fit).
        seed: Fold and model seed.
        device: The GNN's device (``None``: :func:`gnn.device.get_device`).

    Attributes:
        gnn_: The GNN fitted on every training node: the one that scores at predict time.
        oof_columns_: The GNN columns the trees were fitted on (training rows out of fold).
        basis_: The served GNN's canonical embedding basis ``(mean, W)``, fixed at fit.
        basis_agreement_: Per fold, the mean correlation of its columns with the served model's
            over all nodes (a diagnostic: low values mean the fold's embedding columns disagree).
    """

    name = "gnn+gbdt"
    serves_new_graph = True

    def __init__(
        self,
        gnn: HeteroSAGEScorer | dict[str, Any] | None = None,
        trees: GBDTScorer | dict[str, Any] | None = None,
        folds: int = 5,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        # Keyword arguments build fresh models: a registry of defaults (gnn.training) can then
        # hold plain dicts, never instances shared between the scorers it makes.
        if isinstance(gnn, dict):
            gnn = HeteroSAGEScorer(**{"embed_dim": 8, "seed": seed, **gnn})
        if isinstance(trees, dict):
            trees = GBDTScorer(**{"refit": False, "seed": seed, **trees})
        self.gnn = gnn if gnn is not None else default_gnn(seed, device)
        if device is not None:
            self.gnn.device = device
        if getattr(self.gnn, "embed_dim", None) is None:
            raise ValueError("gnn+gbdt needs a GNN with an embed_dim (its embedding columns)")
        self.trees = trees if trees is not None else GBDTScorer(refit=False, seed=seed)
        self.folds = folds
        self.seed = seed
        self.feature_names: list[str] = []
        self.validation_scores_: np.ndarray | None = None
        self.held_out_mask_: np.ndarray | None = None
        self.held_out_scores_: np.ndarray | None = None
        self.gnn_: HeteroSAGEScorer | None = None
        self.trees_: GBDTScorer | None = None
        self.oof_columns_: np.ndarray | None = None
        self.basis_: tuple[np.ndarray, np.ndarray] | None = None
        self.basis_agreement_: list[float] = []

    @property
    def serves_applicants(self) -> bool:
        """Whether an applicant's star (:func:`gnn.online_features.star_dataset`) gets the
        batch graph's GNN columns: only a GNN of at most 2 layers without label features and
        without edge attributes does (see :attr:`serving_limit`)."""
        return not self._star_gaps()

    @property
    def serving_limit(self) -> str:
        """Why an applicant's star cannot be scored like the batch graph (empty when it can)."""
        return "; ".join(self._star_gaps())

    def _star_gaps(self) -> list[str]:
        g = self.gnn
        gaps = []
        if getattr(g, "edge_features", False):
            gaps.append("the GNN reads edge times, which an applicant's star does not carry")
        if g.features.label_hops > 0 or g.features.neighbour_hops > 0:
            gaps.append("the GNN's inputs read neighbours' neighbourhoods, which a star does not hold")
        if g.layers > 2:
            gaps.append("a GNN deeper than 2 layers reads beyond the star")
        return gaps

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        return {
            "name": self.name,
            "gnn": self.gnn.config,
            "trees": self.trees.config,
            "folds": self.folds,
            "seed": self.seed,
        }

    @staticmethod
    def column_names(embed_dim: int) -> list[str]:
        """Names of the GNN columns the trees read."""
        return ["gnn_score", *(f"gnn_emb_{i}" for i in range(embed_dim))]

    @staticmethod
    def _raw_columns(
        model: HeteroSAGEScorer, dataset: NodeDataset, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return model.embed(dataset, mask)

    @staticmethod
    def _columns(score: np.ndarray, emb: np.ndarray, basis: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean, w = basis
        return np.column_stack([score, (emb - mean) @ w])

    def out_of_fold_columns(self, dataset: NodeDataset, split: Split) -> np.ndarray:
        """``[N, 1 + embed_dim]`` GNN columns for fitting the trees; fits :attr:`gnn_` on the way.

        Training rows come from the fold model that did not read their labels, each model's
        embedding in its own canonical basis; all other rows from :attr:`gnn_`.
        """
        self.gnn_ = copy.deepcopy(self.gnn).fit(dataset, split)
        score, emb = self._raw_columns(self.gnn_, dataset, split.train)
        self.basis_ = canonical_basis(emb, score)
        full = self._columns(score, emb, self.basis_)
        out = full.copy()
        train_idx = np.flatnonzero(split.train)
        self.basis_agreement_ = []
        for held in fold_indices(len(train_idx), self.folds, self.seed):
            part = split.train.copy()
            part[train_idx[held]] = False
            model = copy.deepcopy(self.gnn).fit(dataset, Split(part, split.val, split.test, split.seed))
            f_score, f_emb = self._raw_columns(model, dataset, part)
            cols = self._columns(f_score, f_emb, canonical_basis(f_emb, f_score))
            rows = train_idx[held]
            out[rows] = cols[rows]
            # Diagnostic only (it reads the served model, which saw these rows' labels): mean
            # correlation, column by column, of the fold's columns with the served model's.
            live = [j for j in range(cols.shape[1]) if cols[:, j].std() > 0 and full[:, j].std() > 0]
            corr = [np.corrcoef(cols[:, j], full[:, j])[0, 1] for j in live]
            self.basis_agreement_.append(float(np.mean(corr)) if corr else float("nan"))
        return out

    def fit(self, dataset: NodeDataset, split: Split) -> GraphTreesScorer:
        """Out-of-fold GNN columns on ``split.train``, then the trees over their own columns plus those."""
        cols = self.out_of_fold_columns(dataset, split)
        self.oof_columns_ = cols
        names = self.column_names(cols.shape[1] - 1)
        trees = copy.deepcopy(self.trees)
        trees.extra_features = (cols, names)
        trees.fit(dataset, split)
        # Scoring builds the GNN columns of whatever graph it is given (predict_proba).
        trees.extra_features = None
        self.trees_ = trees
        self.feature_names = list(trees.feature_names)
        self.validation_scores_ = trees.validation_scores_
        self.held_out_mask_ = trees.held_out_mask_
        self.held_out_scores_ = trees.held_out_scores_
        return self

    def inputs(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """The rows the trees read: their own columns, then the served GNN's score and embedding.

        ``label_mask`` (default: what each model read at fit) says whose labels label features read.
        """
        if self.trees_ is None or self.gnn_ is None:
            raise RuntimeError("GraphTreesScorer used before fit")
        own = self.trees_.inputs(dataset, label_mask)
        gnn_cols = self._columns(*self._raw_columns(self.gnn_, dataset, label_mask), self.basis_)
        return np.hstack([own, gnn_cols.astype(np.float32)])

    def predict_proba(self, dataset: NodeDataset, label_mask: np.ndarray | None = None) -> np.ndarray:
        """P(fraud) per target node of any graph with the training graph's node and edge types."""
        return self.trees_.predict_inputs(self.inputs(dataset, label_mask))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without :attr:`oof_columns_` (a fit-time diagnostic, ``[N, 1 + embed_dim]``: 72 MB
        at a million users); the GNN pickles its module on the CPU (:class:`GNNScorer`)."""
        state = dict(self.__dict__)
        state["oof_columns_"] = None
        return state

    def __repr__(self) -> str:
        return f"GraphTreesScorer(folds={self.folds}, gnn={self.gnn_!r}, trees={self.trees_!r})"
