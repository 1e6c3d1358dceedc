"""Heterogeneous GraphSAGE: one ``SAGEConv`` per relation in a ``HeteroConv``."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import HeteroConv, SAGEConv

from gnn.models.train import GNNScorer
from gnn.sampling import CSRGraph

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

    Every layer reads only the previous layer's output, so :meth:`layerwise_inference` computes
    the whole graph one layer at a time over chunks of nodes (PyG's layer-wise inference): no
    node's receptive field is ever materialised, and no neighbour is sampled.
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

    @torch.no_grad()
    def layerwise_embeddings(
        self, x_dict: dict[str, torch.Tensor], graph: CSRGraph, chunk_size: int = 65_536
    ) -> torch.Tensor:
        """The target's jumping-knowledge input to the head, ``[N_target, hidden * (layers + 1)]``,
        full neighbourhoods, computed layer by layer over chunks of ``chunk_size`` nodes (eval mode:
        no dropout). Equals ``forward``'s to float rounding.

        Layer outputs (``[N_t, hidden]`` per type) live on the module's device; the chunks bound
        everything else (each chunk's in-edges, its neighbour means). ``x_dict`` may stay on the CPU.
        """
        return torch.cat(self._layerwise_outputs(x_dict, graph, chunk_size), dim=-1)

    @torch.no_grad()
    def layerwise_inference(
        self, x_dict: dict[str, torch.Tensor], graph: CSRGraph, chunk_size: int = 65_536
    ) -> torch.Tensor:
        """Logits ``[N_target]`` over the whole graph, layer by layer (see :meth:`layerwise_embeddings`)."""
        outs = self._layerwise_outputs(x_dict, graph, chunk_size)
        n = outs[0].shape[0]
        logits = outs[0].new_empty(n)
        for a in range(0, n, chunk_size):
            # The head reads one chunk of the concatenation at a time: [N, hidden * (L + 1)] never exists.
            logits[a : a + chunk_size] = self.head(
                torch.cat([o[a : a + chunk_size] for o in outs], -1)
            ).squeeze(-1)
        return logits

    def _layerwise_outputs(
        self, x_dict: dict[str, torch.Tensor], graph: CSRGraph, chunk_size: int
    ) -> list[torch.Tensor]:
        """The target's input projection and every layer's output, whole graph."""
        dev = next(self.parameters()).device
        rels = [et for et in self.convs[0].convs.keys() if et in graph]  # noqa: SIM118
        # Types whose layer-l output anything downstream reads: the target (jumping knowledge),
        # and the sources of relations into types needed at layer l + 1. The last layer then
        # computes users only; identifiers' last-layer outputs would be thrown away.
        needed = [{self.target}]
        for _ in self.convs:
            nxt = needed[-1]
            needed.append(nxt | {et[0] for et in rels if et[2] in nxt} | {self.target})
        needed = needed[::-1]  # needed[l]: types read from layer l's output (0: the inputs)
        h = {}
        for nt in needed[0]:
            x, lin = x_dict[nt], self.inputs[nt]
            out = torch.empty((x.shape[0], self.hidden), device=dev)
            for a in range(0, x.shape[0], chunk_size):
                out[a : a + chunk_size] = torch.relu_(lin(x[a : a + chunk_size].to(dev)))
            h[nt] = out
        outs = [h[self.target]]
        for layer, (conv, selfs) in enumerate(zip(self.convs, self.selfs, strict=True)):
            h = {nt: self._layer(conv, selfs[nt], nt, h, graph, chunk_size) for nt in needed[layer + 1]}
            outs.append(h[self.target])
        return outs

    def _layer(
        self,
        conv: HeteroConv,
        self_lin: nn.Linear,
        nt: str,
        h: dict[str, torch.Tensor],
        graph: CSRGraph,
        chunk_size: int,
    ) -> torch.Tensor:
        """One layer's output for every node of type ``nt``, from the previous layer's ``h``."""
        rels = [et for et in conv.convs.keys() if et[2] == nt and et in graph]  # noqa: SIM118
        for et in rels:
            c = conv.convs[et]
            if c.aggr != "mean" or c.project or c.normalize or not c.root_weight:
                raise NotImplementedError(f"layer-wise inference supports plain mean SAGEConv only, not {c}")
        # forward sums, per relation, lin_l(mean) + lin_r(h_dst), plus the self path: the
        # terms on h_dst fold into one weight and the biases into one; the neighbour terms then
        # accumulate into the chunk's output in place (no [chunk, hidden * relations] concatenation).
        root = self_lin.weight + sum(
            (conv.convs[et].lin_r.weight for et in rels), torch.zeros_like(self_lin.weight)
        )
        bias = self_lin.bias + sum(
            (conv.convs[et].lin_l.bias for et in rels), torch.zeros_like(self_lin.bias)
        )
        n = h[nt].shape[0]
        out = h[nt].new_empty((n, self.hidden))
        for a in range(0, n, chunk_size):
            b = min(a + chunk_size, n)
            chunk = out[a:b]
            torch.addmm(bias, h[nt][a:b], root.t(), out=chunk)
            for et in rels:
                chunk.addmm_(graph[et].aggregate(h[et[0]], a, b), conv.convs[et].lin_l.weight.t())
            chunk.relu_()
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hidden={self.hidden}, layers={len(self.convs)}, relations={len(self.convs[0].convs)})"


class HeteroSAGEScorer(GNNScorer):
    """:class:`HeteroSAGE` trained full-batch (see :class:`GNNScorer` for the arguments)."""

    name = "sage"

    def build(
        self, in_dims: dict[str, int], metadata: tuple[list[str], list[EdgeType]], target: str
    ) -> nn.Module:
        return HeteroSAGE(in_dims, metadata, target, self.hidden, self.layers, self.dropout)
