"""Training-serving skew: the rows serving built, compared with the batch rows of the same users.

Two comparisons use this:

* applicants: the online row the API served at onboarding (:func:`gnn.online.applicant_row`)
  against the batch as-of onboarding row of the same user and moment (:func:`gnn.asof.onboarding_rows`),
  once the events it read have been folded in;
* known users: the row the API builds for a user with history against the row the last refresh
  published for that user.

Any difference means a model is served inputs it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class SkewReport:
    """Per-feature mismatch between served and batch rows.

    Attributes:
        users: Users present on both sides.
        only_online: Users served online with no batch row yet.
        table: ``feature, mismatch_rate, max_abs_diff, mismatches`` ranked by mismatch rate.
        rows_mismatched: Share of compared users with at least one feature differing.
    """

    users: int
    only_online: int
    table: pd.DataFrame
    rows_mismatched: float = 0.0

    @property
    def worst_mismatch_rate(self) -> float:
        """The largest per-feature mismatch rate (0 when nothing was compared)."""
        return float(self.table["mismatch_rate"].max()) if len(self.table) and self.users else 0.0


def compare_rows(
    online: pd.DataFrame,
    batch: pd.DataFrame,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> SkewReport:
    """Compare served rows with batch rows, matched on their index (user id).

    Both frames hold one row per user and feature columns; only columns present on both sides are
    compared. Values differ when ``|online - batch| > atol + rtol * |batch|`` or exactly one is
    missing (NaN); two NaNs agree. The tolerances absorb float32 storage, not real differences.
    """
    common_users = online.index.intersection(batch.index)
    cols = [c for c in online.columns if c in batch.columns]
    a = online.loc[common_users, cols].to_numpy(np.float64)
    b = batch.loc[common_users, cols].to_numpy(np.float64)
    na, nb = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
        differs = (na != nb) | (~na & ~nb & (diff > atol + rtol * np.abs(b)))
    n = len(common_users)
    # Largest finite difference per feature (0 where none): missing or infinite pairs count as
    # mismatches above, not as sizes.
    finite = np.isfinite(diff) & ~na & ~nb
    max_abs = np.where(finite, diff, 0.0).max(axis=0) if n else np.zeros(len(cols))
    table = pd.DataFrame(
        {
            "feature": cols,
            "mismatches": differs.sum(axis=0) if n else np.zeros(len(cols), dtype=np.int64),
            "mismatch_rate": differs.mean(axis=0) if n else np.zeros(len(cols)),
            "max_abs_diff": max_abs,
        }
    ).sort_values(["mismatch_rate", "max_abs_diff"], ascending=False, kind="stable")
    return SkewReport(
        n,
        len(online.index.difference(batch.index)),
        table.reset_index(drop=True),
        float(differs.any(axis=1).mean()) if n else 0.0,
    )
