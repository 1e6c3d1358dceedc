"""GNN at scale: layer-wise inference over 1M users and one mini-batch training epoch.

A synthetic heterogeneous graph (users, devices, IPs, cards; user-identifier edges in both
directions and user-to-user transfers, skewed so some identifiers are hubs) stands in for the
entity graph; a 2-layer :class:`gnn.models.HeteroSAGE` scores every user layer by layer over
node chunks (:meth:`HeteroSAGE.layerwise_inference`), then trains one epoch on mini-batches
sampled by :class:`gnn.sampling.CSRNeighborLoader` (no pyg-lib, no torch-sparse):

    nice -n 10 python bench/gnn_scale.py --users 1000000 --train-seeds 50000

Sets ``THP_MEM_ALLOC_ENABLE=1`` and ``OMP_WAIT_POLICY=PASSIVE`` unless given (see below). Prints seconds per phase and the peak resident memory so far after each (targets: inference
≤ 120 s, peak ≤ 8 GB).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

# Before torch loads: OpenMP workers that sleep when idle instead of spinning. On a shared
# machine a spinning worker waits out whole time slices at every barrier; measured here, two
# threads cost 3-7x the CPU time of one on small ops without it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Huge pages for torch's large CPU tensors: neighbour aggregation reads rows of a [1M, hidden]
# tensor at random, and with 4 KiB pages nearly every read misses the TLB. On this (virtual)
# machine a 1M-row random gather took 2.6 s with them off and 0.43 s on.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np
import torch
from torch_geometric.data import HeteroData

from gnn.models import HeteroSAGE
from gnn.sampling import CSRGraph, CSRNeighborLoader

# Identifier types and how many users share one on average: devices and cards are rarely
# shared, IPs often (NAT, mobile carriers): the skew makes hubs for the sampler's hub path.
IDENTIFIERS = {"device": 2.5, "ip": 8.0, "card": 1.5}
USER_FEATURES = 16
IDENT_FEATURES = 4


def peak_gib() -> float:
    """Peak resident set size of this process so far, GiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_graph(users: int, seed: int = 0) -> HeteroData:
    """Users with features, identifiers with features, edges in both directions per identifier
    type, and one user-to-user transfer per user on average."""
    rng = np.random.default_rng(seed)
    data = HeteroData()
    data["user"].x = torch.from_numpy(rng.standard_normal((users, USER_FEATURES), dtype=np.float32))
    for ident, share in IDENTIFIERS.items():
        n = max(int(users / share), 1)
        data[ident].x = torch.from_numpy(rng.standard_normal((n, IDENT_FEATURES), dtype=np.float32))
        # u**2 skews the draw towards low ids: a few identifiers hold hundreds of users.
        held = (n * rng.random(users) ** 2).astype(np.int64)
        ei = torch.from_numpy(np.stack([np.arange(users), held]))
        data["user", f"has_{ident}", ident].edge_index = ei
        data[ident, f"rev_has_{ident}", "user"].edge_index = ei.flip(0).contiguous()
    pays = torch.from_numpy(rng.integers(0, users, size=(2, users)))
    data["user", "pays", "user"].edge_index = pays
    data["user", "rev_pays", "user"].edge_index = pays.flip(0).contiguous()
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--train-seeds", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--fanout", type=int, nargs="+", default=[10, 10])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=65_536)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    data = synthetic_graph(args.users)
    edges = sum(data[et].edge_index.shape[1] for et in data.edge_types)
    nodes = sum(data[nt].num_nodes for nt in data.node_types)
    print(f"graph: {args.users:,} users, {nodes:,} nodes, {edges:,} directed edges over "
          f"{len(data.edge_types)} relations; built in {time.perf_counter() - t0:.1f} s; "
          f"peak {peak_gib():.2f} GiB")  # fmt: skip

    model = HeteroSAGE(
        {nt: data[nt].x.shape[1] for nt in data.node_types},
        data.metadata(),
        "user",
        args.hidden,
        len(args.fanout),
    ).eval()
    x_dict = {nt: data[nt].x for nt in data.node_types}

    t0 = time.perf_counter()
    graph = CSRGraph.from_data(data)
    csr_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = model.layerwise_inference(x_dict, graph, args.chunk)
    infer_s = time.perf_counter() - t0
    assert logits.shape == (args.users,) and torch.isfinite(logits).all()
    print(f"layer-wise inference, {len(args.fanout)}-layer hetero SAGE (hidden {args.hidden}), every user: "
          f"CSR index {csr_s:.1f} s + inference {infer_s:.1f} s = {csr_s + infer_s:.1f} s; "
          f"peak {peak_gib():.2f} GiB")  # fmt: skip

    # A planted label (a noisy function of the user's own features) so the loss means something.
    y = (data["user"].x[:, 0] + 0.5 * torch.randn(args.users) > 1.5).float()
    seeds = torch.randperm(args.users)[: args.train_seeds]
    loader = CSRNeighborLoader(
        data, args.fanout, ("user", seeds), batch_size=args.batch_size, shuffle=True, seed=0, graph=graph
    )
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    sample_s = step_s = 0.0
    nodes_seen = 0
    t0 = time.perf_counter()
    it = iter(loader)
    while True:
        t1 = time.perf_counter()
        batch = next(it, None)
        sample_s += time.perf_counter() - t1
        if batch is None:
            break
        t1 = time.perf_counter()
        size = batch["user"].batch_size
        nodes_seen += sum(batch[nt].num_nodes for nt in batch.node_types)
        opt.zero_grad()
        out = model(batch.x_dict, batch.edge_index_dict)[:size]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out, y[batch["user"].n_id[:size]])
        loss.backward()
        opt.step()
        step_s += time.perf_counter() - t1
    train_s = time.perf_counter() - t0
    print(f"mini-batch training, one epoch over {args.train_seeds:,} seeds ({len(loader)} batches of "
          f"{args.batch_size}, fan-out {args.fanout}, {nodes_seen / len(loader):,.0f} nodes per batch): "
          f"{train_s:.1f} s (sampling {sample_s:.1f} s, forward/backward/step {step_s:.1f} s); "
          f"last loss {loss.item():.3f}; peak {peak_gib():.2f} GiB")  # fmt: skip


if __name__ == "__main__":
    main()
