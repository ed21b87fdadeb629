"""Merging and comparing profiles, and suggesting a suite from one."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from strata.core.errors import InvalidInput
from strata.data.expectations.suite import Expectation, Suite
from strata.data.profiles.model import (
    PSI_EPS,
    QUANTILE_PROBS,
    ColumnProfile,
    DatasetProfile,
    Histogram,
    apply_value_counts,
    bin_index,
    from_epoch,
    is_integral,
    make_edges,
    numeric_axis,
    sample_std,
    sort_key,
    top_values,
)

# --- merging ------------------------------------------------------------------------------


def _round_counts(values: Sequence[float], total: int) -> list[int]:
    """Integers summing to ``total``, proportional to ``values`` (largest remainder)."""
    s = sum(values)
    if s <= 0:
        return [0] * len(values)
    raw = [v * total / s for v in values]
    out = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def _rebin(hist: Histogram, edges: list[float]) -> list[float]:
    """Spread ``hist``'s counts over ``edges`` assuming values uniform within each bin; mass
    outside the new range goes to the first/last bin."""
    assert hist.edges is not None
    out = [0.0] * (len(edges) - 1)
    lows = [-math.inf, *edges[1:-1]]
    highs = [*edges[1:-1], math.inf]
    for i, count in enumerate(hist.counts):
        lo, hi = hist.edges[i], hist.edges[i + 1]
        if hi <= lo:
            out[bin_index(lo, edges)] += count
            continue
        for j in range(len(out)):
            overlap = min(hi, highs[j]) - max(lo, lows[j])
            if overlap > 0:
                out[j] += count * overlap / (hi - lo)
    return out


def _hist_quantiles(hist: Histogram, probs: Sequence[float]) -> list[float]:
    assert hist.edges is not None
    total = sum(hist.counts)
    out, cum = [], 0.0
    cums = []
    for c in hist.counts:
        cum += c
        cums.append(cum)
    for p in probs:
        target = p * total
        i = min(bisect.bisect_left(cums, target), len(hist.counts) - 1)
        before = cums[i] - hist.counts[i]
        lo, hi = hist.edges[i], hist.edges[min(i + 1, len(hist.edges) - 1)]
        frac = (target - before) / hist.counts[i] if hist.counts[i] else 0.0
        out.append(lo + frac * (hi - lo))
    return out


def _counts_of(col: ColumnProfile) -> dict[Any, int]:
    """The best-known count of each value: all of them, else the top values."""
    source = col.value_counts if col.value_counts is not None else col.top_values
    return {_hashable(v.value): v.count for v in source}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _merge_column(x: ColumnProfile, y: ColumnProfile, bins: int, top_k: int) -> ColumnProfile:
    nulls = x.nulls + y.nulls
    if x.count == 0 or y.count == 0:
        out = (y if x.count == 0 else x).model_copy(deep=True)
        out.nulls = nulls
        out.null_fraction = nulls / (out.count + nulls) if out.count + nulls else 0.0
        return out
    n = x.count + y.count
    out = ColumnProfile(
        name=x.name,
        type=x.type,
        kind=x.kind,
        count=n,
        nulls=nulls,
        null_fraction=nulls / (n + nulls),
    )
    if x.kind == "other":
        return out
    key = (
        (lambda v: numeric_axis(x.kind, v)) if x.kind in ("numeric", "temporal") else (lambda v: v)
    )
    out.min = min(x.min, y.min, key=key)
    out.max = max(x.max, y.max, key=key)
    if x.value_counts is not None and y.value_counts is not None:
        merged = _counts_of(x)
        for v, c in _counts_of(y).items():
            merged[v] = merged.get(v, 0) + c
        apply_value_counts(out, merged, bins, top_k)
        return out
    if x.sum is not None and y.sum is not None and x.sum_sq is not None and y.sum_sq is not None:
        out.sum, out.sum_sq = x.sum + y.sum, x.sum_sq + y.sum_sq
    if x.mean is not None and y.mean is not None:
        out.mean = (x.mean * x.count + y.mean * y.count) / n
        if x.m2 is not None and y.m2 is not None:  # Chan et al.'s parallel variance
            out.m2 = x.m2 + y.m2 + (y.mean - x.mean) ** 2 * x.count * y.count / n
            out.std = sample_std(out.m2, n)
    out.distinct = max(x.distinct or 0, y.distinct or 0)  # a lower bound
    counts = _counts_of(x)
    for v, c in _counts_of(y).items():
        counts[v] = counts.get(v, 0) + c
    out.top_values = top_values(counts.items(), top_k)
    if x.kind in ("string", "boolean"):
        out.histogram = Histogram(
            kind="categorical",
            values=[t.value for t in out.top_values],
            counts=[t.count for t in out.top_values],
            other=n - sum(t.count for t in out.top_values),
        )
        return out
    hx, hy = x.histogram, y.histogram
    if hx is None or hy is None or hx.edges is None or hy.edges is None:
        return out
    if hx.edges == hy.edges:
        out.histogram = Histogram(
            kind="numeric",
            edges=hx.edges,
            counts=[a + b for a, b in zip(hx.counts, hy.counts, strict=True)],
        )
    else:
        lo, hi = numeric_axis(x.kind, out.min), numeric_axis(x.kind, out.max)
        edges = make_edges(lo, hi, bins, is_integral(x))
        spread = [a + b for a, b in zip(_rebin(hx, edges), _rebin(hy, edges), strict=True)]
        out.histogram = Histogram(kind="numeric", edges=edges, counts=_round_counts(spread, n))
    qs = _hist_quantiles(out.histogram, QUANTILE_PROBS)
    conv = from_epoch if x.kind == "temporal" else (lambda v: v)
    out.quantiles = {f"{p:g}": conv(v) for p, v in zip(QUANTILE_PROBS, qs, strict=True)}
    return out


def _schema_changes(a: DatasetProfile, b: DatasetProfile) -> tuple[list[str], list[str], list[str]]:
    types_a = {c.name: c.type for c in a.columns}
    types_b = {c.name: c.type for c in b.columns}
    added = [n for n in types_b if n not in types_a]
    removed = [n for n in types_a if n not in types_b]
    changed = [n for n in types_a if n in types_b and types_a[n] != types_b[n]]
    return added, removed, changed


def merge_profiles(a: DatasetProfile, b: DatasetProfile) -> DatasetProfile:
    """The profile of the union of the rows of ``a`` and ``b`` (same columns and types).

    Exact: row count, count, nulls, min, max, sum, sum of squares, mean and std (Chan's
    parallel m2). Columns with all value counts on both sides merge exactly in every field.
    Otherwise histograms add up when their edges match and are re-binned (values assumed
    uniform within a bin) when not; quantiles then come from the merged histogram; distinct is
    the larger of the two (a lower bound) and top values sum the counts each side kept.
    Raises InvalidInput naming the columns when the schemas differ.
    """
    added, removed, changed = _schema_changes(a, b)
    if added or removed or changed or [c.name for c in a.columns] != [c.name for c in b.columns]:
        raise InvalidInput(
            "profiles of different schemas cannot be merged: "
            f"only in the second: {added or 'none'}; only in the first: {removed or 'none'}; "
            f"type changed: {changed or 'none'}",
            details={"added": added, "removed": removed, "type_changed": changed},
        )
    bins, top_k = max(a.bins, b.bins), max(a.top_k, b.top_k)
    return DatasetProfile(
        row_count=a.row_count + b.row_count,
        columns=[
            _merge_column(x, y, bins, top_k) for x, y in zip(a.columns, b.columns, strict=True)
        ],
        bins=bins,
        top_k=top_k,
    )


# --- comparing ----------------------------------------------------------------------------


class ColumnDiff(BaseModel):
    """How one column changed from profile ``a`` (reference) to ``b``.

    ``psi`` (population stability index, proportions floored at 1e-4) and ``js_distance``
    (Jensen-Shannon distance, natural log, as scipy's ``jensenshannon``) compare the two
    distributions on ``a``'s histogram bins (numeric/temporal) or on the values (all of them
    when both profiles kept every value count, else ``a``'s top values plus "other").
    """

    name: str
    status: Literal["both", "added", "removed"]
    type_a: str | None = None
    type_b: str | None = None
    type_changed: bool = False
    null_fraction_a: float | None = None
    null_fraction_b: float | None = None
    null_fraction_change: float | None = None
    mean_a: float | None = None
    mean_b: float | None = None
    mean_change: float | None = None
    std_a: float | None = None
    std_b: float | None = None
    std_change: float | None = None
    distinct_a: int | None = None
    distinct_b: int | None = None
    psi: float | None = None
    js_distance: float | None = None


class ProfileDiff(BaseModel):
    row_count_a: int
    row_count_b: int
    row_count_change: int
    row_count_change_pct: float | None
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    type_changed: list[str] = Field(default_factory=list)
    columns: list[ColumnDiff] = Field(default_factory=list)

    def column(self, name: str) -> ColumnDiff:
        for col in self.columns:
            if col.name == name:
                return col
        raise InvalidInput(f"diff has no column {name!r}")


def psi(expected: Sequence[float], actual: Sequence[float]) -> float | None:
    """Population stability index of ``actual`` against ``expected`` (counts per bucket)."""
    se, sa = sum(expected), sum(actual)
    if se <= 0 or sa <= 0:
        return None
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        p, q = max(e / se, PSI_EPS), max(a / sa, PSI_EPS)
        total += (q - p) * math.log(q / p)
    return total


def js_distance(p_counts: Sequence[float], q_counts: Sequence[float]) -> float | None:
    """Jensen-Shannon distance (natural log; 0 = same, sqrt(ln 2) = disjoint)."""
    sp, sq = sum(p_counts), sum(q_counts)
    if sp <= 0 or sq <= 0:
        return None
    div = 0.0
    for a, b in zip(p_counts, q_counts, strict=True):
        p, q = a / sp, b / sq
        m = (p + q) / 2
        if p > 0:
            div += 0.5 * p * math.log(p / m)
        if q > 0:
            div += 0.5 * q * math.log(q / m)
    return math.sqrt(max(div, 0.0))


def _distributions(a: ColumnProfile, b: ColumnProfile) -> tuple[list[float], list[float]] | None:
    """The two columns' counts over common buckets, or None when not comparable."""
    if a.count == 0 or b.count == 0 or a.kind == "other" or a.kind != b.kind:
        return None
    ha = a.histogram
    if a.kind in ("numeric", "temporal"):
        if ha is None or ha.edges is None or b.histogram is None:
            return None
        edges = ha.edges
        expected = [float(c) for c in ha.counts]
        if b.value_counts is not None:
            actual = [0.0] * len(expected)
            for vc in b.value_counts:
                actual[bin_index(numeric_axis(b.kind, vc.value), edges)] += vc.count
        elif b.histogram.edges == edges:
            actual = [float(c) for c in b.histogram.counts]
        else:
            actual = _rebin(b.histogram, edges)
        return expected, actual
    ca, cb = _counts_of(a), _counts_of(b)
    if a.value_counts is not None and b.value_counts is not None:
        keys = sorted(set(ca) | set(cb), key=sort_key)
        return [float(ca.get(k, 0)) for k in keys], [float(cb.get(k, 0)) for k in keys]
    keys = [_hashable(t.value) for t in a.top_values]
    expected = [float(ca[k]) for k in keys]
    actual = [float(cb.get(k, 0)) for k in keys]
    return [*expected, a.count - sum(expected)], [*actual, b.count - sum(actual)]


def _change(x: float | None, y: float | None) -> float | None:
    return y - x if x is not None and y is not None else None


def compare_profiles(a: DatasetProfile, b: DatasetProfile) -> ProfileDiff:
    """What changed from ``a`` (the reference) to ``b``: row count, schema, and per column
    null fraction, mean, std, distinct and the PSI / Jensen-Shannon distance of the
    distributions. Columns come in ``a``'s order, then those only in ``b``."""
    added, removed, changed = _schema_changes(a, b)
    by_name = {c.name: c for c in b.columns}
    diffs: list[ColumnDiff] = []
    for x in a.columns:
        y = by_name.get(x.name)
        if y is None:
            diffs.append(ColumnDiff(name=x.name, status="removed", type_a=x.type))
            continue
        dist = _distributions(x, y)
        diffs.append(
            ColumnDiff(
                name=x.name,
                status="both",
                type_a=x.type,
                type_b=y.type,
                type_changed=x.type != y.type,
                null_fraction_a=x.null_fraction,
                null_fraction_b=y.null_fraction,
                null_fraction_change=y.null_fraction - x.null_fraction,
                mean_a=x.mean,
                mean_b=y.mean,
                mean_change=_change(x.mean, y.mean),
                std_a=x.std,
                std_b=y.std,
                std_change=_change(x.std, y.std),
                distinct_a=x.distinct,
                distinct_b=y.distinct,
                psi=psi(*dist) if dist else None,
                js_distance=js_distance(*dist) if dist else None,
            )
        )
    diffs += [ColumnDiff(name=n, status="added", type_b=by_name[n].type) for n in added]
    return ProfileDiff(
        row_count_a=a.row_count,
        row_count_b=b.row_count,
        row_count_change=b.row_count - a.row_count,
        row_count_change_pct=(b.row_count - a.row_count) / a.row_count * 100
        if a.row_count
        else None,
        added=added,
        removed=removed,
        type_changed=changed,
        columns=diffs,
    )


# --- suggesting ---------------------------------------------------------------------------

IN_SET_MAX_VALUES = 20


def suggest_suite(profile: DatasetProfile, *, name: str = "suggested") -> Suite:
    """A suite that the profiled data passes, to edit before use.

    Proposes: row count within [half, double] the profiled count; per column not_null
    (``mostly`` = the observed non-null share rounded down to 2 decimals, when under 1;
    nothing when more than half is null); between the observed min and max for numeric and
    temporal columns; in_set of the observed values for text columns with at most 20
    distinct values; unique where every non-null value is distinct (counted exactly).
    """
    n = profile.row_count
    exps = [
        Expectation(
            type="expect_table_row_count_to_be_between",
            kwargs={"min_value": n // 2, "max_value": n * 2},
        )
    ]
    for col in profile.columns:
        if col.count == 0:
            continue
        c = {"column": col.name}
        if col.nulls == 0:
            exps.append(Expectation(type="expect_column_values_to_not_be_null", kwargs=c))
        elif col.null_fraction <= 0.5:
            mostly = math.floor((1 - col.null_fraction) * 100) / 100
            exps.append(
                Expectation(
                    type="expect_column_values_to_not_be_null", kwargs={**c, "mostly": mostly}
                )
            )
        if col.kind in ("numeric", "temporal") and col.min is not None:
            exps.append(
                Expectation(
                    type="expect_column_values_to_be_between",
                    kwargs={**c, "min_value": col.min, "max_value": col.max},
                )
            )
        if (
            col.kind == "string"
            and col.value_counts is not None
            and len(col.value_counts) <= IN_SET_MAX_VALUES
        ):
            values = sorted(str(v.value) for v in col.value_counts)
            exps.append(
                Expectation(
                    type="expect_column_values_to_be_in_set", kwargs={**c, "value_set": values}
                )
            )
        if col.distinct_exact and col.distinct == col.count and col.count > 1:
            exps.append(Expectation(type="expect_column_values_to_be_unique", kwargs=c))
    return Suite(name=name, expectations=exps)
