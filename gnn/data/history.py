"""Point-in-time aggregates over a transaction log: each row sees only strictly earlier rows.

Every function takes rows already sorted by time (ties broken by row order) and group codes,
and returns one value per row computed from the earlier rows of the same group. Nothing here
reads labels; label features are split-dependent and live in :mod:`gnn.features`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def group_codes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Dense int64 code per row for the tuple of ``columns`` (a group key)."""
    return frame.groupby(columns, sort=False, observed=True).ngroup().to_numpy(np.int64)


def _window_start(
    codes: np.ndarray, time: np.ndarray, window: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row: its position in group-then-time order, the position of the first
    earlier row of the same group with ``time > t - window``, and the sort order itself.

    Sorting by ``(code, time)`` puts each group's rows in one run, so a searchsorted on the
    composite key finds a window's start in O(log n) without a Python loop over groups.
    """
    order = np.lexsort((np.arange(len(codes)), time, codes))
    # Composite key: groups far apart, time inside; float64 is exact for the ranges used here.
    span = float(time.max() - time.min() + window + 1.0)
    key = codes[order].astype(np.float64) * span + (time[order] - time.min())
    pos = np.empty(len(codes), dtype=np.int64)
    pos[order] = np.arange(len(codes))
    start_sorted = np.searchsorted(key, key - window, side="right")
    start = np.empty(len(codes), dtype=np.int64)
    start[order] = start_sorted
    return pos, start, order


def history_aggregates(
    frame: pd.DataFrame,
    key: list[str],
    amount: str,
    time: str,
    windows: tuple[float, ...] = (),
    distinct: tuple[str, ...] = (),
    indicators: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Aggregates of the earlier rows sharing ``key``.

    Args:
        frame: Rows in time order.
        key: Columns forming the group (one entity, or a pair such as card and merchant).
        amount: Numeric column summarised (count, mean, std, max, min, last, ratios).
        time: Time column, for gaps and rolling windows.
        windows: Rolling window lengths, in ``time`` units: count and amount sum of the earlier
            rows with ``time > t - w``.
        distinct: Columns whose number of distinct earlier values in the group is counted
            (a card's distinct merchants), plus a flag for a value not seen before.
        indicators: Per-row 0/1 columns (for example "first transaction of its card") whose
            earlier-row mean and windowed sums are added: a burst of new cards at one merchant.

    Returns:
        One row per input row, columns prefixed ``"<key>_"``.
    """
    name = "+".join(key)
    codes = group_codes(frame, key)
    g = pd.Series(codes)
    amt = frame[amount].to_numpy(np.float64)
    t = frame[time].to_numpy(np.float64)
    a = pd.Series(amt)
    out: dict[str, np.ndarray] = {}

    cnt = g.groupby(g).cumcount().to_numpy(np.float64)
    csum = a.groupby(g).cumsum().to_numpy() - amt
    csq = (a * a).groupby(g).cumsum().to_numpy() - amt * amt
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, csum / cnt, np.nan)
        var = np.where(cnt > 1, (csq - cnt * mean * mean) / np.maximum(cnt - 1, 1), np.nan)
        std = np.sqrt(np.clip(var, 0, None))
        prev_amt = a.groupby(g).shift(1)
        prev_t = pd.Series(t).groupby(g).shift(1).to_numpy()
        first_t = pd.Series(t).groupby(g).transform("first").to_numpy()
        out[f"{name}_count"] = cnt
        out[f"{name}_amt_mean"] = mean
        out[f"{name}_amt_std"] = std
        out[f"{name}_amt_max"] = prev_amt.groupby(g).cummax().to_numpy()
        out[f"{name}_amt_min"] = prev_amt.groupby(g).cummin().to_numpy()
        out[f"{name}_amt_last"] = prev_amt.to_numpy()
        out[f"{name}_amt_ratio"] = amt / (mean + 1.0)
        out[f"{name}_amt_z"] = (amt - mean) / (std + 1.0)
        out[f"{name}_amt_eq_last"] = (amt == prev_amt.to_numpy()).astype(np.float64)
        out[f"{name}_dt_last"] = t - prev_t
        out[f"{name}_dt_first"] = np.where(cnt > 0, t - first_t, np.nan)

    if windows:
        pos, _, order = _window_start(codes, t, 0.0)
        cs_sorted = np.concatenate([[0.0], np.cumsum(amt[order])])
        for w in windows:
            _, start, _ = _window_start(codes, t, float(w))
            n = pos - start  # earlier rows of the group inside (t - w, t]; excludes the row
            out[f"{name}_cnt_w{int(w)}"] = n.astype(np.float64)
            out[f"{name}_amt_w{int(w)}"] = cs_sorted[pos] - cs_sorted[start]
            for ind_name, ind in (indicators or {}).items():
                ics = np.concatenate([[0.0], np.cumsum(ind[order].astype(np.float64))])
                k = ics[pos] - ics[start]
                out[f"{name}_{ind_name}_w{int(w)}"] = k
                out[f"{name}_{ind_name}_frac_w{int(w)}"] = k / np.maximum(n, 1)
    for ind_name, ind in (indicators or {}).items():
        ind = ind.astype(np.float64)
        before = pd.Series(ind).groupby(g).cumsum().to_numpy() - ind
        out[f"{name}_{ind_name}_mean"] = np.where(cnt > 0, before / np.maximum(cnt, 1), np.nan)

    for col in distinct:
        pair = group_codes(frame, [*key, col])
        first_seen = (~pd.Series(pair).duplicated()).to_numpy(np.float64)
        # Distinct values before this row = new values seen so far, minus this row's own.
        seen = pd.Series(first_seen).groupby(g).cumsum().to_numpy() - first_seen
        out[f"{name}_distinct_{col}"] = seen
        out[f"{name}_new_{col}"] = first_seen
    return pd.DataFrame(out, index=frame.index)


def windowed_sums(
    codes: np.ndarray, time: np.ndarray, values: np.ndarray, window: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: number of earlier same-group rows with ``time > t - window``, and the sum of
    ``values`` over them (the row itself excluded)."""
    pos, start, order = _window_start(codes, time.astype(np.float64), float(window))
    cs = np.concatenate([[0.0], np.cumsum(values[order].astype(np.float64))])
    return (pos - start).astype(np.float64), cs[pos] - cs[start]


def previous_k_edges(codes: np.ndarray, k: int) -> np.ndarray:
    """Edges ``[2, E]`` from each of a row's ``k`` previous same-group rows to the row.

    Rows must be in time order. Edges always point forward in time, so any number of
    message-passing hops reads only the past; ``k`` caps a hub's fan-in (a big merchant's
    thousands of transactions would otherwise make the graph quadratic).
    """
    g = pd.Series(codes)
    rows = np.arange(len(codes))
    src_parts, dst_parts = [], []
    for lag in range(1, k + 1):
        prev = g.groupby(g).cumcount().to_numpy() >= lag
        # Row index of the lag-th previous row of the same group.
        prev_idx = pd.Series(rows).groupby(g).shift(lag).to_numpy()
        src_parts.append(prev_idx[prev].astype(np.int64))
        dst_parts.append(rows[prev])
    if not src_parts:
        return np.zeros((2, 0), dtype=np.int64)
    return np.stack([np.concatenate(src_parts), np.concatenate(dst_parts)])
