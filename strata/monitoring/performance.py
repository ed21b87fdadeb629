"""Performance per window, version and segment, from labels joined to the prediction log in
DuckDB, with confidence intervals; CBPE-style estimates from the model's probabilities.

Labels join by (request_id, row), or by entity key to the entity's latest prediction at or
before the label's time (DuckDB ASOF JOIN); the newest label of a prediction wins. Metrics:

- classification: accuracy (Wilson interval), precision, recall and F1 (the positive class
  for two classes, macro averages otherwise; intervals from a multinomial bootstrap of the
  confusion matrix), ROC-AUC (Hanley-McNeil) and log loss (normal) with probabilities —
  for more than two classes, log loss over the whole probability vector (rows normalized,
  as scikit-learn) and ROC-AUC one-vs-rest, the macro average over the classes that have
  both positives and negatives in the window (the interval combines the classes'
  Hanley-McNeil variances as independent: an approximation);
- regression: MAE, RMSE (delta method on the MSE), MAPE (rows with a zero label left out),
  normal intervals.

The positive class is ``positive``, else ``1``/``true`` when present, else the largest label;
its probability is the last element of ``outputs.proba`` (classes in sorted order, as
scikit-learn's ``classes_``). With more classes, the order of ``proba``'s elements is the
registered version's signature ``labels`` (``class_order``), else the sorted labels and
predictions when there are as many as the vector's length; otherwise the probability
metrics are left out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from strata.monitoring import predlog
from strata.monitoring.models import (
    Metric,
    PerformanceOptions,
    PerformanceReport,
    PerformanceWindow,
    SeriesPoint,
)
from strata.monitoring.refs import LogRef, sql_text

BOOTSTRAP = 1000
#: Most confusion-matrix cells the bootstrap holds at once (draws x classes²).
BOOTSTRAP_CELLS = 5_000_000
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def interval(window: str) -> str:
    n, unit = int(window[:-1]), window[-1]
    return f"INTERVAL '{n} {_UNITS[unit]}'"


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def wilson(k: int, n: int, z: float) -> Metric:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Metric(value=p, low=max(0.0, centre - half), high=min(1.0, centre + half))


def _mean_ci(values: np.ndarray, z: float) -> Metric:
    m = float(values.mean())
    if len(values) < 2:
        return Metric(value=m)
    half = z * float(values.std(ddof=1)) / math.sqrt(len(values))
    return Metric(value=m, low=m - half, high=m + half)


def _prf(cm: np.ndarray, pos: int | None) -> np.ndarray:
    """(precision, recall, f1) from confusion matrices ``cm[..., true, pred]``: the positive
    class ``pos`` or macro averages."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    pred = cm.sum(axis=-2)
    true = cm.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if pos is not None:
        return np.stack([precision[..., pos], recall[..., pos], f1[..., pos]], axis=-1)
    return np.stack([precision.mean(-1), recall.mean(-1), f1.mean(-1)], axis=-1)


def classification(
    y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[str],
    positive: str | None, confidence: float,
    probas: np.ndarray | None = None, proba_classes: list[str] | None = None,
) -> dict[str, Metric]:  # fmt: skip
    """Metrics of one window. ``proba`` is the positive class's probability (two classes);
    ``probas`` the whole vectors (rows x classes, in ``proba_classes``' order)."""
    z = _z(confidence)
    n = len(y)
    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    ordered = np.asarray(classes, dtype=object)
    yi = np.searchsorted(ordered, y)
    pi = np.searchsorted(ordered, pred)
    out = {"accuracy": wilson(int((yi == pi).sum()), n, z)}
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (yi, pi), 1)
    pos = index.get(positive) if (k == 2 and positive is not None) else None
    point = _prf(cm, pos)
    # The bootstrap holds draws x k x k counts: bounded (~40 MB) whatever the number of
    # classes; with too many classes for even 100 draws, the point values come alone.
    size = min(BOOTSTRAP, BOOTSTRAP_CELLS // (k * k))
    if size >= 100:
        rng = np.random.default_rng(0)
        draws = rng.multinomial(n, (cm / n).ravel(), size=size).reshape(size, k, k)
        boot = _prf(draws, pos)
        alpha = (1 - confidence) / 2
        lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
        for j, name in enumerate(("precision", "recall", "f1")):
            out[name] = Metric(value=float(point[j]), low=float(lo[j]), high=float(hi[j]))
    else:
        for j, name in enumerate(("precision", "recall", "f1")):
            out[name] = Metric(value=float(point[j]))
    if proba is not None and pos is not None:
        truth = (yi == pos).astype(np.float64)
        p = np.clip(proba.astype(np.float64), 1e-15, 1 - 1e-15)
        out["log_loss"] = _mean_ci(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)), z)
        found = _auc(proba, truth == 1)
        if found is not None:
            auc, var = found
            half = z * math.sqrt(var)
            out["roc_auc"] = Metric(value=auc, low=max(0.0, auc - half), high=min(1.0, auc + half))
    elif probas is not None and proba_classes is not None and pos is None:
        out |= _multiclass(y, probas, proba_classes, z)
    return out


