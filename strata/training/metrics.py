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

from strata.training.models import Task, task_metrics

DEFAULT_CLASSIFICATION = ("accuracy", "f1", "roc_auc", "log_loss")
DEFAULT_REGRESSION = ("rmse", "mae", "r2")
DEFAULT_RANKING = ("ndcg_at_10", "mrr")
DEFAULT_CLUSTERING = ("silhouette", "adjusted_rand")
#: Silhouette is quadratic in rows: computed on a seeded sample of at most this many.
SILHOUETTE_SAMPLE = 5000


def default_metrics(task: Task) -> tuple[str, ...]:
    return {
        Task.CLASSIFICATION: DEFAULT_CLASSIFICATION,
        Task.REGRESSION: DEFAULT_REGRESSION,
        Task.RANKING: DEFAULT_RANKING,
        Task.CLUSTERING: DEFAULT_CLUSTERING,
    }[task]


def all_metrics(task: Task) -> tuple[str, ...]:
    return task_metrics(task)


def compute(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    labels: Sequence[Any] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """``names`` (default: all of the task's metrics) computed on these predictions
    (classification and regression; ranking and clustering: :func:`ranking_metrics`,
    :func:`clustering_metrics`)."""
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
    values = ranking_metrics(relevance, scores, groups, [f"ndcg_at_{k}", "mrr"])
    out = {"mrr": values["mrr"]} if "mrr" in values else {}
    if f"ndcg_at_{k}" in values:
        out[f"ndcg@{k}"] = values[f"ndcg_at_{k}"]
    return out


def ranking_metrics(
    relevance: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    names: Sequence[str],
) -> dict[str, float]:
    """The ranking metrics ``names`` (``ndcg_at_<k>``, ``ndcg``, ``mrr``), each averaged
    over the query ``groups``; see :func:`ranking`. The rows are grouped with one sort, not
    one scan per query."""
    from sklearn.metrics import ndcg_score

    rel = np.asarray(relevance, dtype=float)
    sc = np.asarray(scores, dtype=float)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    ks: dict[str, int | None] = {}
    for name in names:
        if name == "ndcg":
            ks[name] = None
        elif name.startswith("ndcg_at_"):
            ks[name] = int(name.removeprefix("ndcg_at_"))
    ndcgs: dict[str, list[float]] = {name: [] for name in ks}
    rrs: list[float] = []
    for idx in np.split(order, bounds) if len(order) else []:
        r, s = rel[idx], sc[idx]
        if len(r) > 1:
            for name, k in ks.items():
                ndcgs[name].append(float(ndcg_score(r[None, :], s[None, :], k=k)))
        hits = np.flatnonzero(r[np.argsort(-s, kind="stable")] > 0)
        rrs.append(1.0 / (hits[0] + 1) if len(hits) else 0.0)
    out: dict[str, float] = {}
    for name in names:
        if name == "mrr" and rrs:
            out[name] = float(np.mean(rrs))
        elif ndcgs.get(name):
            out[name] = float(np.mean(ndcgs[name]))
    return out


def clustering_metrics(
    X: Any,
    labels: Sequence[Any] | np.ndarray,
    true_labels: Sequence[Any] | np.ndarray | None,
    names: Sequence[str],
    seed: int = 42,
) -> dict[str, float]:
    """The clustering metrics ``names`` (``silhouette`` on a seeded sample of at most
    :data:`SILHOUETTE_SAMPLE` rows, ``adjusted_rand`` when ``true_labels`` are given)."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    lab = np.asarray(labels)
    out: dict[str, float] = {}
    if "silhouette" in names and 2 <= len(np.unique(lab)) < len(lab):
        size = min(len(lab), SILHOUETTE_SAMPLE)
        out["silhouette"] = float(
            silhouette_score(np.asarray(X, dtype=float), lab, sample_size=size, random_state=seed)
        )
    if "adjusted_rand" in names and true_labels is not None:
        out["adjusted_rand"] = float(adjusted_rand_score(np.asarray(true_labels), lab))
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
