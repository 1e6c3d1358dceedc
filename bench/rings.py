"""Benchmark: candidate clusters and ring scoring on a large synthetic graph (default 1M users).

Speed (default): each step timed, peak memory printed, nothing asserted.

1. ``generate`` the population (skipped when ``--world`` already holds events);
2. snapshot tables by the pipeline's own stages, in-process (:mod:`pipelines.event_tables`:
   validation, normalisers, keyed pseudonyms and merges of ``graphrisk refresh``; no Beam, no
   store);
3. **timed**: candidate clusters (user graph, learned hub cut-offs, Leiden) and cluster features;
4. **timed**: ring model training (with labels) and scoring of every cluster.

Run: ``python bench/rings.py --users 1000000 --world var/bench-1m``.

Quality on an unseen seed (``--eval-seed``): the ring model is trained on the world of
``--seed`` and scores the world of ``--eval-seed``, which nothing was tuned on; ring-level
precision and recall per typology (a planted ring is found when one flagged cluster covers it
with Jaccard >= 0.5). Both graphs are built by the pipeline's code, as in step 2. No node
scores are used: the figures are the ring model's own.

Run: ``python bench/rings.py --users 60000 --seed 8 --eval-seed 99``.

AMLSim (``--amlsim DIR``): member AUPRC on the held-out 40 % of each 20K simulation under DIR,
mean over ``--split-seeds`` stratified 40/20/40 splits (see :mod:`gnn.rings.transfers`).

Run: ``python bench/rings.py --amlsim /work/shared/data/amlsim --split-seeds 3``.
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
from gnn.rings.features import cluster_features
from gnn.rings.model import cluster_labels, train_ring_model
from graphrisk.config import load_settings
from graphrisk.synthetic import generate
from pipelines.event_tables import snapshot_tables


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _world(root: Path, users: int, seed: int, days: int) -> Path:
    """A generated world under ``root`` (generated once, then reused)."""
    if not (root / "labels" / "users.parquet").exists():
        generate(root, users=users, seed=seed, days=days, overwrite=True)
    return root


def speed(args: argparse.Namespace) -> dict[str, object]:
    """Time clustering and ring scoring on one world (the 1M-user target: <= 5 min)."""
    out: dict[str, object] = {"users": args.users}
    t = time.perf_counter()
    _world(args.world, args.users, args.seed, args.days)
    out["generate_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    nodes, edges = snapshot_tables(args.world / "events", load_settings())
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
        "clusters_by_view": {str(k): int(v) for k, v in pd.Series(cand.views).value_counts().items()},
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
        "kept_at_min_score_0.1": int(np.sum(scores >= 0.1)),
    }
    return out


def unseen_seed(args: argparse.Namespace) -> dict[str, object]:
    """Train the ring model on ``--seed``'s world, report quality on ``--eval-seed``'s."""
    out: dict[str, object] = {"users": args.users, "train_seed": args.seed, "eval_seed": args.eval_seed}
    worlds = {}
    for role, seed in (("train", args.seed), ("eval", args.eval_seed)):
        root = _world(args.world / f"seed{seed}-{args.users}", args.users, seed, args.days)
        nodes, edges = snapshot_tables(root / "events", load_settings())
        t = time.perf_counter()
        cand = find_candidates(nodes, edges)
        feats = cluster_features(cand, nodes, edges, None)
        out[f"{role}_clusters_s"] = round(time.perf_counter() - t, 1)
        worlds[role] = (cand, feats, pd.read_parquet(root / "labels" / "users.parquet"))
    cand, feats, labels = worlds["train"]
    model = train_ring_model(feats, cluster_labels(cand, labels))
    out["model"] = model.metrics
    cand, feats, labels = worlds["eval"]
    scores = model.predict(feats)
    out["quality"] = evaluate_rings(cand, scores, labels, model.threshold)
    out["kept_at_min_score_0.1"] = int(np.sum(scores >= 0.1))
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and print a JSON table of figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=5, help="world seed (training seed with --eval-seed)")
    ap.add_argument("--eval-seed", type=int, default=None, help="report quality on this unseen seed")
    ap.add_argument("--amlsim", type=Path, default=None, help="folder of AMLSim 20K simulations")
    ap.add_argument("--split-seeds", type=int, default=3, help="AMLSim 40/20/40 splits per simulation")
    ap.add_argument("--world", type=Path, default=Path("var/bench-rings"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.amlsim is not None:
        from gnn.rings.transfers import evaluate_amlsim

        out: dict[str, object] = {
            sim.name: evaluate_amlsim(sim, seeds=range(args.split_seeds))
            for sim in sorted(args.amlsim.glob("20K_*"))
        }
    elif args.eval_seed is not None:
        out = unseen_seed(args)
    else:
        out = speed(args)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
