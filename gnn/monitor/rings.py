"""Ring model inputs outside their training range: alarm, and refuse to store rings.

A ring model trained on one graph and run on a very different one (another data set, a broken
refresh) scores clusters on feature values it never saw; trees then extrapolate from their edge
leaves and may flag every cluster. :func:`fit_ring_reference` keeps, per ring feature, the
training clusters' 0.5th and 99.5th percentiles (and min, max); :func:`check_ring_inputs` measures
how many current values fall outside them, and says ``refuse`` when that share exceeds the
setting ``ring_input_outside_max``. About 1 % of values fall outside on a graph like the
training one, by construction.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REFERENCE_FILE = "input_range.json"
LOW_Q, HIGH_Q = 0.005, 0.995


@dataclass
class RingReference:
    """Per ring feature: the training clusters' range (p0.5, p99.5, min, max) and whether any
    training value was missing."""

    low: dict[str, float]
    high: dict[str, float]
    minimum: dict[str, float]
    maximum: dict[str, float]
    had_missing: dict[str, bool]
    clusters: int
    version: str = ""

    def save(self, path: Path) -> None:
        """Write as JSON atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> RingReference:
        """Read what :meth:`save` wrote.

        Raises:
            FileNotFoundError: no reference at ``path``.
        """
        return RingReference(**json.loads(Path(path).read_text()))


@dataclass
class RingInputCheck:
    """The verdict on one run's ring features.

    Attributes:
        outside_share: Share of (cluster, feature) values outside the training range.
        threshold: The share above which the run is refused.
        refuse: Whether rings must not be stored.
        clusters: Clusters checked.
        by_feature: Share outside per feature, largest first.
        reason: Why refused (empty when accepted).
    """

    outside_share: float
    threshold: float
    refuse: bool
    clusters: int
    by_feature: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @property
    def verdict(self) -> str:
        """``refuse`` or ``accept``."""
        return "refuse" if self.refuse else "accept"

    def to_dict(self) -> dict[str, object]:
        """Plain dict for reports."""
        return asdict(self) | {"verdict": self.verdict}


def fit_ring_reference(features: pd.DataFrame, version: str = "") -> RingReference:
    """The training range of each ring feature (``features``: one row per training cluster)."""
    x = features.to_numpy(np.float64)
    cols = list(features.columns)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # A feature missing in every training cluster (no user scores) has no range: NaN bounds.
        warnings.simplefilter("ignore", RuntimeWarning)
        finite = np.where(np.isfinite(x), x, np.nan)
        lo = np.nanquantile(finite, LOW_Q, axis=0) if len(x) else np.full(len(cols), np.nan)
        hi = np.nanquantile(finite, HIGH_Q, axis=0) if len(x) else np.full(len(cols), np.nan)
        mn = np.nanmin(finite, axis=0) if len(x) else np.full(len(cols), np.nan)
        mx = np.nanmax(finite, axis=0) if len(x) else np.full(len(cols), np.nan)
    miss = np.isnan(x).any(axis=0) if len(x) else np.zeros(len(cols), bool)

    def as_dict(v: np.ndarray) -> dict[str, float]:
        return {c: float(a) for c, a in zip(cols, v, strict=True)}

    return RingReference(as_dict(lo), as_dict(hi), as_dict(mn), as_dict(mx),
                         {c: bool(m) for c, m in zip(cols, miss, strict=True)}, len(x), version)  # fmt: skip


def check_ring_inputs(
    reference: RingReference, features: pd.DataFrame, threshold: float = 0.1
) -> RingInputCheck:
    """Share of ring-feature values outside the training range; ``refuse`` above ``threshold``.

    A value is outside when below the training p0.5 or above p99.5, or missing for a feature
    that was never missing in training. Features the reference lacks are ignored.
    """
    cols = [c for c in features.columns if c in reference.low]
    n = len(features)
    if n == 0 or not cols:
        return RingInputCheck(0.0, threshold, False, n)
    x = features[cols].to_numpy(np.float64)
    lo = np.array([reference.low[c] for c in cols])
    hi = np.array([reference.high[c] for c in cols])
    miss_ok = np.array([reference.had_missing[c] for c in cols])
    nan = np.isnan(x)
    with np.errstate(invalid="ignore"):
        outside = (x < lo) | (x > hi)
    # A feature all-missing in training has NaN bounds: only its missingness is judged.
    outside = np.where(nan, ~miss_ok, outside & np.isfinite(lo))
    per = outside.mean(axis=0)
    share = float(outside.mean())
    by = dict(sorted(((c, float(p)) for c, p in zip(cols, per, strict=True)), key=lambda kv: -kv[1]))
    refuse = share > threshold
    reason = ""
    if refuse:
        worst = ", ".join(f"{c} {p:.0%}" for c, p in list(by.items())[:3])
        reason = (
            f"{share:.1%} of ring-model inputs lie outside the training range (limit {threshold:.1%}); "
            f"worst: {worst}. The graph differs from the one the ring model was trained on: retrain it."
        )
    return RingInputCheck(share, threshold, refuse, n, by, reason)
