"""Quantile bins fitted once on training rows, bin counts of new rows, and PSI and KS from them.

Each feature gets the reference's percentiles (0, 1, ..., 100). Its *fine* bins are cut at the
distinct percentiles 1..99 (at most 100 bins), its *coarse* bins at the distinct deciles 10..90
(at most 10 bins, each a union of fine bins, since the deciles are among the percentiles). A last
column counts missing values (NaN), so a change in missingness is drift too.

* PSI is computed on the coarse (decile) bins, the convention its usual thresholds (0.1, 0.2)
  were calibrated on.
* KS is evaluated on the fine bins: the largest gap between the two empirical CDFs at the
  reference's percentiles. For a continuous feature it is at most one percentile's mass (~0.01)
  below the exact two-sample statistic, and needs no sample of the training rows.

Counting sorts each feature's column once (NumPy's vectorised sort) and finds every edge with
one ``searchsorted`` over the sorted column: 1M rows x 1,000 features in ~9 s of CPU
(bench/monitor.py), where ``searchsorted`` of every value into the edges takes ~80 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

PERCENTILES = 101  # 0, 1, ..., 100
FINE = PERCENTILES - 1  # at most 100 fine bins (99 inner edges)
COARSE = 10  # at most 10 decile bins (9 inner edges)
MISSING = -1  # the missing-value column is the last one
# Probabilities are floored at this before PSI's logarithm: an empty bin on one side would
# otherwise make PSI infinite. 1e-4 is the common choice; it bounds one bin's term at ~0.9.
PSI_FLOOR = 1e-4
# A feature with at least this many distinct reference percentiles is treated as continuous
# (KS reported); below it the feature is a count or a flag, where KS jumps at ties.
CONTINUOUS_MIN_EDGES = 20
DEFAULT_BLOCK = 64  # features sorted together: 64 x 1M float32 is 256 MB


def _column_blocks(x: np.ndarray, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first feature, block)``: columns of ``x`` as rows of a C-contiguous float array, a
    copy sorted in place (missing values last), so the caller's matrix is never changed."""
    if x.dtype.kind != "f":
        x = x.astype(np.float64)  # NaN marks missing values: integers and booleans become floats
    n, f = x.shape
    for f0 in range(0, f, block):
        f1 = min(f, f0 + block)
        cols = x[:, f0:f1]
        if cols.flags.f_contiguous:
            out = np.array(cols.T, order="C")  # already column-major: a plain copy
        else:
            # Row tiles keep the transposition in cache: one strided copy of the whole block
            # reads each row's cache line once per column and is several times slower.
            out = np.empty((f1 - f0, n), dtype=x.dtype)
            for r0 in range(0, n, 8192):
                out[:, r0 : r0 + 8192] = cols[r0 : r0 + 8192].T
        out.sort(axis=1)
        yield f0, out


def _valid_count(sorted_col: np.ndarray) -> int:
    # NaN sorts last, and searchsorted places NaN after every number: this is the number of
    # non-missing values.
    return int(np.searchsorted(sorted_col, np.nan, side="left"))


