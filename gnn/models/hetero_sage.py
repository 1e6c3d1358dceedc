"""Heterogeneous GraphSAGE: one ``SAGEConv`` per relation in a ``HeteroConv``."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import HeteroConv, SAGEConv

from gnn.models.train import GNNScorer

EdgeType = tuple[str, str, str]


class HeteroSAGE(nn.Module):
    r"""Per-relation GraphSAGE with a self skip (Hamilton et al., 2017,
    https://arxiv.org/abs/1706.02216; relation-wise sum as in R-GCN).

    .. math::
        h_v^{(l+1)} = \mathrm{ReLU}\Big(W_{\text{self}} h_v^{(l)} + \sum_{r}
            \big(W_1^r h_v^{(l)} + W_2^r \operatorname{mean}_{u \in N_r(v)} h_u^{(l)}\big)\Big)

    The separate self transform keeps a node's own evidence apart from its neighbours' (fraud
    graphs are heterophilous: fraudsters camouflage among legitimate neighbours). The score is
    an MLP over the concatenated layer outputs of the target type (jumping knowledge).

    Args:
        in_dims: Input width per node type.
        metadata: ``(node_types, edge_types)``.
        target: Scored node type.
        hidden: Hidden width (default 64).
        layers: Message-passing layers (default 2).
        dropout: Dropout (default 0.2).

    Shapes:
        input: ``x_dict[t]: [N_t, in_dims[t]]``, ``edge_index_dict[r]: [2, E_r]``;
        output: logits ``[N_target]``.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        metadata: tuple[list[str], list[EdgeType]],
        target: str,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.target = target
        self.hidden = hidden
        self.dropout = dropout
        node_types, edge_types = metadata
        self.inputs = nn.ModuleDict({nt: nn.Linear(in_dims[nt], hidden) for nt in node_types})
        self.convs = nn.ModuleList(
            HeteroConv({et: SAGEConv(hidden, hidden) for et in edge_types}, aggr="sum") for _ in range(layers)
        )
        self.selfs = nn.ModuleList(
            nn.ModuleDict({nt: nn.Linear(hidden, hidden) for nt in node_types}) for _ in range(layers)
        )
        self.head = nn.Sequential(nn.Linear(hidden * (layers + 1), hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(
        self, x_dict: dict[str, torch.Tensor], edge_index_dict: dict[EdgeType, torch.Tensor]
    ) -> torch.Tensor:
        h = {nt: torch.relu(lin(x_dict[nt])) for nt, lin in self.inputs.items()}
        outs = [h[self.target]]
        for conv, selfs in zip(self.convs, self.selfs, strict=True):
            msg = conv(h, edge_index_dict)
            h = {
                nt: nn.functional.dropout(
                    torch.relu(selfs[nt](h[nt]) + msg.get(nt, 0)), self.dropout, self.training
                )
                for nt in h
            }
            outs.append(h[self.target])
        return self.head(torch.cat(outs, dim=-1)).squeeze(-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hidden={self.hidden}, layers={len(self.convs)}, relations={len(self.convs[0].convs)})"


class HeteroSAGEScorer(GNNScorer):
    """:class:`HeteroSAGE` trained full-batch (see :class:`GNNScorer` for the arguments)."""

    name = "sage"

    def build(
        self, in_dims: dict[str, int], metadata: tuple[list[str], list[EdgeType]], target: str
    ) -> nn.Module:
        return HeteroSAGE(in_dims, metadata, target, self.hidden, self.layers, self.dropout)
