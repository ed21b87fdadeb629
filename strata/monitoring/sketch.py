"""Mergeable per-column sketches: value counts, exact up to ``EXACT_MAX`` distinct values.

A sketch is what the drift tests read: the distinct non-null values of a column with their
counts (numeric values as float64, sorted; categories as text) and the count of nulls
(NULL, NaN and ±inf, which Evidently drops too). Two sketches of the same column merge by
adding counts, so a window's sketch is the sum of its partitions' and a stored reference
never needs its rows again.

Past ``EXACT_MAX`` distinct values a numeric column is bucketed on a relative-accuracy
grid (DDSketch's: bucket ``i`` holds values in (g^(i-1), g^i] with g = (1+a)/(1-a),
a = ``RELATIVE_ACCURACY``; its value is the bucket's midpoint 2g^i/(g+1)), which is
data-independent and therefore still mergeable; such a sketch says ``exact=False``. A
categorical column keeps its ``EXACT_MAX`` most frequent values and sums the rest under
``OTHER``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

EXACT_MAX = 200_000
RELATIVE_ACCURACY = 1e-4
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
OTHER = "__other__"


@dataclass
class Sketch:
    """Counts of one column's distinct non-null values. ``numeric``: ``values`` float64,
    ascending; categorical: ``values`` an object array of str. ``integral``: the storage
    type is an integer (Evidently reads integer columns with at most 10 distinct values as
    categorical)."""

    numeric: bool
    values: np.ndarray
    counts: np.ndarray
    nulls: int = 0
    exact: bool = True
    integral: bool = False

    @property
    def rows(self) -> int:
        """Non-null rows."""
        return int(self.counts.sum())

    @property
    def distinct(self) -> int:
        return len(self.values)

    def as_categorical(self) -> Sketch:
        """The same counts with the values as text (an integer code read as a category)."""
        if not self.numeric:
            return self
        text = np.array([_number_text(v) for v in self.values.tolist()], dtype=object)
        return Sketch(False, text, self.counts, self.nulls, self.exact, self.integral)

    def to_json(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "values": self.values.tolist(),
            "counts": self.counts.tolist(),
            "nulls": self.nulls,
            "exact": self.exact,
            "integral": self.integral,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sketch:
        numeric = bool(data["numeric"])
        values = np.asarray(data["values"], dtype=np.float64 if numeric else object)
        return cls(
            numeric,
            values,
            np.asarray(data["counts"], dtype=np.int64),
            int(data.get("nulls", 0)),
            bool(data.get("exact", True)),
            bool(data.get("integral", False)),
        )


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def empty(numeric: bool, integral: bool = False) -> Sketch:
    values = np.array([], dtype=np.float64 if numeric else object)
    return Sketch(numeric, values, np.array([], dtype=np.int64), 0, True, integral)


def from_counts(
    numeric: bool,
    values: np.ndarray,
    counts: np.ndarray,
    *,
    nulls: int = 0,
    exact: bool = True,
    integral: bool = False,
) -> Sketch:
    """A sketch from (possibly repeated, unsorted) values and their counts."""
    values = np.asarray(values, dtype=np.float64 if numeric else object)
    counts = np.asarray(counts, dtype=np.int64)
    if len(values):
        uniq, inverse = np.unique(values, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=counts, minlength=len(uniq))
        values, counts = uniq, summed.astype(np.int64)
    return Sketch(numeric, values, counts, nulls, exact, integral)


def merge(a: Sketch, b: Sketch) -> Sketch:
    """The sketch of both samples (counts added; inexact if either is)."""
    if a.numeric != b.numeric:
        a, b = a.as_categorical(), b.as_categorical()
    return from_counts(
        a.numeric,
        np.concatenate([a.values, b.values]),
        np.concatenate([a.counts, b.counts]),
        nulls=a.nulls + b.nulls,
        exact=a.exact and b.exact,
        integral=a.integral and b.integral,
    )


def bucket_sql(expr: str) -> str:
    """DuckDB SQL mapping the double ``expr`` to its bucket's value on the relative grid
    (0 stays 0; the sign is kept)."""
    lg = math.log(GAMMA)
    factor = 2.0 / (GAMMA + 1.0)
    return (
        f"CASE WHEN {expr} = 0 THEN 0.0 ELSE sign({expr}) * {factor!r} * "
        f"exp(ceil(ln(abs({expr})) / {lg!r}) * {lg!r}) END"
    )


def weighted_moments(s: Sketch) -> tuple[float, float]:
    """Mean and population standard deviation (numpy's ``np.std``, ddof=0) of a numeric
    sketch."""
    n = s.counts.sum()
    if n == 0:
        return math.nan, math.nan
    w = s.counts.astype(np.float64)
    mean = float(np.dot(s.values, w) / n)
    var = float(np.dot(w, (s.values - mean) ** 2) / n)
    return mean, math.sqrt(max(var, 0.0))


def expand(s: Sketch) -> np.ndarray:
    """The sample itself (values repeated by count), for tests that need it (KS)."""
    return np.repeat(s.values, s.counts)
