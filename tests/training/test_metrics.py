"""Metric definitions: the positive class, multiclass averages, ranking and clustering."""

from __future__ import annotations

import numpy as np
import pytest

from strata.training import metrics as M
from strata.training.models import Task


def test_binary_metrics_take_the_last_label_as_positive() -> None:
    y = np.array(["no", "no", "yes", "yes"])
    pred = np.array(["no", "yes", "yes", "yes"])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    out = M.compute(Task.CLASSIFICATION, y, pred, proba, ["no", "yes"])
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == 1.0
    assert out["accuracy"] == 0.75 and out["roc_auc"] == 1.0
    assert out["brier"] == pytest.approx(np.mean([0.01, 0.36, 0.04, 0.09]))


def test_undefined_metrics_are_left_out_not_zero() -> None:
    y = np.array([1, 1, 1])
    out = M.compute(Task.CLASSIFICATION, y, y, np.array([[0.1, 0.9]] * 3), [0, 1])
    assert "roc_auc" not in out and out["accuracy"] == 1.0


def test_regression_metrics() -> None:
    out = M.compute(Task.REGRESSION, np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0]))
    assert out["mae"] == pytest.approx(1.0) and out["mse"] == pytest.approx(5 / 3)
    assert out["rmse"] == pytest.approx((5 / 3) ** 0.5)
    assert out["mape"] == pytest.approx((0 + 0.5 + 0.5) / 3)


def test_ranking_ndcg_and_mrr() -> None:
    # query a: the relevant item ranked 2nd; query b: ranked 1st; query c: none relevant
    rel = [0, 1, 0, 1, 0, 0, 0]
    scores = [0.9, 0.5, 0.1, 0.8, 0.3, 0.7, 0.2]
    groups = ["a", "a", "a", "b", "b", "c", "c"]
    out = M.ranking(rel, scores, groups, k=3)
    assert out["mrr"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    ndcg_a = (1 / np.log2(3)) / 1.0
    assert out["ndcg@3"] == pytest.approx((ndcg_a + 1.0 + 0.0) / 3)


def test_clustering_silhouette_and_ari() -> None:
    X = np.array([[0.0], [0.1], [10.0], [10.1]])
    out = M.clustering(X, [0, 0, 1, 1], true_labels=["x", "x", "y", "y"])
    assert out["adjusted_rand"] == 1.0 and out["silhouette"] > 0.95
    assert M.clustering(X, [0, 0, 0, 0]) == {}
