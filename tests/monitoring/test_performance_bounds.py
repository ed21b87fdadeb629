"""Performance intervals stay bounded in memory whatever the number of classes: the
confusion-matrix bootstrap holds at most BOOTSTRAP_CELLS counts."""

from __future__ import annotations

import tracemalloc

import numpy as np

from strata.monitoring import performance


def test_many_classes_do_not_exhaust_memory() -> None:
    rng = np.random.default_rng(3)
    k = 1000
    classes = [f"c{i:04d}" for i in range(k)]
    y = np.asarray(classes, dtype=object)[rng.integers(0, k, 20_000)]
    pred = np.where(rng.random(20_000) < 0.7, y, np.asarray(classes, dtype=object)[0])
    tracemalloc.start()
    try:
        out = performance.classification(y, pred, None, classes, None, 0.95)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300 * 1024 * 1024  # unbounded, 1,000 draws of 1000x1000 counts: 8 GB
    assert 0.6 < out["accuracy"].value < 0.8
    assert out["f1"].low is None  # too many classes for a bootstrap within the bound


def test_few_classes_keep_their_bootstrap_intervals() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 5000).astype(str).astype(object)
    pred = np.where(rng.random(5000) < 0.8, y, "0").astype(object)
    out = performance.classification(y, pred, None, ["0", "1"], "1", 0.95)
    f1 = out["f1"]
    assert f1.low is not None and f1.high is not None and f1.low < f1.value < f1.high
