"""Profile models and the exact arithmetic shared by profiling, merging and comparing."""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from strata.core.errors import InvalidInput
from strata.data.expectations.values import as_utc, column_family, jsonable, start_of_day

QUANTILE_PROBS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
EXACT_COUNTS_MAX = 10_000  # approx. distinct values up to which value counts are exact
VALUE_COUNTS_MAX = 200  # distinct values up to which all value counts are kept
UNIQUE_CANDIDATE = 0.9  # approx. distinct/count from which the exact distinct is counted
PSI_EPS = 1e-4

Kind = Literal["numeric", "boolean", "temporal", "string", "other"]
_NUMERIC = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE",
}  # fmt: skip


class ValueCount(BaseModel):
    value: Any
    count: int


class Histogram(BaseModel):
    """Numeric/temporal: ``edges`` (bins + 1, equal width; temporal in epoch seconds) and
    ``counts`` per bin, the last bin closed. Categorical: ``values`` with ``counts`` and
    ``other``, the count of non-null values outside ``values``."""

    kind: Literal["numeric", "categorical"]
    counts: list[int]
    edges: list[float] | None = None
    values: list[Any] | None = None
    other: int = 0


class ColumnProfile(BaseModel):
    """One column. Temporal values are ISO 8601 text in UTC; NULLs are excluded everywhere
    except ``nulls``. ``sum``/``sum_sq``/``m2`` (the sum of squared deviations from the mean,
    from which ``std`` = sqrt(m2 / (count - 1))) are set for numeric and boolean columns:
    integer sums are exact integers, float sums are (compensated) doubles; ``sum_sq`` of a
    high-cardinality column is a double sum."""

    name: str
    type: str
    kind: Kind
    count: int
    nulls: int
    null_fraction: float
    distinct: int | None = None
    distinct_exact: bool = False
    min: Any = None
    max: Any = None
    mean: float | None = None
    std: float | None = None
    sum: int | float | None = None
    sum_sq: int | float | None = None
    m2: float | None = None
    quantiles: dict[str, Any] = Field(default_factory=dict)
    quantiles_exact: bool = False
    top_values: list[ValueCount] = Field(default_factory=list)
    top_values_exact: bool = False
    histogram: Histogram | None = None
    value_counts: list[ValueCount] | None = None


