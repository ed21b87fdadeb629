"""Evaluation plots (PNG, matplotlib's Agg canvas: no display, no global pyplot state) and
the self-contained HTML report (plots inlined as data URIs, every text escaped)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from strata.training.models import EvaluationReport


def _figure(width: float = 5.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Any, out: Path, name: str, plots: list[str]) -> None:
    fig.savefig(out / name, format="png")
    plots.append(name)


def confusion_plot(matrix: list[list[int]], labels: list[Any], out: Path, plots: list[str]) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    arr = np.asarray(matrix)
    ax.imshow(arr, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(list(ticks), [str(v) for v in labels])
    ax.set_yticks(list(ticks), [str(v) for v in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            ax.text(j, i, str(arr[i, j]), ha="center", va="center")
    ax.set_title("Confusion matrix")
    _save(fig, out, "confusion_matrix.png", plots)


def curve_plots(y_bin: np.ndarray, p: np.ndarray, out: Path, plots: list[str]) -> None:
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y_bin, p)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    _save(fig, out, "roc_curve.png", plots)
    precision, recall, _ = precision_recall_curve(y_bin, p)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(recall, precision)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curve")
    _save(fig, out, "pr_curve.png", plots)


def calibration_plot(calibration: dict[str, list[float]], out: Path, plots: list[str]) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(calibration["prob_pred"], calibration["prob_true"], marker="o")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("Calibration")
    _save(fig, out, "calibration.png", plots)


def residual_plot(pred: np.ndarray, resid: np.ndarray, out: Path, plots: list[str]) -> None:
    fig = _figure(8, 3.5)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.scatter(pred, resid, s=4, alpha=0.4)
    ax1.axhline(0, color="grey", linestyle="--")
    ax1.set_xlabel("predicted")
    ax1.set_ylabel("residual")
    ax2.hist(resid, bins=50)
    ax2.set_xlabel("residual")
    fig.suptitle("Residuals")
    _save(fig, out, "residuals.png", plots)


def ndcg_plot(ndcg_by_k: dict[str, float], out: Path, plots: list[str]) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([int(k) for k in ndcg_by_k], list(ndcg_by_k.values()), marker="o")
    ax.set_xlabel("k (top items per query)")
    ax.set_ylabel("NDCG@k")
    ax.set_ylim(0, 1.02)
    ax.set_title("NDCG by cut-off")
    _save(fig, out, "ndcg_at_k.png", plots)


def cluster_plot(sizes: dict[str, int], out: Path, plots: list[str]) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    ax.bar(list(sizes), list(sizes.values()))
    ax.set_xlabel("cluster")
    ax.set_ylabel("rows")
    ax.set_title("Cluster sizes")
    _save(fig, out, "cluster_sizes.png", plots)


def importance_plot(
    importance: dict[str, float], title: str, name: str, out: Path, plots: list[str]
) -> None:
    top = list(importance.items())[:20][::-1]
    fig = _figure(6, max(2.5, 0.3 * len(top) + 1))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in top], [v for _, v in top])
    ax.set_title(title)
    _save(fig, out, name, plots)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v)) if v is not None else ""

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(report: EvaluationReport, out: Path) -> Path:
    """``report.html`` beside the plots: one file, nothing fetched from anywhere."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Evaluation report</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-"
        "collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
        "text-align:right}img{max-width:100%}</style></head><body>",
        "<h1>Evaluation report</h1>",
        _table(
            ["model", "data", "target", "task", "rows", "dropped rows"],
            [
                [
                    report.model_uri,
                    report.data,
                    report.target,
                    report.task.value,
                    report.rows,
                    report.dropped_rows,
                ]
            ],
        ),
        "<h2>Metrics</h2>",
        _table(["metric", "value"], [[k, v] for k, v in report.metrics.items()]),
    ]
    if report.confusion_matrix and report.labels is not None:
        parts.append("<h2>Confusion matrix (rows: actual)</h2>")
        parts.append(
            _table(
                ["", *[str(v) for v in report.labels]],
                [
                    [str(lab), *row]
                    for lab, row in zip(report.labels, report.confusion_matrix, strict=True)
                ],
            )
        )
    if report.threshold:
        parts.append("<h2>Threshold</h2>")
        parts.append(_table(["", "value"], [[k, v] for k, v in report.threshold.items()]))
    if report.ranking:
        parts.append("<h2>Ranking</h2>")
        parts.append(
            _table(["", "value"], [[k, v] for k, v in report.ranking.items() if k != "ndcg_by_k"])
        )
        by_k = report.ranking.get("ndcg_by_k") or {}
        parts.append(_table(["k", "NDCG@k"], [[k, v] for k, v in by_k.items()]))
    if report.clusters:
        parts.append("<h2>Clusters</h2>")
        parts.append(_table(["cluster", "rows"], [[k, v] for k, v in report.clusters.items()]))
    if report.residuals:
        parts.append("<h2>Residuals</h2>")
        parts.append(_table(["", "value"], [[k, v] for k, v in report.residuals.items()]))
    if report.shap_importance:
        parts.append(f"<h2>SHAP importance ({html.escape(report.shap_explainer or '')})</h2>")
        top = list(report.shap_importance.items())[:20]
        parts.append(_table(["feature", "mean |SHAP|"], [[k, v] for k, v in top]))
    for fair in report.fairness:
        parts.append(f"<h2>Fairness by {html.escape(fair.column)}</h2>")
        parts.append(
            _table(
                ["demographic parity difference", "equalized odds difference"],
                [[fair.demographic_parity_difference, fair.equalized_odds_difference]],
            )
        )
        cols = ["count", "selection_rate", "tpr", "fpr", "accuracy", "mae"]
        used = [c for c in cols if any(getattr(g, c) is not None for g in fair.by_group.values())]
        parts.append(
            _table(
                ["group", *used],
                [[k, *[getattr(g, c) for c in used]] for k, g in fair.by_group.items()],
            )
        )
    for name in report.plots:
        data = base64.b64encode((out / name).read_bytes()).decode()
        parts.append(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' ")
        parts.append(f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def write_json(report: EvaluationReport, out: Path) -> Path:
    path = out / "report.json"
    path.write_text(json.dumps(report.model_dump(mode="json"), indent=2), encoding="utf-8")
    return path
