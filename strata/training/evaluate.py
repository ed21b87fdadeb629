"""``strata.evaluate``: honest evaluation of a model on a named dataset version.

Metrics (see :mod:`strata.training.metrics`), confusion matrix, calibration curve and the
F1-best threshold (classification), residuals (regression), PNG plots, SHAP (see
:mod:`strata.training.explain`) and fairlearn MetricFrames per sensitive column, written as
``report.json`` + ``report.html`` + plots + ``shap_values.csv`` into one directory, and
stored under ``evaluation/`` of a run when one is given or active.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from strata.core.errors import InvalidInput
from strata.training import metrics as M
from strata.training import report as R
from strata.training.models import (
    CLASSIFICATION_METRICS,
    CLUSTERING_METRICS,
    RANKING_METRICS,
    REGRESSION_METRICS,
    EvaluationReport,
    FairnessReport,
    GroupMetrics,
    TargetConfig,
    Task,
)

if TYPE_CHECKING:
    import pandas as pd

    from strata.data.service import DataService
    from strata.tracking.service import TrackingService

#: More groups than this in a sensitive column: the rarest are pooled as ``__other__``.
MAX_GROUPS = 50


class Services(Protocol):
    """What a job needs from a :class:`strata.Client`: its tracking and data services."""

    @property
    def tracking(self) -> TrackingService: ...

    @property
    def data(self) -> DataService: ...


def default_services() -> Services:
    from strata.tracking.fluent_services import default_client

    return default_client()


def _groups(values: pd.Series) -> pd.Series:
    s = values.astype(object).where(values.notna(), "__missing__").astype(str)
    counts = s.value_counts()
    if len(counts) > MAX_GROUPS:
        keep = set(counts.index[: MAX_GROUPS - 1])
        s = s.where(s.isin(keep), "__other__")
    return s


def fairness(
    column: str, groups: pd.Series, y: np.ndarray, pred: np.ndarray, task: Task, pos: Any
) -> FairnessReport:
    """fairlearn's MetricFrame over the groups of one sensitive column."""
    from fairlearn import metrics as fm

    g = _groups(groups).to_numpy()
    if task is Task.REGRESSION:
        from sklearn.metrics import mean_absolute_error

        frame = fm.MetricFrame(
            metrics={"count": fm.count, "mae": mean_absolute_error},
            y_true=np.asarray(y, dtype=float),
            y_pred=np.asarray(pred, dtype=float),
            sensitive_features=g,
        )
        by = {
            str(k): GroupMetrics(count=int(row["count"]), mae=float(row["mae"]))
            for k, row in frame.by_group.iterrows()
        }
        return FairnessReport(column=column, by_group=by)
    yb = (np.asarray(y) == pos).astype(int)
    pb = (np.asarray(pred) == pos).astype(int)
    from sklearn.metrics import accuracy_score

    frame = fm.MetricFrame(
        metrics={
            "count": fm.count,
            "selection_rate": fm.selection_rate,
            "tpr": fm.true_positive_rate,
            "fpr": fm.false_positive_rate,
            "accuracy": accuracy_score,
        },
        y_true=yb,
        y_pred=pb,
        sensitive_features=g,
    )

    def num(v: Any) -> float | None:
        f = float(v)
        return f if np.isfinite(f) else None

    by = {
        str(k): GroupMetrics(
            count=int(row["count"]),
            selection_rate=num(row["selection_rate"]),
            tpr=num(row["tpr"]),
            fpr=num(row["fpr"]),
            accuracy=num(row["accuracy"]),
        )
        for k, row in frame.by_group.iterrows()
    }
    return FairnessReport(
        column=column,
        by_group=by,
        demographic_parity_difference=num(
            fm.demographic_parity_difference(yb, pb, sensitive_features=g)
        ),
        equalized_odds_difference=num(fm.equalized_odds_difference(yb, pb, sensitive_features=g)),
    )