@dataclass
class FeatureBins:
    """Reference percentiles and fine-bin counts of each feature, fitted once on training rows.

    Attributes:
        names: Feature names, in column order.
        quantiles: ``[F, 101]`` percentiles 0..100 of the non-missing values (NaN: all missing).
        counts: ``[F, 101]`` reference rows per fine bin (columns 0..99) and missing (column 100).
    """

    names: list[str]
    quantiles: np.ndarray
    counts: np.ndarray
    _inner: np.ndarray | None = field(default=None, repr=False, compare=False)
    _n_inner: np.ndarray | None = field(default=None, repr=False, compare=False)
    _coarse_of_fine: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, x: np.ndarray, names: list[str], block: int = DEFAULT_BLOCK) -> FeatureBins:
        """Percentiles and bin counts of the rows ``x`` (``[N, F]``, NaN for missing).

        Raises:
            ValueError: ``names`` does not match ``x``'s columns, or ``x`` has no rows.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ValueError(f"{len(names)} names for rows of shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("no reference rows")
        q = np.full((x.shape[1], PERCENTILES), np.nan)
        for f0, cols in _column_blocks(x, block):
            for j, col in enumerate(cols):
                m = _valid_count(col)
                if m:
                    # Inverted-CDF percentiles: each edge is an observed value, exact in float32.
                    pos = np.clip(np.ceil(np.linspace(0, 1, PERCENTILES) * m).astype(np.int64) - 1, 0, m - 1)
                    q[f0 + j] = col[pos]
        bins = cls(list(names), q, np.zeros((x.shape[1], FINE + 1), dtype=np.int64))
        bins.counts = bins.count(x, block)
        return bins

    def _edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fine inner edges ``[F, 99]`` (padded with +inf), their number per feature, and the
        coarse bin of every fine bin ``[F, 100]``."""
        if self._inner is None or self._n_inner is None or self._coarse_of_fine is None:
            f = len(self.names)
            inner = np.full((f, FINE - 1), np.inf)
            n_inner = np.zeros(f, dtype=np.int64)
            coarse_of_fine = np.zeros((f, FINE), dtype=np.int64)
            for j in range(f):
                qj = self.quantiles[j]
                fine = np.unique(qj[1:FINE][np.isfinite(qj[1:FINE])])
                coarse = np.unique(qj[COARSE:FINE:COARSE][np.isfinite(qj[COARSE:FINE:COARSE])])
                inner[j, : len(fine)] = fine
                n_inner[j] = len(fine)
                # Fine bin b >= 1 starts at fine[b - 1]; its coarse bin counts coarse edges <= that.
                coarse_of_fine[j, 1 : len(fine) + 1] = np.searchsorted(coarse, fine, side="right")
                coarse_of_fine[j, len(fine) + 1 :] = len(coarse)
            self._inner, self._n_inner, self._coarse_of_fine = inner, n_inner, coarse_of_fine
        return self._inner, self._n_inner, self._coarse_of_fine

    @property
    def continuous(self) -> np.ndarray:
        """Whether each feature has enough distinct reference percentiles for KS to mean much."""
        return self._edges()[1] + 1 >= CONTINUOUS_MIN_EDGES

    def count(self, x: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
        """``[F, 101]`` rows of ``x`` per fine bin, and missing in the last column.

        Raises:
            ValueError: ``x`` does not have one column per feature.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.names):
            raise ValueError(f"rows of shape {x.shape} for {len(self.names)} features")
        inner, n_inner, _ = self._edges()
        out = np.zeros((len(self.names), FINE + 1), dtype=np.int64)
        n = x.shape[0]
        for f0, cols in _column_blocks(x, block):
            for j, col in enumerate(cols):
                k = int(n_inner[f0 + j])
                m = _valid_count(col)
                # Values below edge e: bin b holds values in [edge[b-1], edge[b]).
                below = np.searchsorted(col[:m], inner[f0 + j, :k].astype(col.dtype), side="left")
                out[f0 + j, : k + 1] = np.diff(np.concatenate(([0], below, [m])))
                out[f0 + j, MISSING] = n - m
        return out

    def coarse(self, counts: np.ndarray) -> np.ndarray:
        """``[F, 11]`` decile-bin counts (missing last) from fine counts of :meth:`count`."""
        _, _, cof = self._edges()
        f = len(self.names)
        flat = (cof + np.arange(f)[:, None] * (COARSE + 1)).ravel()
        out = np.bincount(flat, weights=counts[:, :FINE].ravel(), minlength=f * (COARSE + 1))
        out = out.reshape(f, COARSE + 1)
        out[:, MISSING] = counts[:, MISSING]
        return out

    def subset(self, names: list[str]) -> FeatureBins:
        """The bins of ``names`` only, in that order.

        Raises:
            KeyError: a name has no reference bins.
        """
        pos = {n: i for i, n in enumerate(self.names)}
        idx = np.array([pos[n] for n in names], dtype=np.int64)
        return FeatureBins(list(names), self.quantiles[idx], self.counts[idx])


def proportions(counts: np.ndarray) -> np.ndarray:
    """Counts normalised per row (a row of zeros stays zeros)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> np.ndarray:
    """Population stability index over the last axis: ``sum((a - e) * ln(a / e))``.

    Both inputs are proportions (or counts, normalised here) over the same bins. Symmetric in its
    two arguments, zero for identical distributions, otherwise positive.
    """
    e = np.maximum(proportions(expected), floor)
    a = np.maximum(proportions(actual), floor)
    return np.sum((a - e) * np.log(a / e), axis=-1)


def ks_from_counts(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Largest gap between the two CDFs at the bin edges, over non-missing values (last axis,
    missing in the last column). NaN where either side has no non-missing value."""
    e = np.asarray(expected, dtype=np.float64)[..., :MISSING]
    a = np.asarray(actual, dtype=np.float64)[..., :MISSING]
    ne, na = e.sum(axis=-1), a.sum(axis=-1)
    ok = (ne > 0) & (na > 0)
    ce = np.cumsum(e, axis=-1) / np.where(ne > 0, ne, 1)[..., None]
    ca = np.cumsum(a, axis=-1) / np.where(na > 0, na, 1)[..., None]
    return np.where(ok, np.max(np.abs(ce - ca), axis=-1), np.nan)
