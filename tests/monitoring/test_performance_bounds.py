"""Performance intervals stay bounded in memory whatever the number of classes: the
confusion-matrix bootstrap holds at most BOOTSTRAP_CELLS counts."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

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


def test_multiclass_probabilities_follow_the_given_class_order() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(6)
    order = ["dog", "bird", "cat"]  # a model's classes_ need not be sorted as text
    y = np.asarray(order, dtype=object)[rng.integers(0, 3, 2000)]
    proba = rng.dirichlet(np.ones(3), 2000)
    proba[np.arange(2000), [order.index(v) for v in y]] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    pred = np.asarray(order, dtype=object)[proba.argmax(1)]
    classes = sorted(order)
    out = performance.classification(y, pred, None, classes, None, 0.95, proba, order)
    sorted_ = proba[:, [order.index(c) for c in classes]]  # scikit-learn wants sorted columns
    assert out["log_loss"].value == pytest.approx(skm.log_loss(y, sorted_, labels=classes))
    auc = skm.roc_auc_score(y, sorted_, multi_class="ovr", labels=classes)
    assert out["roc_auc"].value == pytest.approx(auc)
    # a label the model has no class for has no probability: left out, not an error
    y2 = y.copy()
    y2[0] = "fish"
    kept = performance.classification(y2, pred, None, [*classes, "fish"], None, 0.95, proba, order)
    expected = skm.log_loss(y[1:], sorted_[1:], labels=classes)
    assert kept["log_loss"].value == pytest.approx(expected)