def _auc(score: np.ndarray, truth: np.ndarray) -> tuple[float, float] | None:
    """Binary ROC-AUC of ``score`` for ``truth`` (Mann-Whitney) and its Hanley-McNeil
    variance; None without both classes."""
    from scipy.stats import rankdata

    n1 = int(truth.sum())
    n0 = len(truth) - n1
    if not n1 or not n0:
        return None
    ranks = rankdata(score)
    auc = float((ranks[truth].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)
    return auc, max(var, 0.0)


def _multiclass(y: np.ndarray, probas: np.ndarray, order: list[str], z: float) -> dict[str, Metric]:
    """Log loss and one-vs-rest macro ROC-AUC from whole probability vectors."""
    out: dict[str, Metric] = {}
    names = np.asarray(order, dtype=object)
    by_name = np.argsort(names)
    at = np.minimum(np.searchsorted(names[by_name], y), len(names) - 1)
    yi = by_name[at]
    # a label the model has no class for has no probability; nor has a row logged without one
    rows = (names[yi] == y) & ~np.isnan(probas).any(axis=1)
    if not rows.any():
        return out
    p, yi = probas[rows], yi[rows]
    p = p / p.sum(axis=1, keepdims=True)
    picked = np.clip(p[np.arange(len(yi)), yi], 1e-15, 1 - 1e-15)
    out["log_loss"] = _mean_ci(-np.log(picked), z)
    aucs = [a for c in range(p.shape[1]) if (a := _auc(p[:, c], yi == c)) is not None]
    if aucs:
        auc = float(np.mean([a for a, _ in aucs]))
        half = z * math.sqrt(sum(v for _, v in aucs)) / len(aucs)
        out["roc_auc"] = Metric(value=auc, low=max(0.0, auc - half), high=min(1.0, auc + half))
    return out


def regression(y: np.ndarray, pred: np.ndarray, confidence: float) -> dict[str, Metric]:
    z = _z(confidence)
    err = pred - y
    out = {"mae": _mean_ci(np.abs(err), z)}
    mse = _mean_ci(err**2, z)
    out["rmse"] = Metric(
        value=math.sqrt(mse.value),
        low=math.sqrt(max(mse.low, 0.0)) if mse.low is not None else None,
        high=math.sqrt(mse.high) if mse.high is not None else None,
    )
    nz = y != 0
    if nz.any():
        out["mape"] = _mean_ci(np.abs(err[nz] / y[nz]), z)
    return out


def _positive(classes: list[str], positive: str | None) -> str | None:
    if len(classes) != 2:
        return None
    if positive is not None:
        return positive
    for candidate in ("1", "true", "True", "yes"):
        if candidate in classes:
            return candidate
    return classes[-1]


def compute(
    con: Any,
    store: Any,
    labels: Any,
    opts: PerformanceOptions,
    version: str | None,
    class_order: Callable[[str], list[str] | None] | None = None,
) -> PerformanceReport:
    """The report (see module doc); ``labels`` the Arrow table of feedback.labels_table;
    ``class_order(version)`` the classes of a version's probability vector, when known."""
    report = PerformanceReport(
        model=opts.model, task="unknown", window=opts.window, confidence=opts.confidence
    )
    if not predlog.has_log(store, opts.model):
        report.status = "no data"
        return report
    ref = LogRef(opts.model, None, opts.since, opts.until)
    scan = predlog.scan(store, opts.model)
    fields = {r[0] for r in con.execute(f"DESCRIBE SELECT inputs.* FROM {scan}").fetchall()}
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT outputs.* FROM {scan}").fetchall()}
    has_proba = "proba" in types
    pred_type = str(types.get("prediction", "DOUBLE")).upper()
    origin = opts.since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    seg = "NULL"
    if opts.segment is not None:
        if opts.segment not in fields:
            from strata.core.errors import InvalidInput

            raise InvalidInput(
                f"segment {opts.segment!r} is not an input of {opts.model}",
                details={"field": "segment", "inputs": sorted(fields)},
            )
        seg = f"CAST(inputs.{_ident(opts.segment)} AS VARCHAR)"
    ver = "version" if opts.by_version else "NULL"
    proba = "list_extract(outputs.proba, -1)" if has_proba else "NULL"
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW pl AS SELECT request_id, row, ts, entity_key,
            time_bucket({interval(opts.window)}, ts, TIMESTAMPTZ {sql_text(origin.isoformat())})
              AS win, {ver} AS ver, {seg} AS seg,
            CAST(outputs.prediction AS VARCHAR) AS pred_s,
            TRY_CAST(outputs.prediction AS DOUBLE) AS pred_d, {proba} AS p1,
            {"outputs.proba" if has_proba else "NULL"} AS proba, version AS v
            FROM {scan} WHERE {predlog.where(ref, version)}"""
    )
    con.register("lb_all", labels)
    con.execute(
        """CREATE OR REPLACE TEMP VIEW lb AS SELECT * FROM lb_all
           QUALIFY row_number() OVER (PARTITION BY request_id, row, entity_key, ts
                                      ORDER BY id DESC) = 1"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE pg AS SELECT *,
             row_number() OVER (ORDER BY win, ver, seg) - 1 AS gid
           FROM (SELECT win, ver, seg, count(*) AS n FROM pl GROUP BY win, ver, seg)"""
    )
    table = con.sql(
        """SELECT g.gid, j.pred_s, j.pred_d, j.p1, j.v, j.proba,
             json_extract_string(j.label, '$') AS y,
             TRY_CAST(json_extract_string(j.label, '$') AS DOUBLE) AS y_d FROM (
             SELECT pl.*, lb.label FROM pl JOIN lb USING (request_id, row)
             UNION ALL
             SELECT pl.*, f.label FROM (SELECT * FROM lb WHERE request_id IS NULL) f
               ASOF JOIN pl ON f.entity_key = pl.entity_key AND f.ts >= pl.ts) j
           JOIN pg g ON g.win = j.win AND g.ver IS NOT DISTINCT FROM j.ver
             AND g.seg IS NOT DISTINCT FROM j.seg"""
    ).to_arrow_table()
    vectors = _vectors(table.column("proba")) if has_proba else None
    joined = {c: table.column(c).to_numpy() for c in table.column_names if c != "proba"}
    counts = con.execute("SELECT win, ver, seg, n FROM pg ORDER BY gid").fetchall()
    con.unregister("lb_all")
    if not counts:
        report.status = "no data"
        return report
    ys = np.asarray(joined["y"], dtype=object)
    preds = np.asarray(joined["pred_s"], dtype=object)
    task = opts.task
    if task == "auto":
        numeric = pred_type in ("DOUBLE", "FLOAT", "REAL") or pred_type.startswith("DECIMAL")
        task = "regression" if numeric and not has_proba else "classification"
    report.task = task
    classes: list[str] = []
    if task == "classification":
        classes = sorted(np.unique(np.concatenate([ys, preds]).astype(str)).tolist())
    positive = _positive(classes, opts.positive)
    gids = np.asarray(joined["gid"], dtype=np.int64)
    estimates = _estimates(con, positive) if has_proba and task == "classification" else {}
    for gid, (win, ver_v, seg_v, n_pred) in enumerate(counts):
        mask = gids == gid
        labelled = int(mask.sum())
        window = PerformanceWindow(
            start=win,
            end=_end(win, opts.window),
            version=ver_v,
            segment=seg_v,
            predictions=int(n_pred),
            labelled=labelled,
            coverage=labelled / int(n_pred) if n_pred else 0.0,
            estimated=estimates.get((win, ver_v, seg_v), {}),
        )
        if labelled:
            if task == "classification":
                p1 = joined["p1"][mask] if has_proba else None
                order, probas = None, None
                if vectors is not None and positive is None:
                    order = _order(joined["v"][mask], vectors.shape[1], classes, class_order)
                    probas = vectors[mask]
                window.metrics = classification(
                    ys[mask].astype(str), preds[mask].astype(str),
                    None if p1 is None else np.ma.filled(p1, np.nan), classes, positive,
                    opts.confidence, probas, order,
                )  # fmt: skip
            else:
                y = np.ma.filled(joined["y_d"][mask], np.nan).astype(np.float64)
                pred_d = np.ma.filled(joined["pred_d"][mask], np.nan).astype(np.float64)
                ok = ~(np.isnan(y) | np.isnan(pred_d))
                if ok.any():
                    window.metrics = regression(y[ok], pred_d[ok], opts.confidence)
        report.windows.append(window)
    return report


def _vectors(column: Any) -> np.ndarray | None:
    """The probability vectors as a rows x classes array (NaN rows where none was logged);
    None when the rows' vectors differ in length."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    known = lengths[~np.isnan(lengths.astype(np.float64))] if len(lengths) else lengths
    widths = np.unique(known)
    if len(widths) != 1 or widths[0] < 1:
        return None
    k = int(widths[0])
    out = np.full((len(lists), k), np.nan)
    present = ~np.isnan(lengths.astype(np.float64))
    flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.float64)
    out[present] = flat.reshape(-1, k)
    return out


