"""Computing a profile: two aggregate passes over a DuckDB relation (three with wide columns)."""

from __future__ import annotations

import time
from typing import Any

import duckdb

from strata.core.errors import InvalidInput
from strata.data.expectations.engine import describe
from strata.data.expectations.sql import literal
from strata.data.expectations.values import jsonable
from strata.data.profiles.model import (
    EXACT_COUNTS_MAX,
    QUANTILE_PROBS,
    UNIQUE_CANDIDATE,
    ColumnProfile,
    DatasetProfile,
    Histogram,
    ValueCount,
    apply_value_counts,
    column_kind,
    is_integral,
    make_edges,
    numeric_axis,
    sample_std,
    top_values,
)
from strata.data.sqltext import quote_ident


def profile(
    con: duckdb.DuckDBPyConnection, relation: str, *, bins: int = 20, top_k: int = 10
) -> DatasetProfile:
    """Profile every column of the table or view ``relation`` (columns in relation order).

    ``bins`` is the number of equal-width histogram bins of numeric/temporal columns (integer
    columns with a narrower range get one bin per integer); ``top_k`` the number of top
    values kept (and the categories of categorical histograms). Quantiles are at
    0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99 with linear interpolation. Raises InvalidInput
    for an unknown relation or bins/top_k below 1.
    """
    started = time.perf_counter()
    if bins < 1 or top_k < 1:
        raise InvalidInput(f"bins and top_k must be >= 1, got bins={bins}, top_k={top_k}")
    schema = describe(con, relation)
    rel = quote_ident(relation)
    cols = [
        ColumnProfile(name=n, type=t, kind=column_kind(t), count=0, nulls=0, null_fraction=0.0)
        for n, t in schema
    ]

    n, approx = _first_pass(con, rel, cols)
    # Pass 2: exact value counts where few distinct values; moments/sketches elsewhere.
    exact = [
        c for c in cols if c.kind != "other" and c.count and approx[c.name] <= EXACT_COUNTS_MAX
    ]
    wide = [c for c in cols if c.kind != "other" and c.count and c not in exact]
    tops = _second_pass(con, rel, exact, wide, approx, bins, top_k)
    _third_pass(con, rel, wide, tops, top_k)
    return DatasetProfile(
        row_count=n,
        columns=cols,
        bins=bins,
        top_k=top_k,
        duration_s=time.perf_counter() - started,
    )


def _first_pass(
    con: duckdb.DuckDBPyConnection, rel: str, cols: list[ColumnProfile]
) -> tuple[int, dict[str, int]]:
    """Pass 1, one scan: row count, per column counts, min/max and approximate distinct
    counts (set on ``cols``); returns (rows, approximate distinct count by column)."""
    exprs = ["COUNT(*)"]
    for col in cols:
        c = quote_ident(col.name)
        exprs.append(f"COUNT({c})")
        if col.kind != "other":
            exprs += [f"MIN({c})", f"MAX({c})", f"approx_count_distinct({c})"]
    row = _one(con, f"SELECT {', '.join(exprs)} FROM {rel}")
    n = int(row[0])
    pos = 1
    approx: dict[str, int] = {}
    for col in cols:
        col.count = int(row[pos])
        col.nulls = n - col.count
        col.null_fraction = col.nulls / n if n else 0.0
        pos += 1
        if col.kind != "other":
            col.min, col.max = jsonable(row[pos]), jsonable(row[pos + 1])
            approx[col.name] = int(row[pos + 2])
            col.distinct = approx[col.name]
            pos += 3
    return n, approx


def _second_pass(
    con: duckdb.DuckDBPyConnection,
    rel: str,
    exact: list[ColumnProfile],
    wide: list[ColumnProfile],
    approx: dict[str, int],
    bins: int,
    top_k: int,
) -> dict[str, list[Any]]:
    """Pass 2, one statement: exact value counts of the ``exact`` columns; quantiles,
    histograms, moments and approximate top values of the ``wide`` ones. Returns the top-k
    candidates by column ("<name": the smallest values of a nearly unique column)."""
    # One statement, one derived table per group of aggregates: DuckDB 2.0 runs histogram() several
    # times slower (and with ~5x the memory) when other aggregates share its SELECT.
    groups: list[tuple[str, list[tuple[ColumnProfile, str, str]]]] = []
    if exact:
        groups.append((rel, [(c, "counts", f"histogram({quote_ident(c.name)})") for c in exact]))
    tops: dict[str, list[Any]] = {}  # approx top-k candidates; "<name": the smallest values
    for col in wide:
        c = quote_ident(col.name)
        if approx[col.name] >= UNIQUE_CANDIDATE * col.count:
            # Nearly all distinct: count exactly; if all are, the top values are the
            # smallest ones (count 1 each, ties broken by value as everywhere).
            source = f"(SELECT {c} FROM {rel} GROUP BY {c}) AS _g"
            groups.append((source, [(col, "distinct", f"COUNT({c})")]))
            wanted = {"smallest": f"min({c}, {top_k})"}
        else:
            wanted = {"top": f"approx_top_k({c}, {top_k})"}
        if col.kind in ("numeric", "temporal"):
            probs = ", ".join(map(str, QUANTILE_PROBS))
            wanted["quantiles"] = f"approx_quantile({c}, [{probs}])"
            x = f"epoch({c})" if col.kind == "temporal" else f"CAST({c} AS DOUBLE)"
            if col.type.upper() == "DATE":
                x = f"epoch(CAST({c} AS TIMESTAMP))"
            edges = make_edges(
                numeric_axis(col.kind, col.min),
                numeric_axis(col.kind, col.max),
                bins,
                is_integral(col),
            )
            col.histogram = Histogram(kind="numeric", edges=edges, counts=[0] * (len(edges) - 1))
            if len(edges) > 2:
                width = (edges[-1] - edges[0]) / (len(edges) - 1)
                wanted["bins"] = (
                    f"histogram(LEAST(GREATEST(CAST(FLOOR(({x} - {edges[0]!r}) / {width!r}) "
                    f"AS BIGINT), 0), {len(edges) - 2}))"
                )
            else:
                col.histogram.counts = [col.count]
        if col.kind == "numeric":
            wanted["sum"] = f"SUM({c})"
            wanted["sum_sq"] = f"SUM(CAST({c} AS DOUBLE) * CAST({c} AS DOUBLE))"
            wanted["mean"] = f"AVG({c})"
            wanted["var"] = f"VAR_SAMP({c})"
        groups.append((rel, [(col, key, expr) for key, expr in wanted.items()]))
    if groups:
        parts: list[str] = []  # derived tables, not CTEs: a CTE could shadow the relation
        wanted_at: list[tuple[ColumnProfile, str]] = []
        for i, (source, items) in enumerate(groups):
            selects = []
            for col, key, expr in items:
                selects.append(f"{expr} AS v{len(wanted_at)}")
                wanted_at.append((col, key))
            parts.append(f"(SELECT {', '.join(selects)} FROM {source}) AS _q{i}")
        row = _one(con, f"SELECT * FROM {', '.join(parts)}")
        for (col, key), value in zip(wanted_at, row, strict=True):
            if key == "counts":
                apply_value_counts(col, value or {}, bins, top_k)
            else:
                _apply_wide(col, key, value, tops)
    return tops


