"""Benchmark: onboarding model shapes, refitted on one replay's onboarding rows, over seeds.

The onboarding rows of a replay do not depend on the model (each is the applicant's row at its
application), so the shapes are compared on the same rows, refitted at the replay's daily
cut-offs from labels known by then and scored on the next day's applicants, as
:func:`gnn.backtest.run_backtest` does. Shapes: depth-one trees (the previous choice), eight-leaf
trees with one seed, and the served shape (eight leaves, the mean of three seeds). Printed per
shape and LightGBM seed: AUPRC over every applicant of the test period, the recall of farm and
synthetic-identity applicants after their ring's second member at the block threshold, the
precision over everything flagged, and the best recall at precision 0.90 on the period's own curve
(a ranking figure, not an operating point).

1. replays the world once (``generate`` first when ``--world`` has none) and keeps its onboarding
   rows in ``--rows`` (a Parquet file; later runs read it instead of replaying, ~20 min at 60k);
2. refits every shape and seed and prints the table.

Run: ``python bench/onboarding_models.py --users 60000 --seed 9090 --rows var/onb-rows-9090.parquet``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score

import gnn.decision_models as dm
from gnn.asof import ONBOARDING
from gnn.backtest import (
    HOUR_MS,
    BacktestConfig,
    after_second_member,
    onboarding_times,
    post_application_users,
    run_backtest,
)
from graphrisk.config import load_settings
from graphrisk.synthetic import generate
from pipelines.event_log import read_event_log
from pipelines.refresh import discover_partitions

SHAPES: dict[str, tuple[dict[str, Any], int]] = {  # name -> (tree parameters, seeds averaged)
    "depth-one": ({"num_leaves": 2, "learning_rate": 0.1}, 1),
    "eight leaves": ({"num_leaves": 8, "learning_rate": 0.05}, 1),
    "eight leaves, 3 seeds (served)": ({"num_leaves": 8, "learning_rate": 0.05}, 3),
}


def replay_rows(world: Path, rows_path: Path) -> None:
    """Replay ``world`` and write its onboarding rows, decision times and replay span."""
    events = world / "events"
    log = read_event_log(events, [q.path for q in discover_partitions(events)], load_settings())
    labels = pd.read_parquet(world / "labels" / "users.parquet")
    t0 = time.perf_counter()
    result = run_backtest(log, labels, BacktestConfig())
    print(f"replayed in {time.perf_counter() - t0:.0f} s", flush=True)
    x, users, decided = result.rows[ONBOARDING].arrays()
    frame = pd.DataFrame(x, columns=result.rows[ONBOARDING].names)
    frame.insert(0, "_user_id", users.astype(str))
    frame.insert(1, "_decided_ms", decided)
    frame.insert(2, "_onboarded_ms", onboarding_times(result.onboarded_at, users).astype(np.int64))
    frame.attrs = {}
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(rows_path, index=False)
    rows_path.with_suffix(".json").write_text(
        json.dumps({"first_cutoff": result.first_cutoff, "end": result.end})
    )


def evaluate(
    frame: pd.DataFrame, span: dict[str, int], labels: pd.DataFrame, cfg: BacktestConfig,
    params: dict[str, Any], seeds: int,
) -> dict[str, float]:  # fmt: skip
    """Daily refits (tree shape ``params``, ``seeds`` boosters averaged), each scored on the next day's applicants."""
    names = [c for c in frame.columns if not c.startswith("_")]
    x = frame[names].to_numpy(np.float32)
    users = frame["_user_id"].to_numpy(object)
    decided = frame["_decided_ms"].to_numpy(np.int64)
    onboarded = frame["_onboarded_ms"].to_numpy(np.float64)
    y = labels.set_index("user_id")["is_fraud"].reindex(users).fillna(-1).to_numpy(np.int64, copy=True)
    y[np.isin(users, post_application_users(labels, cfg.post_application_typologies))] = -1
    step = cfg.retrain_every_h * HOUR_MS
    parts = []
    for cut in range(span["first_cutoff"], span["end"], step):
        model = dm.fit_decision_model(
            ONBOARDING, x, y, decided, onboarded, cut, names, cfg.onboarding_options,
            label_delay_h=cfg.label_delay_h, target_precision=cfg.target_precision,
            block_base_rate=cfg.block_base_rate.get(ONBOARDING), review_fraction=cfg.review_fraction, seed=cfg.seed,
            tree_params=params, seeds=seeds,
        )  # fmt: skip
        day = (decided >= cut) & (decided < cut + step)
        s = model.predict(x[day])
        parts.append(pd.DataFrame({"user_id": users[day], "time": decided[day], "score": s,
                                   "flag": model.band(s) == "block"}))  # fmt: skip
    onb = pd.concat(parts, ignore_index=True).merge(
        labels[["user_id", "is_fraud", "typology", "ring_id"]], on="user_id", how="left"
    )
    onboarded_at = pd.Series(onboarded, index=users)
    late = after_second_member(onb, labels, onboarded_at[onboarded_at < np.iinfo(np.int64).max // 4])
    n = {t: late[t]["applicants"] for t in ("device_farm", "synthetic_identity")}
    both = sum(late[t]["recall_at_block"] * n[t] for t in n) / max(sum(n.values()), 1)
    return {
        "auprc": float(average_precision_score(onb["is_fraud"], onb["score"])),
        "late_recall": float(both),
        "late_applicants": float(sum(n.values())),
        "precision": float(late["precision_at_block_all_applicants"]),
        "curve_recall_at_p0.9": float(late["best_recall_at_precision_0.9_on_period_curve"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=60_000)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=9090, help="the world's seed")
    p.add_argument(
        "--world", type=Path, default=None, help="world folder (default var/backtest/<seed>-<users>)"
    )
    p.add_argument("--rows", type=Path, required=True, help="onboarding rows of the replay (written once)")
    p.add_argument("--lgb-seeds", type=int, default=3, help="LightGBM seeds per shape")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = args.world or Path("var/backtest") / f"{args.seed}-{args.users}"
    if not (world / "labels" / "users.parquet").exists():
        generate(world, users=args.users, seed=args.seed, days=args.days, overwrite=True)
    if not args.rows.exists():
        replay_rows(world, args.rows)
    frame = pd.read_parquet(args.rows)
    span = json.loads(args.rows.with_suffix(".json").read_text())
    labels = pd.read_parquet(world / "labels" / "users.parquet")
    print(f"world {world}: {len(frame)} applicants, {frame.shape[1] - 3} columns")
    print(
        f"{'shape':32s} {'seed':>4s} {'AUPRC':>6s} {'late rec@blk':>12s} {'prec@blk':>8s} {'curve rec@p0.9':>14s}"
    )
    for name, (params, seeds) in SHAPES.items():
        figures = []
        for s in range(args.lgb_seeds):
            # Averaged shapes use seeds s, s+1, s+2: start them apart so no two runs share one.
            r = evaluate(frame, span, labels, replace(BacktestConfig(), seed=s * seeds), params, seeds)
            figures.append(r)
            print(f"{name:32s} {s * seeds:4d} {r['auprc']:6.3f} {r['late_recall']:12.3f} {r['precision']:8.3f} "
                  f"{r['curve_recall_at_p0.9']:14.3f}", flush=True)  # fmt: skip
        mean = {k: float(np.mean([f[k] for f in figures])) for k in figures[0]}
        print(f"{name + ' (mean)':32s} {'':4s} {mean['auprc']:6.3f} {mean['late_recall']:12.3f} "
              f"{mean['precision']:8.3f} {mean['curve_recall_at_p0.9']:14.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