def _order(
    versions: np.ndarray, width: int, classes: list[str],
    class_order: Callable[[str], list[str] | None] | None,
) -> list[str] | None:  # fmt: skip
    """The classes of a window's probability vectors: its version's registered labels (one
    version in the window), else the observed classes when as many as the vector's length."""
    names = {str(v) for v in np.unique(versions.astype(str))}
    if class_order is not None and len(names) == 1:
        order = class_order(names.pop())
        if order is not None and len(order) == width:
            return order
    return classes if len(classes) == width else None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _end(start: dt.datetime, window: str) -> dt.datetime:
    n, unit = int(window[:-1]), window[-1]
    return start + dt.timedelta(**{_UNITS[unit]: n})


def _estimates(con: Any, positive: str | None) -> dict[tuple[Any, ...], dict[str, float]]:
    """CBPE: the expected confusion matrix from p1 over every prediction of a group."""
    if positive is None:
        rows = con.execute(
            "SELECT win, ver, seg, avg(greatest(p1, 1 - p1)) FROM pl WHERE p1 IS NOT NULL "
            "GROUP BY ALL"
        ).fetchall()
        return {(w, v, s): {"accuracy": float(a)} for w, v, s, a in rows}
    pos = sql_text(positive)
    rows = con.execute(
        f"""SELECT win, ver, seg,
              sum(p1 * (pred_s = {pos})::INT), sum((1 - p1) * (pred_s = {pos})::INT),
              sum(p1 * (pred_s <> {pos})::INT), sum((1 - p1) * (pred_s <> {pos})::INT)
            FROM pl WHERE p1 IS NOT NULL GROUP BY ALL"""
    ).fetchall()
    out = {}
    for w, v, s, tp, fp, fn, tn in rows:
        total = tp + fp + fn + tn
        est = {"accuracy": (tp + tn) / total if total else math.nan}
        est["precision"] = tp / (tp + fp) if tp + fp else math.nan
        est["recall"] = tp / (tp + fn) if tp + fn else math.nan
        est["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
        out[(w, v, s)] = est
    return out


def as_points(report: PerformanceReport) -> list[SeriesPoint]:
    """Each window's metrics (``f1``...), ``coverage`` and ``estimated.<metric>`` as points at
    the window's end, labelled with version and segment."""
    points = []
    for w in report.windows:
        labels: dict[str, Any] = {"version": w.version, "segment": w.segment, "n": w.labelled}
        series: dict[str, tuple[float, dict[str, Any]]] = {"coverage": (w.coverage, {})}
        for name, m in w.metrics.items():
            series[name] = (m.value, {"low": m.low, "high": m.high})
        for name, value in w.estimated.items():
            series[f"estimated.{name}"] = (value, {})
        for name, (value, extra) in series.items():
            points.append(
                SeriesPoint(
                    model=report.model, series=name, ts=w.end, value=value, labels=labels | extra
                )
            )
    return points
