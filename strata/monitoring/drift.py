"""The drift report from two sets of sketches (Evidently's default tests, or chosen ones)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from strata.monitoring import stattests
from strata.monitoring.models import (
    DEFAULT_THRESHOLDS,
    P_VALUE_METHODS,
    PSI_MAJOR,
    Binning,
    ColumnDrift,
    ColumnKind,
    ColumnTest,
    DriftOptions,
    DriftReport,
    Method,
)
from strata.monitoring.sketch import Sketch

INTEGER_CATEGORY_MAX = 10  # Evidently reads an integer column with <= 10 values as categorical
OVERLAY_BINS = 30
OVERLAY_CATEGORIES = 20


def column_kind(name: str, ref: Sketch, options: DriftOptions) -> ColumnKind:
    """``numeric`` or ``categorical``: the option if given, else Evidently's inference (float
    storage numeric; integer numeric above 10 distinct values; text categorical)."""
    if name in options.column_types:
        return options.column_types[name]
    if not ref.numeric:
        return "categorical"
    if ref.integral and ref.distinct <= INTEGER_CATEGORY_MAX:
        return "categorical"
    return "numeric"


def _test_for(name: str, options: DriftOptions) -> ColumnTest:
    if name in options.tests:
        return options.tests[name]
    return ColumnTest(method=options.method, threshold=options.threshold, bins=options.bins)


def test_column(name: str, ref: Sketch, cur: Sketch, options: DriftOptions) -> ColumnDrift:
    """One column's result; ``no data`` when either side has no non-null value."""
    kind = column_kind(name, ref, options)
    numeric = kind == "numeric"
    if numeric and not cur.numeric:
        numeric, kind = False, "categorical"
    if not numeric:
        ref, cur = ref.as_categorical(), cur.as_categorical()
    spec = _test_for(name, options)
    if ref.rows == 0 or cur.rows == 0:
        method = spec.method if spec.method is not Method.AUTO else Method.AUTO
        return ColumnDrift(
            drifted=False,
            method=method,
            score=float("nan"),
            threshold=spec.threshold or 0.0,
            kind=kind,
            reference_rows=ref.rows,
            current_rows=cur.rows,
            reference_nulls=ref.nulls,
            current_nulls=cur.nulls,
            status="no data",
        )
    method = spec.method
    if method is Method.AUTO:
        method = stattests.default_method(ref, cur, numeric=numeric)
    if not numeric and method in (Method.WASSERSTEIN, Method.KS):
        method = stattests.default_method(ref, cur, numeric=False)
    threshold = spec.threshold if spec.threshold is not None else DEFAULT_THRESHOLDS[method]
    value = stattests.score(method, ref, cur, numeric=numeric, bins=spec.bins, n_bins=spec.n_bins)
    if method in P_VALUE_METHODS:
        drifted = value <= threshold if method is Method.KS else value < threshold
    else:
        drifted = value >= threshold
    severity = None
    if method is Method.PSI:
        severity = "major" if value >= PSI_MAJOR else ("moderate" if drifted else "none")
    return ColumnDrift(
        drifted=bool(drifted),
        method=method,
        score=float(value),
        threshold=float(threshold),
        kind=kind,
        reference_rows=ref.rows,
        current_rows=cur.rows,
        reference_nulls=ref.nulls,
        current_nulls=cur.nulls,
        exact=ref.exact and cur.exact,
        severity=severity,
        overlay=overlay(ref, cur, numeric=numeric),
    )


def overlay(ref: Sketch, cur: Sketch, *, numeric: bool) -> dict[str, Any]:
    """What the HTML report draws: shares per common bin (numeric) or per category (the
    most frequent of both sides, the rest as ``other``)."""
    if numeric:
        lo = float(min(ref.values[0], cur.values[0]))
        hi = float(max(ref.values[-1], cur.values[-1]))
        if lo == hi:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, OVERLAY_BINS + 1)
        r, _ = np.histogram(ref.values, edges, weights=ref.counts)
        c, _ = np.histogram(cur.values, edges, weights=cur.counts)
        return {
            "edges": edges.tolist(),
            "reference": (r / ref.rows).tolist(),
            "current": (c / cur.rows).tolist(),
        }
    keys, r, c = stattests.align(ref, cur)
    top = np.argsort(-(r / ref.rows + c / cur.rows), kind="stable")[:OVERLAY_CATEGORIES]
    rs, cs = r[top] / ref.rows, c[top] / cur.rows
    return {
        "categories": [str(k) for k in keys[top]],
        "reference": rs.tolist(),
        "current": cs.tolist(),
        "other": [float(1 - rs.sum()), float(1 - cs.sum())],
    }


def compare(
    reference: tuple[str, int, dict[str, Sketch], dict[str, str]],
    current: tuple[str, int, dict[str, Sketch], dict[str, str]],
    options: DriftOptions,
) -> DriftReport:
    """The report of ``current`` against ``reference``, each (label, rows, sketches, types).

    Columns: ``options.columns`` or every sketched reference column; a column absent on one
    side is listed under ``missing`` (side → columns) and the rest are tested. Either side
    without rows gives status ``no data``."""
    started = time.perf_counter()
    ref_label, ref_rows, ref_sk, ref_types = reference
    cur_label, cur_rows, cur_sk, cur_types = current
    wanted = list(options.columns) if options.columns else list(ref_sk)
    missing: dict[str, list[str]] = {}
    not_ref = [c for c in wanted if c not in ref_types and c not in ref_sk]
    not_cur = [c for c in wanted if c not in cur_types and c not in cur_sk]
    if not options.columns:  # a current column the reference lacks is worth saying too
        not_ref += [c for c in cur_sk if c not in ref_types and c not in ref_sk]
    if not_ref:
        missing["reference"] = not_ref
    if not_cur:
        missing["current"] = not_cur
    report = DriftReport(
        reference=ref_label,
        current=cur_label,
        reference_rows=ref_rows,
        current_rows=cur_rows,
        drift_share_threshold=options.drift_share,
        missing=missing,
    )
    if ref_rows == 0 or cur_rows == 0:
        report.status = "no data"
        report.duration_s = time.perf_counter() - started
        return report
    for name in wanted:
        if name in ref_sk and name in cur_sk:
            report.columns[name] = test_column(name, ref_sk[name], cur_sk[name], options)
    tested = [c for c in report.columns.values() if c.status == "tested"]
    report.drifted_count = sum(c.drifted for c in tested)
    report.drifted_share = report.drifted_count / len(tested) if tested else 0.0
    report.dataset_drift = bool(tested) and report.drifted_share >= options.drift_share
    report.duration_s = time.perf_counter() - started
    return report


__all__ = ["Binning", "compare", "test_column"]
