"""Benchmark: replay a synthetic world hour by hour and score every decision as of its moment.

1. ``generate`` a world (skipped when ``--world`` already holds one);
2. read it with the pipeline's own stages (:func:`pipelines.event_log.read_event_log`);
3. replay (:func:`gnn.backtest.run_backtest`): onboarding rows at each application, refresh
   rows and rings at each refresh, refits on a schedule from labels known by then;
4. print the report's tables (onboarding first; the same applicants end-of-window beside them)
   and write the JSON report (``--json``) and PNG plots (``--plots``).

Run: ``python bench/backtest.py --users 60000 --days 14 --seed 4243 --json var/backtest.json``.
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

from gnn.backtest import BacktestConfig, backtest_report, run_backtest
from gnn.backtest_plots import write_plots
from graphrisk.config import load_settings
from graphrisk.synthetic import generate
from pipelines.event_log import read_event_log
from pipelines.refresh import discover_partitions


def _table(title: str, block: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'':22s} {'rows':>8s} {'fraud':>6s} {'AUROC':>6s} {'AUPRC':>6s} {'rec@blk':>7s} {'prec@blk':>8s}")
    for name, q in block.items():
        if not isinstance(q, dict) or "rows" not in q:
            continue
        print(
            f"{name:22s} {int(q['rows']):8d} {int(q['fraud']):6d} {q.get('auroc', float('nan')):6.3f} "
            f"{q.get('auprc', float('nan')):6.3f} {q['recall_at_block']:7.3f} {q['precision_at_block']:8.3f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=60_000)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=4243)
    p.add_argument(
        "--world", type=Path, default=None, help="world folder (default var/backtest/<seed>-<users>)"
    )
    p.add_argument("--train-hours", type=int, default=7 * 24)
    p.add_argument("--refresh-every", type=int, default=1, help="hours between refreshes")
    p.add_argument("--label-delay-h", type=float, default=72.0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plots", type=Path, default=None, help="folder for the PNG plots")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    world = args.world or Path("var/backtest") / f"{args.seed}-{args.users}"
    t0 = time.perf_counter()
    if not (world / "labels" / "users.parquet").exists():
        generate(world, users=args.users, seed=args.seed, days=args.days, overwrite=True)
    t1 = time.perf_counter()
    events = world / "events"
    log = read_event_log(events, [q.path for q in discover_partitions(events)], load_settings())
    t2 = time.perf_counter()
    labels = pd.read_parquet(world / "labels" / "users.parquet")
    rings = pd.read_parquet(world / "labels" / "rings.parquet")
    if "burst_start" in rings:
        # The planted burst start, so "flagged before the burst" counts from the truth.
        labels = labels.merge(rings[["ring_id", "burst_start"]], on="ring_id", how="left")
    cfg = BacktestConfig(train_hours=args.train_hours, refresh_every_h=args.refresh_every,
                         label_delay_h=args.label_delay_h)  # fmt: skip
    done = [0]

    def progress(i: int, n: int) -> None:
        if i * 10 // n != done[0]:
            done[0] = i * 10 // n
            print(f"  replay {i}/{n} hours, {time.perf_counter() - t2:.0f} s", flush=True)

    result = run_backtest(log, labels, cfg, progress)
    t3 = time.perf_counter()
    report = backtest_report(result, log, labels, cfg)
    report["world"] = {"users": args.users, "days": args.days, "seed": args.seed, "events": log.accepted}
    report["timings_s"] |= {
        "generate": round(t1 - t0, 1),
        "read": round(t2 - t1, 1),
        "replay": round(t3 - t2, 1),
    }
    report["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)

    print(f"\nworld: {args.users} users, {args.days} days, seed {args.seed}, {log.accepted} events")
    if "onboarding" in report:
        _table(
            "ONBOARDING (each applicant at its application, model trained on the past)", report["onboarding"]
        )
        print("  after their ring's second member:", json.dumps(report["onboarding"]["after_second_member"]))
    if "onboarding_users_end_of_window" in report:
        _table("the same applicants END-OF-WINDOW (features at the replay's last hour)",
               report["onboarding_users_end_of_window"])  # fmt: skip
    if "refresh" in report:
        _table("REFRESH (every user with history at each refresh hour)", report["refresh"])
    rings = report.get("rings", {}).get("summary", {})
    if rings:
        print("\nRINGS (per planted ring whose moment falls in the test period)")
        for typ, r in rings.items():
            print(f"  {typ:20s} rings {r['rings']:3d}  met {r['met']:.2f} ({r['target']})  detected {r['detected']}"
                  f"  median h from 1st onboarding {r['median_hours_from_first_onboarding']:.1f}"
                  f"  money out before detection {r['money_out_before_share']:.2f}")  # fmt: skip
    print("\nreview load:", json.dumps(report["review_load"]))
    print("timings (s):", json.dumps(report["timings_s"]), "peak RSS GB", report["peak_rss_gb"])
    if args.plots:
        write_plots(report, result, args.plots)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # Every scored applicant, for anyone re-cutting the figures.
        result.onboarding.to_parquet(args.json.with_suffix(".onboarding.parquet"), index=False)
        args.json.write_text(json.dumps(report, indent=2, default=_plain))


def _plain(v: object) -> object:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


if __name__ == "__main__":
    main()
