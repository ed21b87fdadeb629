"""Drift tests over two sketches, with Evidently 0.7's semantics (so the flags agree).

Each function takes the reference and current sketches of one column (nulls, NaN and ±inf
already left out, as Evidently drops them) and returns a score: a distance for
``wasserstein``, ``jensenshannon`` and ``psi`` (drift when >= threshold), a p-value for
``ks``, ``chisquare`` and ``z`` (drift when below the threshold; Evidently's KS flags at
p <= threshold). All work on value counts with numpy/scipy: no per-row Python.
"""

from __future__ import annotations

import math

import numpy as np

from strata.monitoring.models import Binning, Method
from strata.monitoring.sketch import Sketch, expand, weighted_moments

KS_EXPAND_MAX = 20_000_000  # rows up to which KS runs scipy's ks_2samp on the samples


def align(ref: Sketch, cur: Sketch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The union of both sketches' values (sorted) and each side's counts over it."""
    keys = np.union1d(ref.values, cur.values)
    r = np.zeros(len(keys), dtype=np.int64)
    c = np.zeros(len(keys), dtype=np.int64)
    if len(ref.values):
        r[np.searchsorted(keys, ref.values)] = ref.counts
    if len(cur.values):
        c[np.searchsorted(keys, cur.values)] = cur.counts
    return keys, r, c


def wasserstein_norm(ref: Sketch, cur: Sketch) -> float:
    """``scipy.stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)``: the area
    between the two CDFs, over the reference's population standard deviation."""
    keys, r, c = align(ref, cur)
    if len(keys) < 2:
        return 0.0
    fr = np.cumsum(r)[:-1] / r.sum()
    fc = np.cumsum(c)[:-1] / c.sum()
    distance = float(np.sum(np.abs(fr - fc) * np.diff(keys)))
    _, std = weighted_moments(ref)
    return distance / max(std, 0.001)


def _sturges_edges(ref: Sketch, cur: Sketch) -> np.ndarray:
    """``np.histogram_bin_edges(concat(ref, cur), bins="sturges")`` from the sketches."""
    n = ref.rows + cur.rows
    lo = float(min(ref.values[0], cur.values[0]))
    hi = float(max(ref.values[-1], cur.values[-1]))
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
        return np.linspace(lo, hi, 2)
    width = (hi - lo) / (np.log2(n) + 1.0)
    bins = int(np.ceil((hi - lo) / width))
    return np.linspace(lo, hi, bins + 1, endpoint=True)


def _quantile_edges(ref: Sketch, n_bins: int) -> np.ndarray:
    """Edges at the reference's 1/n .. (n-1)/n quantiles (lower values), open at both ends."""
    cum = np.cumsum(ref.counts)
    targets = np.arange(1, n_bins) / n_bins * cum[-1]
    inner = np.unique(ref.values[np.searchsorted(cum, targets, side="left")])
    return np.concatenate([[-np.inf], inner, [np.inf]])


