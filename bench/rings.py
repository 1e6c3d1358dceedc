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

Ring methods side by side (``--compare``): (a) cluster features / LightGBM, (b) the ring
subgraph GNN alone (:mod:`gnn.rings.subgraph_gnn`, Platt-calibrated on its out-of-fold logits),
(c) the combination (the GNN's out-of-fold logit as one more tree column), each at the ring
threshold 0.5; mean and std over ``--model-seeds`` model seeds:

- synthetic: trained on the world of ``--seed``, scored on the world of ``--eval-seed``, at the
  **end of the window** (the snapshot's last event is the decision time); cluster AUPRC overall
  and per typology (positives matched to a ring of that typology against every negative
  cluster), ring recall per typology;
- AMLSim (with ``--amlsim DIR``): each 20K set's accounts and transfers as snapshot tables, its
  candidates found by :func:`~gnn.rings.candidates.find_candidates` (money and flow views);
  a candidate is a ring when half its members launder (the fraud-share rule, as AMLSim has no
  ring ids); candidates split 50/50 stratified, one split per seed; AUPRC and the recall of
  held-out ring candidates at the threshold.

Run: ``python bench/rings.py --compare --users 20000 --seed 8 --eval-seed 4242
--amlsim /work/shared/data/amlsim --model-seeds 3``.
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


METHODS = ("trees", "gnn", "combined")


def _fit_three(feats: pd.DataFrame, graphs: list, y: np.ndarray, seed: int) -> dict[str, object]:
    """Trees, the GNN (calibrated) and the combination, all fitted on the same clusters."""
    from gnn.rings.model import GNN_COLUMN
    from gnn.rings.subgraph_gnn import GNNConfig, fit_ring_gnn

    trees = train_ring_model(feats, y, seed=seed)
    scorer, oof = fit_ring_gnn(graphs, y, GNNConfig(seed=seed))
    combined = train_ring_model(feats.assign(**{GNN_COLUMN: oof}), y, seed=seed)
    combined.gnn = scorer
    return {"trees": trees, "gnn": scorer, "combined": combined}


def _score_three(models: dict[str, object], feats: pd.DataFrame, graphs: list) -> dict[str, np.ndarray]:
    from gnn.rings.model import GNN_COLUMN

    logit = models["gnn"].logits(graphs)
    return {
        "trees": models["trees"].predict(feats),
        "gnn": models["gnn"].predict(graphs),
        "combined": models["combined"].predict(feats.assign(**{GNN_COLUMN: logit})),
    }


def _mean_std(runs: list[dict[str, float]]) -> dict[str, str]:
    """``{key: "mean ± std"}`` over runs (NaN-aware; std over seeds, ddof 0)."""
    keys = runs[0].keys()
    out = {}
    for k in keys:
        v = np.array([r[k] for r in runs], dtype=np.float64)
        out[k] = f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}" if np.isfinite(v).any() else "nan"
    return out


def _auprc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def compare_synthetic(args: argparse.Namespace) -> dict[str, object]:
    """Trees vs ring GNN vs combination, train world ``--seed``, scored on ``--eval-seed``."""
    from gnn.rings.model import best_ring_match
    from gnn.rings.subgraph_gnn import build_ring_graphs

    worlds = {}
    for role, seed in (("train", args.seed), ("eval", args.eval_seed)):
        root = _world(args.world / f"seed{seed}-{args.users}", args.users, seed, args.days)
        nodes, edges = snapshot_tables(root / "events", load_settings())
        cand = find_candidates(nodes, edges)
        labels = pd.read_parquet(root / "labels" / "users.parquet")
        worlds[role] = (cand, cluster_features(cand, nodes, edges, None), build_ring_graphs(cand, nodes, edges),
                        labels, cluster_labels(cand, labels))  # fmt: skip
    cand, feats, graphs, labels, y = worlds["train"]
    e_cand, e_feats, e_graphs, e_labels, e_y = worlds["eval"]
    rings = e_labels.dropna(subset=["ring_id"]).groupby("ring_id")["typology"].first()
    typ = best_ring_match(e_cand, e_labels)["ring_id"].map(rings).to_numpy()
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    for seed in range(args.model_seeds):
        t = time.perf_counter()
        models = _fit_three(feats, graphs, y, seed)
        for method, scores in _score_three(models, e_feats, e_graphs).items():
            q = evaluate_rings(e_cand, scores, e_labels, 0.5)
            row = {"auprc": _auprc(e_y, scores), "recall": q["recall"], "precision": q["precision"]}
            for name in sorted(rings.unique()):
                keep = (e_y == 0) | (typ == name)
                row[f"{name}_auprc"] = _auprc(e_y[keep], scores[keep])
                row[f"{name}_recall"] = q["by_typology"][name]["recall"]
            runs[method].append(row)
        print(f"synthetic model seed {seed}: {time.perf_counter() - t:.0f}s", flush=True)
    return {
        "moment": "end of window (decision time = the snapshot's last event)",
        "users": args.users, "train_seed": args.seed, "eval_seed": args.eval_seed,
        "train_clusters": len(y), "train_positives": int(y.sum()),
        "eval_clusters": len(e_y), "eval_positives": int(e_y.sum()),
        "eval_rings": {str(k): int(v) for k, v in rings.value_counts().items()},
        "model_seeds": args.model_seeds,
        "methods": {m: _mean_std(r) for m, r in runs.items()},
    }  # fmt: skip


def amlsim_tables(directory: Path) -> tuple[dict, dict, pd.DataFrame]:
    """An AMLSim set as snapshot tables (users, aggregated transfers; a step is a day) and labels."""
    from gnn.rings.transfers import load_amlsim_transfers
    from graphrisk.graph_schema import NodeLabel, RelType

    day = 86_400_000
    _, tx, y = load_amlsim_transfers(directory)
    n = len(y)
    ids = pd.Index([f"a{i}" for i in range(n)])
    t_ms = tx["time"].to_numpy(np.int64) * day
    ev = pd.DataFrame({"u": np.r_[tx["src"], tx["dst"]], "t": np.r_[t_ms, t_ms]}).groupby("u")["t"]
    first = ev.min().reindex(range(n)).fillna(0).to_numpy(np.int64)
    users = pd.DataFrame({
        "id": ids, "first_seen": first, "last_seen": ev.max().reindex(range(n)).fillna(0).to_numpy(np.int64),
        "event_count": ev.size().reindex(range(n)).fillna(0).to_numpy(np.int64),
        "onboarded_at": first, "country": "XX",
    })  # fmt: skip
    g = tx.assign(t=t_ms).groupby(["src", "dst"])
    agg = g.agg(count=("value", "size"), first_seen=("t", "min"), last_seen=("t", "max"),
                amount_total=("value", "sum"), amount_max=("value", "max")).reset_index()  # fmt: skip
    agg["src"], agg["dst"] = ids[agg["src"]], ids[agg["dst"]]
    labels = pd.DataFrame({"user_id": ids, "is_fraud": y})
    return {NodeLabel.USER: users}, {RelType.TRANSFERRED_TO: agg}, labels


def compare_amlsim(directory: Path, seeds: int) -> dict[str, object]:
    """Trees vs ring GNN vs combination on one AMLSim set's candidates (held-out half per seed)."""
    from sklearn.model_selection import train_test_split

    from gnn.rings.subgraph_gnn import build_ring_graphs

    nodes, edges, labels = amlsim_tables(directory)
    cand = find_candidates(nodes, edges)
    feats = cluster_features(cand, nodes, edges, None)
    graphs = build_ring_graphs(cand, nodes, edges)
    y = cluster_labels(cand, labels)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    for seed in range(seeds):
        tr, te = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=seed)
        models = _fit_three(feats.iloc[tr].reset_index(drop=True), [graphs[i] for i in tr], y[tr], seed)
        scored = _score_three(models, feats.iloc[te].reset_index(drop=True), [graphs[i] for i in te])
        for method, s in scored.items():
            pos = y[te] == 1
            runs[method].append({"auprc": _auprc(y[te], s), "recall": float((s[pos] >= 0.5).mean()),
                                 "precision": float(y[te][s >= 0.5].mean()) if (s >= 0.5).any() else float("nan")})  # fmt: skip
        print(f"{directory.name} split seed {seed} done", flush=True)
    return {
        "clusters": len(y), "ring_candidates": int(y.sum()),
        "launderers": int(labels["is_fraud"].sum()),
        "launderers_in_ring_candidates": int(
            labels.set_index("user_id")["is_fraud"].reindex(
                np.concatenate([cand.user_ids[m] for m, yy in zip(cand.members, y, strict=True) if yy])
                if y.any() else []).sum()
        ),
        "split_seeds": seeds,
        "methods": {m: _mean_std(r) for m, r in runs.items()},
    }  # fmt: skip


def compare(args: argparse.Namespace) -> dict[str, object]:
    """All three methods on the synthetic pair of worlds and, given ``--amlsim``, each 20K set."""
    out: dict[str, object] = {"synthetic": compare_synthetic(args)}
    if args.amlsim is not None:
        for sim in sorted(args.amlsim.glob("20K_*")):
            out[f"amlsim_{sim.name}"] = compare_amlsim(sim, args.model_seeds)
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
    ap.add_argument("--compare", action="store_true", help="trees vs ring GNN vs combination")
    ap.add_argument(
        "--model-seeds", type=int, default=3, help="model seeds (AMLSim: split seeds) for --compare"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.compare:
        if args.eval_seed is None:
            ap.error("--compare needs --eval-seed")
        out = compare(args)
    elif args.amlsim is not None:
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