def _third_pass(
    con: duckdb.DuckDBPyConnection,
    rel: str,
    wide: list[ColumnProfile],
    tops: dict[str, list[Any]],
    top_k: int,
) -> None:
    """Pass 3: exact counts of the approximate top values of high-cardinality columns, and
    the categorical histograms of their string columns."""
    smallest = {k[1:]: v for k, v in tops.items() if k.startswith("<")}
    for col in wide:
        if col.name in smallest and col.distinct == col.count:
            col.top_values = [ValueCount(value=jsonable(v), count=1) for v in smallest[col.name]]
            col.top_values_exact = True
        elif col.name in smallest:  # nearly unique but not quite: group exactly, rare
            c = quote_ident(col.name)
            rows = _all(
                con,
                f"SELECT {c}, COUNT(*) AS n FROM {rel} WHERE {c} IS NOT NULL GROUP BY {c} "
                f"ORDER BY n DESC, {c} LIMIT {top_k}",
            )
            col.top_values = [ValueCount(value=jsonable(v), count=int(k)) for v, k in rows]
            col.top_values_exact = True
    candidates = [(c, tops[c.name]) for c in wide if tops.get(c.name)]
    exprs = [
        f"histogram({quote_ident(c.name)}) FILTER (WHERE {quote_ident(c.name)} IN "
        f"({', '.join(_literal(v) for v in top)}))"
        for c, top in candidates
    ]
    if exprs:
        row = _one(con, f"SELECT {', '.join(exprs)} FROM {rel}")
        for (col, _), value in zip(candidates, row, strict=True):
            pairs = ((jsonable(v), int(k)) for v, k in (value or {}).items())
            col.top_values = top_values(pairs, top_k)
    for col in wide:
        if col.kind == "string":
            col.histogram = Histogram(
                kind="categorical",
                values=[t.value for t in col.top_values],
                counts=[t.count for t in col.top_values],
                other=col.count - sum(t.count for t in col.top_values),
            )


def _literal(value: Any) -> str:
    try:
        return literal(value)
    except InvalidInput:  # e.g. a UUID: DuckDB casts the text back to the column's type
        return literal(str(value))


def _all(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    try:
        return [tuple(r) for r in con.execute(sql).fetchall()]
    except duckdb.Error as exc:
        raise InvalidInput(f"profiling query failed: {str(exc).splitlines()[0]}") from None


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    rows = _all(con, sql)
    assert len(rows) == 1  # an aggregate without GROUP BY
    return rows[0]


def _apply_wide(col: ColumnProfile, key: str, value: Any, tops: dict[str, list[Any]]) -> None:
    """Store one pass-2 aggregate of a high-cardinality column (top-k candidates in tops)."""
    if key in ("top", "smallest"):
        tops[col.name if key == "top" else f"<{col.name}"] = [
            v for v in value or [] if v is not None
        ]
    elif key == "distinct":
        col.distinct, col.distinct_exact = int(value), True
    elif key == "quantiles":
        conv = (lambda x: jsonable(x)) if col.kind == "temporal" else (lambda x: float(x))
        col.quantiles = {f"{p:g}": conv(x) for p, x in zip(QUANTILE_PROBS, value, strict=True)}
    elif key == "bins" and col.histogram is not None:
        for i, k in (value or {}).items():
            col.histogram.counts[int(i)] += int(k)
    elif key == "sum":
        col.sum = jsonable(value)
    elif key == "sum_sq":
        col.sum_sq = jsonable(value)
    elif key == "mean":
        col.mean = jsonable(value)
    elif key == "var":
        col.m2 = float(value) * (col.count - 1) if value is not None else 0.0
        col.std = sample_std(col.m2, col.count)