def binned(
    ref: Sketch, cur: Sketch, *, numeric: bool, bins: Binning = Binning.STURGES, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data`` (without filling zeros): shares per bin for a numeric
    column with more than 20 distinct reference values, per value otherwise."""
    if numeric and ref.distinct > 20:
        if bins is Binning.QUANTILE:
            edges = _quantile_edges(ref, n_bins)
            # right-closed bins so that each quantile value falls in its own bin
            r = np.bincount(
                np.searchsorted(edges, ref.values, side="left") - 1,
                weights=ref.counts,
                minlength=len(edges) - 1,
            )
            c = np.bincount(
                np.clip(np.searchsorted(edges, cur.values, side="left") - 1, 0, None),
                weights=cur.counts,
                minlength=len(edges) - 1,
            )
        else:
            edges = _sturges_edges(ref, cur)
            r, _ = np.histogram(ref.values, edges, weights=ref.counts)
            c, _ = np.histogram(cur.values, edges, weights=cur.counts)
        return np.asarray(r, dtype=np.float64) / ref.rows, np.asarray(c, np.float64) / cur.rows
    _, r_counts, c_counts = align(ref, cur)
    return r_counts / ref.rows, c_counts / cur.rows


def jensenshannon(ref: Sketch, cur: Sketch, *, numeric: bool) -> float:
    """scipy's Jensen-Shannon *distance* (natural log) between the binned shares."""
    from scipy.spatial import distance

    p, q = binned(ref, cur, numeric=numeric)
    return float(distance.jensenshannon(p, q))


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    nonzero = shares[shares != 0]
    low = float(nonzero.min()) if len(nonzero) else 1.0
    out = shares.copy()
    out[out == 0] = low / 10**6 if low <= 0.0001 else 0.0001
    return out


def psi(
    ref: Sketch, cur: Sketch, *, numeric: bool, bins: Binning = Binning.STURGES, n_bins: int = 10
) -> float:
    """Population stability index over the binned shares, empty bins filled as Evidently
    fills them (the smallest share / 10^6, or 0.0001)."""
    p, q = binned(ref, cur, numeric=numeric, bins=bins, n_bins=n_bins)
    p, q = _fill_zeroes(p), _fill_zeroes(q)
    return float(np.sum((p - q) * np.log(p / q)))


def ks(ref: Sketch, cur: Sketch) -> float:
    """Two-sided two-sample Kolmogorov-Smirnov p-value (``scipy.stats.ks_2samp``)."""
    from scipy import stats

    if ref.rows + cur.rows <= KS_EXPAND_MAX:
        return float(stats.ks_2samp(expand(ref), expand(cur)).pvalue)
    _, r, c = align(ref, cur)  # large samples: the asymptotic distribution of D
    d = float(np.max(np.abs(np.cumsum(r) / r.sum() - np.cumsum(c) / c.sum())))
    n1, n2 = ref.rows, cur.rows
    return float(stats.kstwo.sf(d, round(n1 * n2 / (n1 + n2))))


def chisquare(ref: Sketch, cur: Sketch) -> float:
    """Chi-square goodness of fit of the current counts against the reference's, scaled to
    the current's size (``scipy.stats.chisquare``)."""
    from scipy import stats

    _, r, c = align(ref, cur)
    expected = r * (cur.rows / ref.rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(c, expected).pvalue)


def z_test(ref: Sketch, cur: Sketch) -> float:
    """Two-proportion Z-test on the share of the first (sorted) value; p = 1 when both sides
    hold the same single value."""
    from scipy.stats import norm

    keys, r, c = align(ref, cur)
    if ref.distinct == 1 and cur.distinct == 1 and len(keys) == 1:
        return 1.0
    n1, n2 = ref.rows, cur.rows
    p1 = 1.0 - r[0] / n1  # Evidently codes the first value 0, the others 1
    p2 = 1.0 - c[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    denom = math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    if denom == 0:
        return 1.0
    z = (p1 - p2) / denom
    return float(2 * (1 - norm.cdf(abs(z))))


def default_method(ref: Sketch, cur: Sketch, *, numeric: bool) -> Method:
    """Evidently's ``_get_default_stattest`` for a numeric or categorical column."""
    n_values = len(np.union1d(ref.values, cur.values))
    if ref.rows <= 1000:
        if numeric and n_values > 5:
            return Method.KS
        return Method.CHISQUARE if n_values > 2 else Method.Z
    if numeric and n_values > 5:
        return Method.WASSERSTEIN
    return Method.JENSENSHANNON


def score(
    method: Method,
    ref: Sketch,
    cur: Sketch,
    *,
    numeric: bool,
    bins: Binning = Binning.STURGES,
    n_bins: int = 10,
) -> float:
    """The score of ``method`` (not ``auto``) on one column."""
    if method is Method.WASSERSTEIN:
        return wasserstein_norm(ref, cur)
    if method is Method.JENSENSHANNON:
        return jensenshannon(ref, cur, numeric=numeric)
    if method is Method.PSI:
        return psi(ref, cur, numeric=numeric, bins=bins, n_bins=n_bins)
    if method is Method.KS:
        return ks(ref, cur)
    if method is Method.CHISQUARE:
        return chisquare(ref, cur)
    if method is Method.Z:
        return z_test(ref, cur)
    raise ValueError(f"no score for {method}")
