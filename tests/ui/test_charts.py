"""LTTB downsampling and chart series: checked against a plain reference implementation."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from strata.tracking.models import MetricPoint
from strata.ui.charts import lttb, overlay, series


def reference_lttb(xs: list[float], ys: list[float], n: int) -> list[int]:
    """The algorithm as published (Steinarsson 2013), point by point, for comparison."""
    size = len(xs)
    if size <= n:
        return list(range(size))
    every = (size - 2) / (n - 2)
    keep = [0]
    a = 0
    for i in range(n - 2):
        start = math.floor(i * every) + 1
        end = math.floor((i + 1) * every) + 1
        nstart, nend = end, min(math.floor((i + 2) * every) + 1, size)
        if i == n - 3:
            avg_x, avg_y = xs[size - 1], ys[size - 1]
        else:
            avg_x = sum(xs[nstart:nend]) / (nend - nstart)
            avg_y = sum(ys[nstart:nend]) / (nend - nstart)
        best, best_area = start, -1.0
        for j in range(start, end):
            area = abs((xs[a] - avg_x) * (ys[j] - ys[a]) - (xs[a] - xs[j]) * (avg_y - ys[a]))
            if area > best_area:
                best, best_area = j, area
        keep.append(best)
        a = best
    keep.append(size - 1)
    return keep


@pytest.mark.parametrize(("size", "n"), [(10, 5), (1000, 100), (12_345, 999), (5000, 3)])
def test_lttb_matches_the_reference(size: int, n: int) -> None:
    rng = np.random.default_rng(size)
    x = np.arange(size, dtype=np.int64) * 3
    y = np.cumsum(rng.normal(size=size))
    xs, ys = lttb(x, y, n)
    expected = reference_lttb(x.astype(float).tolist(), y.tolist(), n)
    assert xs.tolist() == [int(x[i]) for i in expected]
    assert ys.tolist() == [float(y[i]) for i in expected]


def test_lttb_keeps_spikes_and_ends() -> None:
    y = np.zeros(100_000)
    y[31_337] = 50.0
    y[77_777] = -20.0
    x = np.arange(len(y))
    xs, _ys = lttb(x, y, 500)
    assert len(xs) == 500 and xs[0] == 0 and xs[-1] == len(y) - 1
    assert 31_337 in xs.tolist() and 77_777 in xs.tolist()


def test_lttb_short_series_pass_through() -> None:
    x, y = np.arange(5), np.arange(5.0)
    xs, ys = lttb(x, y, 10)
    assert xs.tolist() == [0, 1, 2, 3, 4] and ys.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="same length"):
        lttb(np.arange(3), np.arange(4.0), 10)


def test_lttb_100k_points_is_fast() -> None:
    x = np.arange(100_000)
    y = np.sin(x / 500.0)
    lttb(x, y, 1000)  # warm up
    start = time.perf_counter()
    lttb(x, y, 1000)
    # A generous bound (a loaded CI machine): the per-point Python version takes ~1 s.
    assert time.perf_counter() - start < 0.5


def test_series_dedups_steps_drops_non_finite_and_windows() -> None:
    points = [MetricPoint("m", float(s), 0, s) for s in range(10)]
    points.insert(3, MetricPoint("m", 99.0, 0, 2))  # step 2 logged again, later: wins
    points += [MetricPoint("m", math.nan, 0, 10), MetricPoint("m", math.inf, 0, 11)]
    data = series(points, 1000)
    assert data["x"] == list(range(10)) and data["y"][2] == 99.0
    assert data["total"] == 13 and data["non_finite"] == 2
    window = series(points, 1000, lo=3, hi=5)
    assert window["x"] == [3, 4, 5]
    assert series([], 10) == {"x": [], "y": [], "total": 0, "shown": 0, "non_finite": 0}


def test_overlay_aligns_runs_on_union_of_steps() -> None:
    out = overlay({"a": {"x": [0, 2], "y": [1.0, 3.0]}, "b": {"x": [1, 2], "y": [5.0, 6.0]}})
    assert out["x"] == [0, 1, 2]
    assert out["series"] == [
        {"name": "a", "y": [1.0, None, 3.0]},
        {"name": "b", "y": [None, 5.0, 6.0]},
    ]
