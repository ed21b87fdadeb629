"""Metric computation with scikit-learn's definitions.

Classification: binary metrics (``precision``, ``recall``, ``f1``) take the last label as the
positive class; with more than two classes they are macro averages. ``roc_auc`` is one-vs-rest
(macro) for several classes, ``pr_auc`` is average precision, ``brier`` is binary only (the
mean over classes of the one-vs-rest Brier score otherwise). Regression: ``mape`` is a
fraction (0.1 = 10 %), as scikit-learn computes it. A metric that is undefined for the data
(ROC-AUC with one class present) is left out, never reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from strata.training.models import CLASSIFICATION_METRICS, REGRESSION_METRICS, Task

DEFAULT_CLASSIFICATION = ("accuracy", "f1", "roc_auc", "log_loss")
DEFAULT_REGRESSION = ("rmse", "mae", "r2")


def default_metrics(task: Task) -> tuple[str, ...]:
    return DEFAULT_CLASSIFICATION if task is Task.CLASSIFICATION else DEFAULT_REGRESSION


def all_metrics(task: Task) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task is Task.CLASSIFICATION else REGRESSION_METRICS


def compute(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    labels: Sequence[Any] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """``names`` (default: all of the task's metrics) computed on these predictions."""
    wanted = list(names or all_metrics(task))
    fn = _classification if task is Task.CLASSIFICATION else _regression
    out: dict[str, float] = {}
    for name in wanted:
        value = fn(name, y_true, y_pred, proba, list(labels) if labels is not None else None)
        if value is not None and math.isfinite(value):
            out[name] = float(value)
    return out


def _classification(
    name: str,
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    labels: list[Any] | None,
) -> float | None:
    from sklearn import metrics as skm

    labels = labels if labels is not None else sorted(np.unique(y).tolist(), key=str)
    binary = len(labels) == 2
    pos = labels[-1]
    avg: dict[str, Any] = (
        {"average": "binary", "pos_label": pos} if binary else {"average": "macro"}
    )
    present = len(np.unique(y)) > 1
    if name == "accuracy":
        return float(skm.accuracy_score(y, pred))
    if name == "precision":
        return float(skm.precision_score(y, pred, zero_division=0, labels=labels, **avg))
    if name == "recall":
        return float(skm.recall_score(y, pred, zero_division=0, labels=labels, **avg))
    if name == "f1":
        return float(skm.f1_score(y, pred, zero_division=0, labels=labels, **avg))
    if name == "f1_macro":
        return float(skm.f1_score(y, pred, average="macro", zero_division=0, labels=labels))
    if name == "f1_weighted":
        return float(skm.f1_score(y, pred, average="weighted", zero_division=0, labels=labels))
    if proba is None or not present:
        return None
    if name == "log_loss":
        return float(skm.log_loss(y, proba, labels=labels))
    if binary:
        p = proba[:, -1]
        yb = (y == pos).astype(int)
        if name == "roc_auc":
            return float(skm.roc_auc_score(yb, p))
        if name == "pr_auc":
            return float(skm.average_precision_score(yb, p))
        if name == "brier":
            return float(skm.brier_score_loss(yb, p))
        return None
    onehot = (np.asarray(y)[:, None] == np.asarray(labels)[None, :]).astype(int)
    if name == "roc_auc":
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=labels))
    if name == "pr_auc":
        return float(skm.average_precision_score(onehot, proba, average="macro"))
    if name == "brier":
        return float(np.mean((proba - onehot) ** 2) * len(labels))
    return None


def _regression(
    name: str,
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    labels: list[Any] | None,
) -> float | None:
    from sklearn import metrics as skm

    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    if name == "mse":
        return float(skm.mean_squared_error(y, pred))
    if name == "rmse":
        return float(math.sqrt(skm.mean_squared_error(y, pred)))
    if name == "mae":
        return float(skm.mean_absolute_error(y, pred))
    if name == "r2":
        return float(skm.r2_score(y, pred)) if len(y) > 1 else None
    if name == "mape":
        return float(skm.mean_absolute_percentage_error(y, pred))
    return None
