"""Chart data: metric histories downsampled on the server with LTTB, aligned for overlays.

Largest-Triangle-Three-Buckets (Steinarsson, 2013) keeps the points that carry a curve's
shape: the first and last points, and in each of ``n - 2`` equal buckets the point forming
the largest triangle with the point kept in the previous bucket and the mean of the next
bucket. The choice in a bucket depends on the previous bucket's choice, so the loop runs once
per *output* point (at most ``n``, ~1000) with numpy inside each bucket — never per input
point: 100,000 points downsample in a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from strata.tracking.models import MetricPoint

#: Points a chart receives at most per series (about one per horizontal pixel).
DEFAULT_POINTS = 1000


def lttb(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Downsample the series ``(x, y)`` (x ascending, finite values) to at most ``n`` points.

    Returns views of the input when it already has ``n`` points or fewer. ``n`` below 3 is
    raised to 3 (first, one middle, last).
    """
    size = len(x)
    if size != len(y):
        raise ValueError("x and y must have the same length")
    n = max(int(n), 3)
    if size <= n:
        return x, y
    xf = x.astype(np.float64, copy=False)
    yf = y.astype(np.float64, copy=False)
    # Bucket i (1..n-2) covers [edges[i-1], edges[i]) of the points between first and last.
    edges = np.floor(np.linspace(1, size - 1, n - 1)).astype(np.int64)
    # Mean of every bucket at once (prefix sums), used as the "next" vertex of each triangle.
    cx = np.concatenate(([0.0], np.cumsum(xf)))
    cy = np.concatenate(([0.0], np.cumsum(yf)))
    starts = edges[:-1]
    ends = np.maximum(edges[1:], starts + 1)
    counts = ends - starts
    mean_x = (cx[ends] - cx[starts]) / counts
    mean_y = (cy[ends] - cy[starts]) / counts
    # The bucket after the last one is the last point itself.
    next_x = np.append(mean_x[1:], xf[-1])
    next_y = np.append(mean_y[1:], yf[-1])
    keep = np.empty(n, dtype=np.int64)
    keep[0] = 0
    keep[-1] = size - 1
    prev = 0
    for i in range(n - 2):
        lo, hi = starts[i], ends[i]
        bx = xf[lo:hi]
        by = yf[lo:hi]
        area = np.abs(
            (xf[prev] - next_x[i]) * (by - yf[prev]) - (xf[prev] - bx) * (next_y[i] - yf[prev])
        )
        prev = int(lo + np.argmax(area))
        keep[i + 1] = prev
    return x[keep], y[keep]


def series(
    points: Sequence[MetricPoint],
    n: int = DEFAULT_POINTS,
    *,
    lo: float | None = None,
    hi: float | None = None,
) -> dict[str, Any]:
    """A metric history as chart data: ``{"x": steps, "y": values, "total", "shown",
    "non_finite"}``, downsampled to ``n`` points with LTTB.

    When several points share a step (logged twice), the last logged one is kept. NaN and
    ±inf cannot be drawn: they are left out and counted in ``non_finite``. ``lo``/``hi``
    restrict the steps (a zoomed chart asks for its range at full resolution).
    """
    if not points:
        return {"x": [], "y": [], "total": 0, "shown": 0, "non_finite": 0}
    # map(itemgetter) runs in C: ~2x faster than a generator over 100k named tuples.
    steps = np.fromiter(map(itemgetter(3), points), dtype=np.int64, count=len(points))
    values = np.fromiter(map(itemgetter(1), points), dtype=np.float64, count=len(points))
    total = len(steps)
    # History is ordered by step then timestamp: the last point of each step wins.
    last = np.ones(total, dtype=bool)
    last[:-1] = steps[1:] != steps[:-1]
    steps, values = steps[last], values[last]
    finite = np.isfinite(values)
    non_finite = int((~finite).sum())
    steps, values = steps[finite], values[finite]
    if lo is not None or hi is not None:
        window = np.ones(len(steps), dtype=bool)
        if lo is not None and math.isfinite(lo):
            window &= steps >= lo
        if hi is not None and math.isfinite(hi):
            window &= steps <= hi
        steps, values = steps[window], values[window]
    xs, ys = lttb(steps, values, n)
    return {
        "x": xs.tolist(),
        "y": ys.tolist(),
        "total": total,
        "shown": len(xs),
        "non_finite": non_finite,
    }


def overlay(per_run: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Align several runs' series on the union of their steps for one overlaid chart:
    ``{"x": steps, "series": [{"name", "y": [value or None per step]}]}``."""
    if not per_run:
        return {"x": [], "series": []}
    all_x = np.unique(
        np.concatenate([np.asarray(s["x"], dtype=np.int64) for s in per_run.values()])
    )
    out = []
    for name, data in per_run.items():
        column = np.full(len(all_x), np.nan)
        if data["x"]:
            idx = np.searchsorted(all_x, np.asarray(data["x"], dtype=np.int64))
            column[idx] = np.asarray(data["y"], dtype=np.float64)
        out.append({"name": name, "y": [None if math.isnan(v) else v for v in column.tolist()]})
    return {"x": all_x.tolist(), "series": out}
