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


def ranking(
    relevance: Sequence[float],
    scores: Sequence[float],
    groups: Sequence[Any],
    k: int = 10,
) -> dict[str, float]:
    """``ndcg@k`` and ``mrr`` averaged over query ``groups`` (one ranking per group, items
    ordered by descending ``scores``). NDCG uses scikit-learn's gains (the relevance as is);
    MRR is 1 / the rank of the first item with relevance > 0 (0 when there is none). Groups
    of one item are skipped for NDCG (undefined), kept for MRR."""
    from sklearn.metrics import ndcg_score

    rel = np.asarray(relevance, dtype=float)
    sc = np.asarray(scores, dtype=float)
    grp = np.asarray(groups)
    ndcgs: list[float] = []
    rrs: list[float] = []
    for g in np.unique(grp):
        mask = grp == g
        r, s = rel[mask], sc[mask]
        if len(r) > 1:
            ndcgs.append(float(ndcg_score(r[None, :], s[None, :], k=k)))
        order = np.argsort(-s, kind="stable")
        hits = np.flatnonzero(r[order] > 0)
        rrs.append(1.0 / (hits[0] + 1) if len(hits) else 0.0)
    out = {"mrr": float(np.mean(rrs))} if rrs else {}
    if ndcgs:
        out[f"ndcg@{k}"] = float(np.mean(ndcgs))
    return out


def clustering(
    X: Any, labels: Sequence[Any], true_labels: Sequence[Any] | None = None
) -> dict[str, float]:
    """``silhouette`` (needs 2 ≤ clusters < rows) and, with ``true_labels``,
    ``adjusted_rand`` (scikit-learn's definitions)."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    lab = np.asarray(labels)
    out: dict[str, float] = {}
    n = len(np.unique(lab))
    if 2 <= n < len(lab):
        out["silhouette"] = float(silhouette_score(np.asarray(X, dtype=float), lab))
    if true_labels is not None:
        out["adjusted_rand"] = float(adjusted_rand_score(np.asarray(true_labels), lab))
    return out
