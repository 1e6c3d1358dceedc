"""Benchmark: candidate clusters and ring scoring on a large synthetic graph (default 1M users).

Steps (each timed, peak memory printed, nothing asserted):

1. ``generate`` the population (skipped when ``--world`` already holds events);
2. snapshot tables straight from the events with pandas (:mod:`gnn.rings.events_snapshot`,
   cheap canonical identifiers: no store, no pipeline);
3. **timed**: candidate clusters (user graph, learned hub cut-offs, Leiden) and cluster features;
4. **timed**: ring model training (with labels) and scoring of every cluster.

Run: ``python bench/rings.py --users 1000000 --world var/bench-1m``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gnn.rings.candidates import find_candidates
from gnn.rings.evaluate import evaluate_rings
from gnn.rings.events_snapshot import snapshot_from_events
from gnn.rings.features import cluster_features
from gnn.rings.model import cluster_labels, train_ring_model
from graphrisk.synthetic import generate


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and print a JSON table of figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--world", type=Path, default=Path("var/bench-rings"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out: dict[str, object] = {"users": args.users}
    t = time.perf_counter()
    if not (args.world / "labels" / "users.parquet").exists():
        generate(args.world, users=args.users, seed=args.seed, days=args.days, overwrite=True)
    out["generate_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    nodes, edges = snapshot_from_events(args.world / "events", exact=False)
    out["snapshot_s"] = round(time.perf_counter() - t, 1)
    out["edges"] = {r.value: len(df) for r, df in edges.items()}
    out["peak_gb_before_rings"] = round(_peak_gb(), 2)

    t0 = time.perf_counter()
    cand = find_candidates(nodes, edges)
    t1 = time.perf_counter()
    feats = cluster_features(cand, nodes, edges, None)
    t2 = time.perf_counter()
    labels = pd.read_parquet(args.world / "labels" / "users.parquet")
    y = cluster_labels(cand, labels)
    model = train_ring_model(feats, y)
    t3 = time.perf_counter()
    scores = model.predict(feats)
    t4 = time.perf_counter()
    out |= {
        "clusters": cand.num_clusters,
        "user_pairs": len(cand.graph.a),
        "hub_cutoffs": cand.cutoffs,
        "candidates_s": round(t1 - t0, 1),
        "features_s": round(t2 - t1, 1),
        "train_s": round(t3 - t2, 1),
        "score_s": round(t4 - t3, 2),
        "clusters_and_scoring_s": round(t4 - t0, 1),
        "peak_gb": round(_peak_gb(), 2),
        "in_sample_recall": evaluate_rings(cand, scores, labels, model.threshold)["recall"],
        "flagged": int(np.sum(scores >= model.threshold)),
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
