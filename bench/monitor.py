"""Drift computation speed: 1M users x 1,000 features against a training reference.

The hourly job measures drift after every refresh, so it must fit inside the hour with room
to spare (target: <= 30 s on the 2-core development machine, one thread):

    python bench/monitor.py --users 1000000 --features 1000

A synthetic float32 matrix stands in for the behaviour model's input rows (column-major, as
feature columns are stored): a third of the features normal, a third skewed (log-normal), a
third counts, some with missing values. The reference is fitted on separate training rows
(``--train-rows``), as at training time; ``--shifted`` features of the current rows are moved
so the alarms have something to find. Prints the reference fit time, the drift time (PSI and
KS for every feature, family roll-up, score and band drift, alarms) and the process's peak
memory (the matrix itself is 4 bytes x users x features).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from gnn.monitor.reference import build_reference
from gnn.monitor.run import monitor_rows
from graphrisk.config import load_settings


def synthetic_rows(n: int, f: int, seed: int, shifted: int = 0) -> np.ndarray:
    """``[n, f]`` float32, column-major, filled one column at a time (no full-size temporaries)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, f), dtype=np.float32, order="F")
    for j in range(f):
        kind = j % 3
        if kind == 0:
            col = rng.standard_normal(n, dtype=np.float32)
        elif kind == 1:
            col = np.exp(rng.standard_normal(n, dtype=np.float32))
        else:
            col = np.floor(rng.standard_exponential(n, dtype=np.float32) * 3)
        if j % 10 == 0:
            col[rng.random(n, dtype=np.float32) < 0.1] = np.nan  # missing values
        if j < shifted:
            col = col * 1.5 + 0.5  # a changed feature
        x[:, j] = col
    return x


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--train-rows", type=int, default=200_000)
    ap.add_argument("--shifted", type=int, default=50)
    args = ap.parse_args()
    names = [f"f{j:04d}" for j in range(args.features)]
    settings = load_settings(environment="test")

    t0 = time.perf_counter()
    train = synthetic_rows(args.train_rows, args.features, seed=1)
    train_scores = np.random.default_rng(2).beta(0.5, 20, args.train_rows)
    t1 = time.perf_counter()
    reference = build_reference("refresh", "bench", train, names, train_scores, 0.2, 0.5)
    t2 = time.perf_counter()
    del train
    current = synthetic_rows(args.users, args.features, seed=3, shifted=args.shifted)
    scores = np.random.default_rng(4).beta(0.6, 20, args.users)
    t3, c3 = time.perf_counter(), time.process_time()
    result = monitor_rows(reference, settings, current, names, scores)
    t4, c4 = time.perf_counter(), time.process_time()

    alarmed = result.alarmed("feature_psi") | result.alarmed("feature_ks")
    expected = set(names[: args.shifted])
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"rows: reference {args.train_rows:,}, current {args.users:,} x {args.features:,} features")
    print(f"data generation: {t1 - t0 + t3 - t2:.1f} s (not part of the target)")
    print(f"reference fit (training time): {t2 - t1:.1f} s")
    # CPU time too: on a shared machine the wall clock also counts other processes' turns.
    print(f"drift (PSI + KS per feature, families, scores, bands, alarms): {t4 - t3:.1f} s wall, "
          f"{c4 - c3:.1f} s CPU  [target <= 30 s]")  # fmt: skip
    print(f"alarms on shifted features: {len(alarmed & expected)}/{len(expected)}, "
          f"on unshifted: {len(alarmed - expected)}; score PSI {result.prediction.score_psi:.3f}")  # fmt: skip
    print(f"peak memory: {peak_gib:.2f} GiB (current matrix {current.nbytes / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
