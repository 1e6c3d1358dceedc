"""Decision thresholds: for a target precision, for a review capacity (under a block band), or for best F1."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve


def threshold_for_precision(
    scores: np.ndarray, y: np.ndarray, precision: float, base_rate: float | None = None
) -> float:
    """Lowest threshold whose alerts (``score >= t``) reach ``precision`` on ``(scores, y)``.

    The lowest such threshold catches the most positives. Returns ``inf`` (alert nothing) when
    no threshold reaches the precision.

    With ``base_rate``, precision is what the threshold would give where that share of the
    decisions is fraud: ``pi TPR / (pi TPR + (1 - pi) FPR)``, from the true- and false-positive
    rates on ``(scores, y)``, which do not depend on the mix. Fraud's share moves (a quiet week
    after a wave of rings), and a threshold tuned at the validation period's share lets through
    every false positive a lower share makes relatively more of.
    """
    if base_rate is None:
        p, _, t = precision_recall_curve(y, scores)
        ok = np.flatnonzero(p[:-1] >= precision)
        return float(t[ok[0]]) if len(ok) else float("inf")
    if not 0 < base_rate < 1:
        raise ValueError(f"base_rate must be in (0, 1), got {base_rate}")
    y = np.asarray(y)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s, pos = np.asarray(scores, dtype=np.float64)[order], (y[order] == 1)
    # Candidate thresholds are the distinct scores; counts are of alerts at score >= t.
    last = np.r_[s[1:] != s[:-1], True]
    tpr = np.cumsum(pos)[last] / max(int(pos.sum()), 1)
    fpr = np.cumsum(~pos)[last] / max(int((~pos).sum()), 1)
    prec = base_rate * tpr / np.maximum(base_rate * tpr + (1 - base_rate) * fpr, 1e-300)
    ok = np.flatnonzero((prec >= precision) & (tpr > 0))
    return float(s[last][ok[-1]]) if len(ok) else float("inf")


def threshold_for_f1(scores: np.ndarray, y: np.ndarray) -> float:
    """Threshold maximising F1 of the positive class on ``(scores, y)``."""
    p, r, t = precision_recall_curve(y, scores)
    f1 = 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-12)
    return float(t[int(np.argmax(f1))])


def threshold_for_fraction(scores: np.ndarray, fraction: float) -> float:
    """Threshold alerting the top ``fraction`` of ``scores`` (a review capacity)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(int(np.floor(fraction * len(scores))), 1)
    return float(np.sort(scores)[::-1][k - 1])


def threshold_for_band(scores: np.ndarray, upper: float, fraction: float) -> float:
    """Lower edge ``t <= upper`` of a band ``[t, upper)`` holding about ``fraction`` of ``scores``.

    The band sits under ``upper`` (the block threshold) and is sized by the review capacity
    alone, so it is not swallowed by the block band: the top ``fraction`` of all scores is often
    above ``upper`` already, which left ``[min(top-fraction, upper), upper)`` empty. The count is
    ``fraction`` of *all* scores (the capacity is per user scored). With fewer scores than that
    under ``upper``, the band takes all of them; ties at the cut may add a few.

    Raises:
        ValueError: ``fraction`` is not in (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    below = np.sort(scores[scores < upper])[::-1]
    if len(below) == 0:
        return float(upper)
    k = min(max(int(np.floor(fraction * len(scores))), 1), len(below))
    return float(below[k - 1])


def band_fractions(scores: np.ndarray, review: float, block: float) -> dict[str, float]:
    """Share of ``scores`` in the ``block`` (``>= block``) and ``review`` (``[review, block)``) bands."""
    n = max(len(scores), 1)
    blocked = scores >= block
    return {
        "block": float(blocked.sum() / n),
        "review": float(((scores >= review) & ~blocked).sum() / n),
    }


def top_k_per_period(scores: np.ndarray, periods: np.ndarray, k: int) -> np.ndarray:
    """Boolean alert mask: the ``k`` highest scores of each period (a day's review queue).

    Ties at the cut are broken by order of appearance, so exactly ``min(k, size)`` alerts per
    period.
    """
    frame = pd.DataFrame({"s": scores, "p": periods})
    rank = frame.groupby("p")["s"].rank(method="first", ascending=False)
    return (rank <= k).to_numpy()
