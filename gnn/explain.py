"""Explanations investigators can act on: feature contributions and plain-language reasons.

Tree models get exact TreeSHAP contributions from LightGBM (``pred_contrib``), in log-odds,
summing with the bias to the model's raw score. Reasons are the contributions that push the
score *up* by at least a floor, in words from the one feature registry
(:mod:`gnn.feature_registry`); a feature pushing the score down is never a reason for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gnn.feature_registry import reason_text

# Contributions under this (log-odds) are not reasons: a push of 0.01 moves a 1 % score by
# about 0.0001, nothing an investigator should read about. Settings.explain_min_contribution.
DEFAULT_MIN_CONTRIBUTION = 0.1


@dataclass(frozen=True)
class Contribution:
    """One feature's value and its push on the score (log-odds)."""

    feature: str
    value: float
    contribution: float


def booster_score(
    booster: Any,
    iteration: int | None,
    x: np.ndarray,
    names: list[str],
    explain: bool = True,
    top: int = 50,
) -> tuple[float, list[Contribution]]:
    """A LightGBM booster's raw score for one feature row and (optionally) its ``top`` TreeSHAP
    contributions, largest absolute first (the bias term is left out)."""
    one = np.asarray(x, dtype=np.float32).reshape(1, -1)
    # One row: OpenMP's thread team costs more than the trees (1.2 ms vs 0.1 ms under load).
    raw = float(booster.predict(one, num_iteration=iteration, num_threads=1)[0])
    if not explain:
        return raw, []
    contrib = booster.predict(one, num_iteration=iteration, pred_contrib=True, num_threads=1)[0][: len(names)]
    # Only the largest matter to a reader; objects for all ~1,400 columns cost milliseconds.
    order = np.argsort(-np.abs(contrib), kind="stable")[:top]
    return raw, [Contribution(names[i], float(one[0, i]), float(contrib[i])) for i in order]


def top_reasons(
    contributions: list[Contribution], k: int = 3, min_contribution: float = DEFAULT_MIN_CONTRIBUTION
) -> list[tuple[str, str, float]]:
    """``(code, sentence, weight)`` for the ``k`` largest contributions that raise the score by
    at least ``min_contribution`` (log-odds), largest first; ties by feature name, so the
    answer does not depend on the order contributions arrive in."""
    floor = max(min_contribution, 0.0)
    up = sorted(
        (c for c in contributions if c.contribution > 0 and c.contribution >= floor),
        key=lambda c: (-c.contribution, c.feature),
    )[:k]
    return [(c.feature, reason_text(c.feature, c.value), c.contribution) for c in up]
