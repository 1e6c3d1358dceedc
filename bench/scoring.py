"""Scoring speed: every user of a 1M-user synthetic graph with a trained model.

Writing a 1M-user graph to the store takes longer than this benchmark is about, so the
snapshot tables are built by the pipeline's own stages in-process, without Beam or a store
(:mod:`pipelines.event_tables`: read, validate, pseudonymise, deduplicate, fold with the
pipeline's merges; ``tests/test_event_log.py`` holds them equal to the Beam snapshot). A model
is trained on a smaller graph built the same way, promoted, then timed on the big one:

    python bench/scoring.py --users 1000000 --train-users 30000

Prints: snapshot build time (not part of the target; about 10 minutes and 12 GiB at 1M users),
dataset build and prediction time (the target: ≤ 2 minutes), and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from gnn.registry import ModelRegistry
from gnn.scoring import score_users
from gnn.training import train_entity_model
from graphrisk.config import load_settings
from graphrisk.synthetic import generate
from pipelines.event_tables import build_snapshot as build_pipeline_snapshot


def build_snapshot(events_dir: Path, snapshot_dir: Path) -> float:
    """The pipeline's snapshot of the events, written under ``snapshot_dir``; seconds taken."""
    t0 = time.perf_counter()
    build_pipeline_snapshot(events_dir, snapshot_dir, load_settings())
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--train-users", type=int, default=30_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="graphrisk-score-bench-"))

    generate(work / "train", users=args.train_users, seed=41, days=14)
    build_snapshot(work / "train" / "events", work / "train_snapshot")
    registry = ModelRegistry(work / "models")
    t0 = time.perf_counter()
    meta, _ = train_entity_model(work / "train_snapshot", pd.read_parquet(work / "train" / "labels" / "users.parquet"),
                                 registry, candidates=("gbdt",))  # fmt: skip
    train_s = time.perf_counter() - t0
    registry.promote(meta.version)
    print(
        f"trained {meta.model_name} on {args.train_users:,} users in {train_s:.1f}s (test AUPRC {meta.metrics.get('test_auprc', float('nan')):.3f})"
    )

    t0 = time.perf_counter()
    generate(work / "big", users=args.users, seed=42, days=14)
    gen_s = time.perf_counter() - t0
    snap_s = build_snapshot(work / "big" / "events", work / "big_snapshot")
    print(f"generated {args.users:,} users in {gen_s:.0f}s; snapshot tables built in {snap_s:.0f}s")

    report = score_users(work / "big_snapshot", work / "scores", registry, store=None)
    total = report.build_s + report.predict_s
    print(f"users scored            {report.users:,}")
    print(f"dataset build (s)       {report.build_s}")
    print(f"predict (s)             {report.predict_s}")
    print(f"scoring total (s)       {total:.1f}   (target <= 120)")
    print(f"bands                   {report.bands}")
    print(
        f"publish (s)             {report.write_s}   (scores, features, {report.explainable_users:,} explainable rows)"
    )
    print(f"peak RSS (MiB)          {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    # The big graph comes from another seed than the training graph: quality on unseen data.
    labels = pd.read_parquet(work / "big" / "labels" / "users.parquet")[["user_id", "is_fraud"]]
    scored = pd.read_parquet(report.scores_table).merge(labels, left_on="id", right_on="user_id")
    print(f"unseen seed AUROC       {roc_auc_score(scored['is_fraud'], scored['score']):.4f}")
    print(f"unseen seed AUPRC       {average_precision_score(scored['is_fraud'], scored['score']):.4f}"
          f"   (base rate {scored['is_fraud'].mean():.4f})")  # fmt: skip
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