def _threshold(y_bin: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_bin, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    i = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    return {
        "threshold": float(thresholds[i]) if len(thresholds) else 0.5,
        "f1": float(f1[i]),
        "precision": float(precision[i]),
        "recall": float(recall[i]),
    }


def build_report(
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    task: Task,
    labels: list[Any] | None,
    out: Path,
    model_uri: str,
    data: str,
    target: str,
    sensitive: pd.DataFrame | None = None,
    names: Sequence[str] | None = None,
    shap_model: Any = None,
    shap_sample: int = 200,
    seed: int = 42,
    dropped_rows: int = 0,
    groups: np.ndarray | None = None,
    has_target: bool = True,
    transform: Any = None,
) -> EvaluationReport:
    """Evaluate ``model`` (anything with predict/predict_proba: a Pipeline or a loaded
    Strata Model) on ``X``/``y`` and write the report's files into ``out``.

    Ranking needs ``groups`` (each row's query); clustering measures silhouette in the
    space ``transform`` maps ``X`` to (a Pipeline's preprocessing; default ``X`` as numbers)
    and compares with ``y`` only when ``has_target``."""
    out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    files: list[str] = []
    pred = np.asarray(model.predict(X))
    proba = None
    extra: dict[str, Any] = {}
    if task is Task.RANKING:
        if groups is None:
            raise InvalidInput(
                "A ranking evaluation needs the query column (group)", details={"field": "group"}
            )
        ks = [k for k in (1, 3, 5, 10, 20) if k <= max(1, int(np.bincount(groups).max()))]
        metric_values = M.ranking_metrics(y, pred, groups, names or RANKING_METRICS)
        by_k = M.ranking_metrics(y, pred, groups, [f"ndcg_at_{k}" for k in ks])
        queries, sizes = np.unique(groups, return_counts=True)
        extra["ranking"] = {
            "queries": len(queries),
            "mean_items_per_query": float(sizes.mean()) if len(sizes) else 0.0,
            "ndcg_by_k": {name.removeprefix("ndcg_at_"): v for name, v in by_k.items()},
        }
        if by_k:
            R.ndcg_plot(extra["ranking"]["ndcg_by_k"], out, plots)
    elif task is Task.CLUSTERING:
        inputs = transform(X) if transform is not None else X.to_numpy(dtype=float)
        truth = y if has_target else None
        metric_values = M.clustering_metrics(inputs, pred, truth, names or CLUSTERING_METRICS, seed)
        values, counts = np.unique(pred, return_counts=True)
        extra["clusters"] = {str(v): int(c) for v, c in zip(values, counts, strict=True)}
        R.cluster_plot(extra["clusters"], out, plots)
    elif task is Task.CLASSIFICATION:
        proba = np.asarray(model.predict_proba(X)) if hasattr(model, "predict_proba") else None
        labels = labels if labels is not None else sorted(np.unique(y).tolist(), key=str)
        metric_values = M.compute(task, y, pred, proba, labels, names or CLASSIFICATION_METRICS)
        from sklearn.metrics import confusion_matrix

        cm = confusion_matrix(y, pred, labels=labels).tolist()
        extra["confusion_matrix"] = cm
        R.confusion_plot(cm, labels, out, plots)
        if proba is not None and len(labels) == 2 and len(np.unique(y)) == 2:
            from sklearn.calibration import calibration_curve

            y_bin = (y == labels[-1]).astype(int)
            p = proba[:, -1]
            prob_true, prob_pred = calibration_curve(y_bin, p, n_bins=10, strategy="quantile")
            extra["calibration"] = {
                "prob_true": [float(v) for v in prob_true],
                "prob_pred": [float(v) for v in prob_pred],
            }
            extra["threshold"] = _threshold(y_bin, p)
            R.calibration_plot(extra["calibration"], out, plots)
            R.curve_plots(y_bin, p, out, plots)
    else:
        metric_values = M.compute(task, y, pred, None, None, names or REGRESSION_METRICS)
        resid = np.asarray(y, dtype=float) - pred.astype(float)
        q = np.percentile(resid, [5, 50, 95]) if len(resid) else [np.nan] * 3
        extra["residuals"] = {
            "mean": float(resid.mean()),
            "std": float(resid.std()),
            "p05": float(q[0]),
            "p50": float(q[1]),
            "p95": float(q[2]),
        }
        R.residual_plot(pred.astype(float), resid, out, plots)
    fair = []
    if sensitive is not None:
        pos = labels[-1] if labels else None
        for col in sensitive.columns:
            fair.append(fairness(str(col), sensitive[col], y, pred, task, pos))
    shap_importance = None
    explainer = None
    from strata.training.explain import explain

    explained = explain(
        shap_model if shap_model is not None else model,
        X,
        sample=shap_sample if task is not Task.CLUSTERING else 0,  # no score to attribute
        seed=seed,
        classifier=task is Task.CLASSIFICATION,
    )
    if explained is not None:
        import pandas as pd

        explainer, feature_names, values, shap_importance = explained
        pd.DataFrame(values, columns=feature_names).to_csv(out / "shap_values.csv", index=False)
        files.append("shap_values.csv")
        R.importance_plot(shap_importance, "SHAP: mean |value|", "shap_importance.png", out, plots)
    report = EvaluationReport(
        model_uri=model_uri,
        data=data,
        target=target,
        task=task,
        rows=len(X),
        dropped_rows=dropped_rows,
        labels=labels,
        metrics=metric_values,
        shap_importance=shap_importance,
        shap_explainer=explainer,
        fairness=fair,
        plots=plots,
        files=[*files, "report.json", "report.html"],
        **extra,
    )
    R.write_json(report, out)
    R.write_html(report, out)
    return report


def _frame_for(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns from ``frame``, text columns as Python objects."""
    import pandas as pd

    signature = model.signature
    if signature is None or not getattr(signature, "inputs", None):
        return frame
    cols = [c.name for c in signature.inputs]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"The data has no column {missing[0]!r}, an input of the model; available "
            f"columns: {', '.join(map(str, frame.columns))}",
            details={"field": "data", "column": missing[0], "columns": list(frame.columns)},
        )
    X = frame[cols].copy()
    for c in signature.inputs:
        if c.dtype == "str" or not pd.api.types.is_numeric_dtype(X[c.name]):
            X[c.name] = X[c.name].astype(object).where(X[c.name].notna(), None)
        elif pd.api.types.is_bool_dtype(X[c.name]):
            X[c.name] = X[c.name].astype("float64")
    return X


def evaluate(
    model_uri: str,
    data: str,
    target: str | TargetConfig | dict[str, Any] | None,
    sensitive: Sequence[str] = (),
    *,
    metrics: Sequence[str] | None = None,
    client: Services | None = None,
    output: str | Path | None = None,
    run_id: str | None = None,
    shap_sample: int = 200,
    seed: int = 42,
    trusted: bool = False,
    task: Task | str | None = None,
    group: str | None = None,
) -> EvaluationReport:
    """Evaluate the model at ``model_uri`` (a path, ``runs:/RUN_ID/PATH`` or a registered
    scheme such as ``models:/``) on the dataset version ``data`` (``NAME@VERSION``, ...).

    ``target`` is a column name or ``{name, sql}`` (a sandboxed SQL expression, as in a
    training config); rows whose target is NULL are dropped and counted. The task follows the
    model (classification when it has labels, else regression) unless ``task`` says
    ``ranking`` (then ``group`` names the query column; given alone it implies ranking) or
    ``clustering`` (``target`` optional: the true groups to compare with). ``sensitive``
    columns get fairness tables (classification and regression). The files go to
    ``output`` (kept) or a temporary directory; with ``run_id`` (or an active run) they are
    stored under the run's ``evaluation/``. Raises InvalidInput naming an unknown column or
    metric, NotFound for an unknown dataset, version or run.
    """
    import strata.models as sm
    from strata.training.dataset import _columns_error, load_table, target_and_frame
    from strata.training.models import check_metric

    services = client or default_services()
    try:
        chosen = Task(task) if task is not None else (Task.RANKING if group else None)
    except ValueError:
        raise InvalidInput(
            f"Unknown task {task!r}; expected one of {', '.join(t.value for t in Task)}",
            details={"field": "task"},
        ) from None
    if chosen is Task.RANKING and not group:
        raise InvalidInput(
            "A ranking evaluation needs group: the query column", details={"field": "group"}
        )
    if chosen in (Task.RANKING, Task.CLUSTERING) and sensitive:
        raise InvalidInput(
            f"sensitive (fairness) applies to classification and regression, not {chosen.value}",
            details={"field": "sensitive"},
        )
    if target is None and chosen is not Task.CLUSTERING:
        raise InvalidInput(
            "target is required (only a clustering evaluation runs without one)",
            details={"field": "target"},
        )
    tcfg = (
        None
        if target is None
        else target
        if isinstance(target, TargetConfig)
        else TargetConfig(name=target)
        if isinstance(target, str)
        else TargetConfig.model_validate(target)
    )
    for name in metrics or ():
        try:
            check_metric(name, chosen)
        except ValueError as exc:
            raise InvalidInput(
                str(exc)[:1].upper() + str(exc)[1:], details={"field": "metrics"}
            ) from None
    model = sm.load(model_uri, tracking=services.tracking, trusted=trusted)
    table, ref = load_table(services.data, data, sample=None, seed=seed)
    for col in [*sensitive, *([group] if group else [])]:
        if col not in table.column_names:
            raise _columns_error(
                "group" if col == group else "sensitive", col, list(table.column_names)
            )
    import pandas as pd

    dropped = 0
    if tcfg is not None:
        frame, y_raw, _ = target_and_frame(table, tcfg)
        keep = y_raw.notna().to_numpy()
        dropped = int((~keep).sum())
        frame = frame.loc[keep].reset_index(drop=True)
        y_raw = y_raw.loc[keep].reset_index(drop=True).infer_objects()
    else:
        frame = table.to_pandas()
        y_raw = pd.Series(np.zeros(len(frame), dtype=np.int64))
    labels = list(model.labels) if model.labels is not None else None
    task_ = chosen or (Task.CLASSIFICATION if labels is not None else Task.REGRESSION)
    if task_ in (Task.RANKING, Task.CLUSTERING):
        labels = None
    if pd.api.types.is_bool_dtype(y_raw):
        y_raw = y_raw.astype("int64")
    y = (
        y_raw.astype(float).to_numpy()
        if task_ in (Task.REGRESSION, Task.RANKING)
        else y_raw.to_numpy()
    )
    groups = None
    if task_ is Task.RANKING:
        assert group is not None
        groups = np.asarray(pd.factorize(frame[group].astype(str))[0], dtype=np.int64)
    X = _frame_for(model, frame)
    shap_model: Any = getattr(model.predictor, "estimator", None)
    steps = getattr(shap_model, "steps", None)
    transform = shap_model[:-1].transform if steps and len(steps) > 1 else None
    own = output is None
    out = Path(output) if output is not None else Path(tempfile.mkdtemp(prefix="strata-eval-"))
    try:
        report = build_report(
            model,
            X,
            y,
            task=task_,
            labels=labels,
            out=out,
            model_uri=str(model_uri),
            data=ref,
            target=tcfg.name if tcfg is not None else "",
            sensitive=frame[list(sensitive)] if sensitive else None,
            names=metrics,
            shap_model=shap_model,
            shap_sample=shap_sample,
            seed=seed,
            dropped_rows=dropped,
            groups=groups,
            has_target=tcfg is not None,
            transform=transform,
        )
        target_run = run_id
        if target_run is None:
            from strata.tracking.fluent import active_run

            active = active_run()
            target_run = active.run_id if active is not None else None
        if target_run is not None:
            services.tracking.log_artifacts(target_run, out, "evaluation")
    finally:
        if own:
            shutil.rmtree(out, ignore_errors=True)
    return report
