"""Heterogeneous GraphSAGE: one ``SAGEConv`` per relation in a ``HeteroConv``."""

from __future__ import annotations

from typing import Any

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

    With ``edge_dims``, a relation ``r`` with edge attributes adds
    :math:`W_t^{r,l} \operatorname{mean}_{e \in N_r(v)} \cos(W_e^r x_e + b_e^r)` to the sum (its edges'
    times relative to the decision time, encoded as in TGAT).

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
        edge_dims: Width of ``edge_attr`` per relation that has one (default: none). Such a
            relation's message gains a term from its edges' attributes, encoded TGAT-style
            (Xu et al., 2020, https://arxiv.org/abs/2002.07962) as ``cos(W_t e + b_t)``: on the
            entity graph the attributes are the edge's age at the decision time (first and last
            seen), its event count and its destination's link velocity, so a device shared an
            hour ago speaks differently from one shared a year ago.
        time_dim: Width of that encoding (default 8).
        embed_dim: When set, the head narrows to this many units before the logit, and
            :meth:`forward` can return them as the node's embedding (the columns the tree
            model of :class:`gnn.models.graph_trees.GraphTreesScorer` reads).

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
        edge_dims: dict[EdgeType, int] | None = None,
        time_dim: int = 8,
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.target = target
        self.hidden = hidden
        self.dropout = dropout
        self.embed_dim = embed_dim
        node_types, edge_types = metadata
        self.edge_dims = {et: d for et, d in (edge_dims or {}).items() if d > 0 and et in edge_types}
        # Per relation: the harmonic encoding of its edge attributes, and per layer a projection
        # of the destination's mean encoding into the message (ModuleDict keys must be strings).
        self.edge_enc = nn.ModuleDict({_key(et): nn.Linear(d, time_dim) for et, d in self.edge_dims.items()})
        self.edge_lins = nn.ModuleList(
            nn.ModuleDict({_key(et): nn.Linear(time_dim, hidden, bias=False) for et in self.edge_dims})
            for _ in range(layers)
        )
        self.inputs = nn.ModuleDict({nt: nn.Linear(in_dims[nt], hidden) for nt in node_types})
        self.convs = nn.ModuleList(
            HeteroConv({et: SAGEConv(hidden, hidden) for et in edge_types}, aggr="sum") for _ in range(layers)
        )
        self.selfs = nn.ModuleList(
            nn.ModuleDict({nt: nn.Linear(hidden, hidden) for nt in node_types}) for _ in range(layers)
        )
        jk = hidden * (layers + 1)
        if embed_dim is None:
            self.head = nn.Sequential(nn.Linear(jk, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        else:
            self.head = nn.Sequential(
                nn.Linear(jk, hidden),
                nn.ReLU(),
                nn.Linear(hidden, embed_dim),
                nn.ReLU(),
                nn.Linear(embed_dim, 1),
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(
        self,
        x_dict: dict[str, torch.Tensor],
        edge_index_dict: dict[EdgeType, torch.Tensor],
        edge_attr_dict: dict[EdgeType, torch.Tensor] | None = None,
        return_embedding: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N_target]`` (and, with ``return_embedding``, the ``[N_target, embed_dim]``
        bottleneck). Relations in ``edge_dims`` read ``edge_attr_dict``."""
        h = {nt: torch.relu(lin(x_dict[nt])) for nt, lin in self.inputs.items()}
        edge_means = self._edge_means(
            edge_index_dict, edge_attr_dict, {nt: x.shape[0] for nt, x in x_dict.items()}
        )
        outs = [h[self.target]]
        for layer, (conv, selfs) in enumerate(zip(self.convs, self.selfs, strict=True)):
            msg = conv(h, edge_index_dict)
            for et, mean in edge_means.items():
                # mean over in-edges of (W_t cos(...)) is W_t applied to the mean encoding.
                term = self.edge_lins[layer][_key(et)](mean)
                msg[et[2]] = msg[et[2]] + term if et[2] in msg else term
            h = {
                nt: nn.functional.dropout(
                    torch.relu(selfs[nt](h[nt]) + msg.get(nt, 0)), self.dropout, self.training
                )
                for nt in h
            }
            outs.append(h[self.target])
        return self._head(torch.cat(outs, dim=-1), return_embedding)

    def _head(
        self, jk: torch.Tensor, return_embedding: bool
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not return_embedding:
            return self.head(jk).squeeze(-1)
        if self.embed_dim is None:
            raise ValueError("HeteroSAGE built without embed_dim has no embedding")
        emb = self.head[:4](jk)
        return self.head[4](emb).squeeze(-1), emb

    def _edge_inputs(
        self, present: Any, edge_attr_dict: dict[EdgeType, torch.Tensor] | None
    ) -> list[tuple[EdgeType, torch.Tensor]]:
        """The relations this model reads edge inputs on that ``present`` has, with their inputs.

        Raises:
            ValueError: edge inputs are missing, for all relations or for one read at fit.
        """
        if not self.edge_dims:
            return []
        if edge_attr_dict is None:
            raise ValueError("this HeteroSAGE reads edge attributes; pass edge_attr_dict")
        out = []
        for et in self.edge_dims:
            if et not in present:
                continue
            if et not in edge_attr_dict:
                raise ValueError(f"relation {et} had edge attributes at fit and has none here")
            out.append((et, edge_attr_dict[et]))
        return out

    def _edge_means(
        self,
        edge_index_dict: dict[EdgeType, torch.Tensor],
        edge_attr_dict: dict[EdgeType, torch.Tensor] | None,
        num_nodes: dict[str, int],
    ) -> dict[EdgeType, torch.Tensor]:
        """Per relation with edge inputs: the mean ``cos(W_t e + b_t)`` over each destination's
        in-edges, ``[N_dst, time_dim]`` (zeros without in-edges, as the mean aggregation)."""
        out = {}
        for et, attr in self._edge_inputs(edge_index_dict, edge_attr_dict):
            dst = edge_index_dict[et][1]
            enc = torch.cos(self.edge_enc[_key(et)](attr))
            total = enc.new_zeros((num_nodes[et[2]], enc.shape[1])).index_add_(0, dst, enc)
            deg = torch.bincount(dst, minlength=num_nodes[et[2]]).clamp_(min=1).to(enc.dtype)
            out[et] = total / deg[:, None]
        return out

    @torch.no_grad()
    def layerwise_embeddings(
        self,
        x_dict: dict[str, torch.Tensor],
        graph: CSRGraph,
        chunk_size: int = 65_536,
        edge_attr_dict: dict[EdgeType, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The target's jumping-knowledge input to the head, ``[N_target, hidden * (layers + 1)]``,
        full neighbourhoods, computed layer by layer over chunks of ``chunk_size`` nodes (eval mode:
        no dropout). Equals ``forward``'s to float rounding.

        Layer outputs (``[N_t, hidden]`` per type) live on the module's device; the chunks bound
        everything else (each chunk's in-edges, its neighbour means). ``x_dict`` may stay on the CPU.
        """
        return torch.cat(self._layerwise_outputs(x_dict, graph, chunk_size, edge_attr_dict), dim=-1)

    @torch.no_grad()
    def layerwise_inference(
        self,
        x_dict: dict[str, torch.Tensor],
        graph: CSRGraph,
        chunk_size: int = 65_536,
        edge_attr_dict: dict[EdgeType, torch.Tensor] | None = None,
        return_embedding: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N_target]`` over the whole graph, layer by layer (see :meth:`layerwise_embeddings`),
        and with ``return_embedding`` the ``[N_target, embed_dim]`` bottleneck too."""
        outs = self._layerwise_outputs(x_dict, graph, chunk_size, edge_attr_dict)
        n = outs[0].shape[0]
        logits = outs[0].new_empty(n)
        emb = outs[0].new_empty((n, self.embed_dim)) if return_embedding and self.embed_dim else None
        for a in range(0, n, chunk_size):
            # The head reads one chunk of the concatenation at a time: [N, hidden * (L + 1)] never exists.
            jk = torch.cat([o[a : a + chunk_size] for o in outs], -1)
            if return_embedding:
                logits[a : a + chunk_size], emb[a : a + chunk_size] = self._head(jk, True)
            else:
                logits[a : a + chunk_size] = self._head(jk, False)
        return (logits, emb) if return_embedding else logits

    def _layerwise_outputs(
        self,
        x_dict: dict[str, torch.Tensor],
        graph: CSRGraph,
        chunk_size: int,
        edge_attr_dict: dict[EdgeType, torch.Tensor] | None = None,
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
        edge_means = self._layerwise_edge_means(graph, edge_attr_dict, dev, chunk_size)
        outs = [h[self.target]]
        for layer, (conv, selfs) in enumerate(zip(self.convs, self.selfs, strict=True)):
            extra = {et: (mean, self.edge_lins[layer][_key(et)].weight) for et, mean in edge_means.items()}
            h = {
                nt: self._layer(conv, selfs[nt], nt, h, graph, chunk_size, extra) for nt in needed[layer + 1]
            }
            outs.append(h[self.target])
        return outs

    def _layerwise_edge_means(
        self,
        graph: CSRGraph,
        edge_attr_dict: dict[EdgeType, torch.Tensor] | None,
        dev: torch.device,
        chunk_size: int,
    ) -> dict[EdgeType, torch.Tensor]:
        """:meth:`_edge_means` over the CSR index, edges encoded ``chunk_size`` at a time."""
        out = {}
        for et, attr in self._edge_inputs(graph, edge_attr_dict):
            csr, enc_lin = graph[et], self.edge_enc[_key(et)]
            dst = csr.destinations()
            ea = attr[csr.perm]  # CSR order, as dst
            total = torch.zeros((csr.num_dst, enc_lin.out_features), device=dev)
            for a in range(0, csr.num_edges, chunk_size):
                enc = torch.cos(enc_lin(ea[a : a + chunk_size].to(dev)))
                total.index_add_(0, dst[a : a + chunk_size].to(dev), enc)
            deg = csr.in_degree().clamp(min=1).to(dev, total.dtype)
            out[et] = total / deg[:, None]
        return out

    def _layer(
        self,
        conv: HeteroConv,
        self_lin: nn.Linear,
        nt: str,
        h: dict[str, torch.Tensor],
        graph: CSRGraph,
        chunk_size: int,
        edge_terms: dict[EdgeType, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """One layer's output for every node of type ``nt``, from the previous layer's ``h``;
        ``edge_terms`` maps a relation to its mean edge encoding and that layer's projection."""
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
                if edge_terms and et in edge_terms:
                    mean, weight = edge_terms[et]
                    chunk.addmm_(mean[a:b], weight.t())
            chunk.relu_()
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hidden={self.hidden}, layers={len(self.convs)}, relations={len(self.convs[0].convs)})"


def _key(et: EdgeType) -> str:
    """A relation as a ``ModuleDict`` key."""
    return "__".join(et)


class HeteroSAGEScorer(GNNScorer):
    """:class:`HeteroSAGE` trained full-batch (see :class:`GNNScorer` for the arguments).

    Args:
        embed_dim: Width of the embedding the head narrows to (``None``: no bottleneck).
        time_dim: Width of the edge-attribute encoding (used with ``edge_features``).
        **kwargs: :class:`GNNScorer`'s arguments.
    """

    name = "sage"

    def __init__(self, *args: Any, embed_dim: int | None = None, time_dim: int = 8, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.embed_dim = embed_dim
        self.time_dim = time_dim

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        out = super().config
        if getattr(self, "embed_dim", None) is not None:
            out["embed_dim"] = self.embed_dim
        if getattr(self, "edge_features", False):
            out["time_dim"] = self.time_dim
        return out

    def build(
        self, in_dims: dict[str, int], metadata: tuple[list[str], list[EdgeType]], target: str
    ) -> nn.Module:
        return HeteroSAGE(
            in_dims,
            metadata,
            target,
            self.hidden,
            self.layers,
            self.dropout,
            edge_dims=getattr(self, "edge_dims_", None),
            time_dim=getattr(self, "time_dim", 8),
            embed_dim=getattr(self, "embed_dim", None),
        )
