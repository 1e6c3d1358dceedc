"""Feature drift: PSI and KS per feature against the training reference, rolled up per family."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gnn.monitor.binning import MISSING, FeatureBins, ks_from_counts, proportions, psi
from gnn.monitor.families import family_of


def feature_drift(reference: FeatureBins, x: np.ndarray, names: list[str] | None = None) -> pd.DataFrame:
    """PSI (decile bins) and KS (percentile grid, continuous features only) of each feature.

    Args:
        reference: The training reference's bins.
        x: Current rows ``[N, F]``. Column-major (Fortran) order is fastest: each feature's
            column is sorted once.
        names: ``x``'s column names when they differ from the reference's order; features the
            reference lacks are skipped, features ``x`` lacks are reported with NaN drift.

    Returns:
        One row per reference feature, ranked by PSI: ``feature, family, psi, ks, continuous,
        missing_ref, missing_cur, rows_cur``.
    """
    bins = reference
    if names is not None and list(names) != reference.names:
        pos = {n: i for i, n in enumerate(names)}
        common = [n for n in reference.names if n in pos]
        bins = reference.subset(common)
        x = np.asarray(x)[:, [pos[n] for n in common]]
    cur = bins.count(x)
    ref = bins.counts
    ks = np.where(bins.continuous, ks_from_counts(ref, cur), np.nan)
    table = pd.DataFrame(
        {
            "feature": bins.names,
            "family": [family_of(n) for n in bins.names],
            "psi": psi(bins.coarse(ref), bins.coarse(cur)),
            "ks": ks,
            "continuous": bins.continuous,
            "missing_ref": proportions(ref)[:, MISSING],
            "missing_cur": proportions(cur)[:, MISSING],
            "rows_cur": cur.sum(axis=1),
        }
    )
    absent = [n for n in reference.names if n not in set(bins.names)]
    if absent:
        gone = pd.DataFrame({"feature": absent, "family": [family_of(n) for n in absent]})
        table = pd.concat([table, gone], ignore_index=True)
    return table.sort_values("psi", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def family_drift(table: pd.DataFrame, psi_alert: float, ks_alert: float) -> pd.DataFrame:
    """Per family: features, the largest and mean PSI, the largest KS, and how many features
    exceed each alert threshold; ranked by largest PSI."""
    t = table.assign(
        psi_over=table["psi"] >= psi_alert,
        ks_over=table["ks"] >= ks_alert,
    )
    out = t.groupby("family", sort=False).agg(
        features=("feature", "size"),
        psi_max=("psi", "max"),
        psi_mean=("psi", "mean"),
        ks_max=("ks", "max"),
        psi_alerts=("psi_over", "sum"),
        ks_alerts=("ks_over", "sum"),
    )
    return out.sort_values("psi_max", ascending=False, na_position="last").reset_index()
