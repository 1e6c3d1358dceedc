"""BWGNN: band-pass Beta-wavelet filters for graph anomaly detection.

Tang, Li, Sun, Li (ICML 2022), "Rethinking Graph Neural Networks for Anomaly Detection",
https://arxiv.org/abs/2205.15508. Anomalies shift spectral energy to high frequencies; a bank of
Beta wavelets splits the spectrum into bands so the classifier can read each one.
Written here from the paper; this version adds a separate self path (heterophily).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch_geometric.utils import scatter

from gnn.models.train import GNNScorer
from gnn.sampling import CSR, CSRGraph

EdgeType = tuple[str, str, str]


def beta_wavelet_coefficients(order: int) -> np.ndarray:
    r"""Polynomial coefficients ``[order + 1, order + 1]`` of the Beta wavelets in ``L``.

    Row ``i`` holds ``c_{i,k}`` with :math:`\beta_i(L) = \sum_k c_{i,k} L^k`, where

    .. math::
        \beta_i(\lambda) = \frac{(\lambda/2)^{i} (1 - \lambda/2)^{C-i}}{2\,B(i+1, C+1-i)},
        \quad i = 0..C,\ \lambda \in [0, 2].
    """
    rows = []
    for i in range(order + 1):
        p = np.polynomial.Polynomial([0, 0.5]) ** i * np.polynomial.Polynomial([1, -0.5]) ** (order - i)
        beta = math.gamma(i + 1) * math.gamma(order + 1 - i) / math.gamma(order + 2)
        coef = np.zeros(order + 1)
        coef[: len(p.coef)] = p.coef / (2 * beta)
        rows.append(coef)
    return np.stack(rows)


def laplacian_apply(h: torch.Tensor, edge_index: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    r""":math:`L h = h - D_{out}^{-1/2} A D_{in}^{-1/2} h` (symmetric normalised for undirected)."""
    src, dst = edge_index
    return h - scatter(h[src] * norm[:, None], dst, 0, dim_size=h.shape[0], reduce="sum")


def edge_norm(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """Per-edge weight ``1 / sqrt(deg_out(src) * deg_in(dst))``."""
    src, dst = edge_index
    ones = torch.ones(src.numel(), device=src.device)
    d_out = scatter(ones, src, 0, dim_size=n, reduce="sum")
    d_in = scatter(ones, dst, 0, dim_size=n, reduce="sum")
    return (d_out[src] * d_in[dst]).clamp_min(1).rsqrt()


class BWGNN(nn.Module):
    r"""Beta-wavelet filter bank over the target node type's relations.

    .. math::
        h = \mathrm{MLP}(x), \qquad
        z = \big[\, W_{\text{self}} h \,\Vert\, \Vert_{r} \Vert_{i=0}^{C} \beta_i(L_r)\, h \,\big],
        \qquad \text{logit} = \mathrm{MLP}(z)

    ``homogeneous=True`` merges all target-to-target relations into one graph (one filter
    bank); otherwise each relation gets its own bank (the paper's heterogeneous variant) and
    the banks are concatenated. Relations touching other node types are ignored.

    Args:
        in_dim: Input width of the target type.
        relations: Target-to-target edge types used.
        hidden: Hidden width (default 64).
        order: Wavelet order :math:`C` (default 2: three filters, low/mid/high band).
        homogeneous: Merge relations (default ``False``).
        dropout: Dropout (default 0.2).

    Shapes:
        input: ``x_dict[target]: [N, in_dim]``, ``edge_index_dict[r]: [2, E_r]``;
        output: logits ``[N]``.

    Scaling: each power :math:`L^k h` is one propagation of the previous power over the whole
    graph, so :meth:`layerwise_inference` computes them one at a time over chunks of nodes, exactly.
    Mini-batch training on sampled neighbourhoods is an approximation for this model, more than
    for SAGE: the filters are polynomials of the *normalised* Laplacian, and a sampled subgraph's
    degrees (hence ``edge_norm`` and the spectrum the bands split) are not the full graph's. Train
    it full-batch where the graph fits; score it layer-wise.
    """

    def __init__(
        self,
        in_dim: int,
        relations: list[EdgeType],
        target: str,
        hidden: int = 64,
        order: int = 2,
        homogeneous: bool = False,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.target = target
        self.relations = relations
        self.hidden = hidden
        self.order = order
        self.homogeneous = homogeneous
        self.dropout = dropout
        self.register_buffer("coef", torch.as_tensor(beta_wavelet_coefficients(order), dtype=torch.float32))
        banks = 1 if homogeneous else max(len(relations), 1)
        self.encoder = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.self_lin = nn.Linear(hidden, hidden)
        self.head = nn.Sequential(
            nn.Linear(hidden * (1 + banks * (order + 1)), hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def _bank(self, h: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor]:
        norm = edge_norm(edge_index, h.shape[0])
        powers = [h]
        for _ in range(self.order):
            powers.append(laplacian_apply(powers[-1], edge_index, norm))
        stacked = torch.stack(powers)  # [C+1, N, hidden]: L^k h
        return list(torch.einsum("ik,knh->inh", self.coef, stacked).unbind(0))

    def forward(
        self, x_dict: dict[str, torch.Tensor], edge_index_dict: dict[EdgeType, torch.Tensor]
    ) -> torch.Tensor:
        h = self.encoder(x_dict[self.target])
        parts = [torch.relu(self.self_lin(h))]
        edges = [edge_index_dict[r] for r in self.relations if r in edge_index_dict]
        if self.homogeneous:
            edges = [torch.cat(edges, 1)] if edges else []
        for ei in edges:
            parts.extend(self._bank(h, ei))
        if not edges:
            parts.extend([torch.zeros_like(h)] * (self.order + 1))
        z = nn.functional.dropout(torch.cat(parts, -1), self.dropout, self.training)
        return self.head(z).squeeze(-1)

    @torch.no_grad()
    def layerwise_inference(
        self, x_dict: dict[str, torch.Tensor], graph: CSRGraph, chunk_size: int = 65_536
    ) -> torch.Tensor:
        """Logits ``[N]`` over the whole graph, one Laplacian power at a time over chunks of
        ``chunk_size`` nodes (eval mode). Equals ``forward``'s to float rounding.

        Holds ``banks * (order + 1)`` tensors ``[N, hidden]`` (every power of every bank) on the
        module's device; the chunks bound each propagation's edges.
        """
        dev = next(self.parameters()).device
        x = x_dict[self.target]
        n = x.shape[0]
        starts = range(0, n, chunk_size)
        h = torch.cat([self.encoder(x[a : a + chunk_size].to(dev)) for a in starts]) if n else x.new_zeros(0)
        csrs = [graph[r] for r in self.relations if r in graph]
        if self.homogeneous and csrs:
            # One graph of all relations, as forward's concatenated edge_index.
            src = torch.cat([c.indices for c in csrs])
            dst = torch.cat([c.destinations() for c in csrs])
            csrs = [CSR.from_edge_index(torch.stack([src, dst]), n, n)]
        banks = []
        for csr in csrs:
            dst = csr.destinations()
            norm = (csr.out_degree()[csr.indices] * csr.in_degree()[dst]).clamp_min(1).float().rsqrt()
            powers = [h]
            for _ in range(self.order):
                prev = powers[-1]
                powers.append(
                    torch.cat(
                        [
                            prev[a : a + chunk_size]
                            - csr.aggregate(prev, a, min(a + chunk_size, n), norm, reduce="sum")
                            for a in starts
                        ]
                    )
                    if n
                    else prev
                )
            banks.append(powers)
        logits = []
        for a in starts:
            b = min(a + chunk_size, n)
            parts = [torch.relu(self.self_lin(h[a:b]))]
            for powers in banks:
                stacked = torch.stack([p[a:b] for p in powers])
                parts.extend(torch.einsum("ik,knh->inh", self.coef, stacked).unbind(0))
            if not banks:
                parts.extend([torch.zeros_like(h[a:b])] * (self.order + 1))
            logits.append(self.head(torch.cat(parts, -1)).squeeze(-1))
        return torch.cat(logits) if logits else h.new_zeros(0)

    def __repr__(self) -> str:
        mode = "homo" if self.homogeneous else "hetero"
        return f"{type(self).__name__}(hidden={self.hidden}, order={self.order}, {mode}, relations={len(self.relations)})"


class BWGNNScorer(GNNScorer):
    """:class:`BWGNN` trained full-batch; ``layers`` is the wavelet order.

    Args:
        homogeneous: Merge relations into one graph (see :class:`BWGNN`).
        **kwargs: :class:`GNNScorer` arguments.
    """

    name = "bwgnn"

    def __init__(self, homogeneous: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.homogeneous = homogeneous

    @property
    def config(self) -> dict:
        return {**super().config, "homogeneous": self.homogeneous}

    def build(
        self, in_dims: dict[str, int], metadata: tuple[list[str], list[EdgeType]], target: str
    ) -> nn.Module:
        rels = [et for et in metadata[1] if et[0] == target and et[2] == target]
        return BWGNN(in_dims[target], rels, target, self.hidden, self.layers, self.homogeneous, self.dropout)