class DatasetProfile(BaseModel):
    row_count: int
    columns: list[ColumnProfile]
    bins: int = 20
    top_k: int = 10
    duration_s: float = 0.0

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``; InvalidInput listing the columns if absent."""
        for col in self.columns:
            if col.name == name:
                return col
        raise InvalidInput(
            f"profile has no column {name!r}; columns: {', '.join(c.name for c in self.columns)}"
        )


def column_kind(duckdb_type: str) -> Kind:
    family = column_family(duckdb_type)
    if family in _NUMERIC or family.startswith("DECIMAL"):
        return "numeric"
    if family == "BOOLEAN":
        return "boolean"
    if family in ("DATE", "TIMESTAMP", "TIMESTAMPTZ"):
        return "temporal"
    if family in ("VARCHAR", "ENUM", "UUID"):
        return "string"
    return "other"


def numeric_axis(kind: Kind, value: Any) -> float:
    """A value on the numeric axis: itself, 0/1 for booleans, epoch seconds for temporal."""
    if kind == "temporal":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return as_utc(start_of_day(value)).timestamp()
    return float(value)


def from_epoch(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).isoformat()


def sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def top_values(counts: Iterable[tuple[Any, int]], k: int) -> list[ValueCount]:
    ranked = sorted(counts, key=lambda vc: (-vc[1], sort_key(vc[0])))
    return [ValueCount(value=v, count=c) for v, c in ranked[:k]]


def make_edges(lo: float, hi: float, bins: int, integral: bool) -> list[float]:
    if hi <= lo:
        return [lo, hi]
    if integral:  # one bin per integer when the range is narrower than the bins asked for
        bins = min(bins, int(hi - lo) + 1)
    width = (hi - lo) / bins
    return [lo + i * width for i in range(bins)] + [hi]


def bin_index(x: float, edges: list[float]) -> int:
    last = len(edges) - 2
    if last <= 0 or edges[-1] <= edges[0]:
        return 0
    i = math.floor((x - edges[0]) / ((edges[-1] - edges[0]) / (last + 1)))
    return min(max(i, 0), last)


def exact_quantiles(pairs: Sequence[tuple[float, int]], probs: Sequence[float]) -> list[float]:
    """Exact quantiles with linear interpolation (numpy's default, DuckDB's quantile_cont)
    from sorted (value, count) pairs."""
    cum: list[int] = []
    total = 0
    for _, c in pairs:
        total += c
        cum.append(total)

    def at(rank: int) -> float:  # the value of the rank-th smallest element (0-based)
        return pairs[bisect.bisect_right(cum, rank)][0]

    out = []
    for p in probs:
        h = (total - 1) * p
        lo = math.floor(h)
        v = at(lo)
        out.append(v + (h - lo) * (at(lo + 1) - v) if h > lo else v)
    return out


def weighted_moments(pairs: Sequence[tuple[float, int]]) -> tuple[float, float, float, float]:
    """(sum, sum of squares, mean, m2) of weighted values, each summed exactly (fsum)."""
    n = sum(c for _, c in pairs)
    s = math.fsum(v * c for v, c in pairs)
    ss = math.fsum(v * v * c for v, c in pairs)
    mean = s / n
    m2 = math.fsum(c * (v - mean) ** 2 for v, c in pairs)
    return s, ss, mean, m2


def sample_std(m2: float | None, n: int) -> float | None:
    return math.sqrt(m2 / (n - 1)) if m2 is not None and n > 1 else None


def is_integral(col: ColumnProfile) -> bool:
    """Whether the column holds integers (its histogram then gets one bin per integer when
    the range is narrower than the bins asked for)."""
    return col.kind == "numeric" and "INT" in column_family(col.type)


def numeric_histogram(
    kind: Kind, col: ColumnProfile, pairs: Sequence[tuple[float, int]], bins: int
) -> Histogram:
    assert col.min is not None and col.max is not None
    lo, hi = numeric_axis(kind, col.min), numeric_axis(kind, col.max)
    edges = make_edges(lo, hi, bins, is_integral(col))
    counts = [0] * (len(edges) - 1)
    for v, c in pairs:
        counts[bin_index(v, edges)] += c
    return Histogram(kind="numeric", edges=edges, counts=counts)


def apply_value_counts(col: ColumnProfile, values: dict[Any, int], bins: int, top_k: int) -> None:
    """Derive every statistic of ``col`` exactly from its complete value counts."""
    kind = col.kind
    items = [(jsonable(v), int(c)) for v, c in values.items() if v is not None]
    col.distinct, col.distinct_exact = len(items), True
    col.top_values, col.top_values_exact = top_values(items, top_k), True
    if len(items) <= VALUE_COUNTS_MAX:
        col.value_counts = sorted(
            (ValueCount(value=v, count=c) for v, c in items), key=lambda x: sort_key(x.value)
        )
    if kind in ("string", "boolean"):
        col.histogram = Histogram(
            kind="categorical",
            values=[t.value for t in col.top_values],
            counts=[t.count for t in col.top_values],
            other=col.count - sum(t.count for t in col.top_values),
        )
    if kind not in ("numeric", "temporal", "boolean") or not items:
        return
    pairs = sorted((numeric_axis(kind, v), c) for v, c in items)
    if kind in ("numeric", "boolean"):
        col.sum, col.sum_sq, col.mean, col.m2 = weighted_moments(pairs)
        col.std = sample_std(col.m2, col.count)
        if is_integral(col) or kind == "boolean":  # integer sums: exact Python ints
            col.sum = sum(int(v) * c for v, c in items)
            col.sum_sq = sum(int(v) * int(v) * c for v, c in items)
    if kind == "boolean":
        return
    qs = exact_quantiles(pairs, QUANTILE_PROBS)
    conv = from_epoch if kind == "temporal" else (lambda x: x)
    col.quantiles = {f"{p:g}": conv(x) for p, x in zip(QUANTILE_PROBS, qs, strict=True)}
    col.quantiles_exact = True
    col.histogram = numeric_histogram(kind, col, pairs, bins)
