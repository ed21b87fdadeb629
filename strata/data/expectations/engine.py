"""Running a suite over a DuckDB relation: one aggregate statement, then failure samples.

Every check of the suite is compiled into ONE SQL statement over the relation: the row-wise
checks and statistics share a single aggregate ``SELECT`` (``COUNT(*) FILTER (WHERE ...)``,
``AVG``, ``MEDIAN``, ...); checks that work per distinct value (uniqueness, the unique
proportion, and regex / set checks on text columns whose values repeat) add one grouped subquery
per column, which over dictionary-encoded Parquet text is several times cheaper than the
row-wise predicate. A custom SQL expectation runs its own query. Rows are then fetched
(``LIMIT sample_size``) only for expectations that failed, by an ``IN`` lookup of failing
values where the grouped subquery collected some. Nothing is loaded into pandas: DuckDB streams
the Parquet files, so the data may be larger than memory.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from strata.core.clock import utcnow
from strata.core.errors import InvalidInput
from strata.data.expectations import sql as q
from strata.data.expectations.plain import plain_error
from strata.data.expectations.report import (
    ExpectationResult,
    ValidationReport,
    ValidationStatistics,
)
from strata.data.expectations.suite import Expectation, Suite, parse_duration
from strata.data.expectations.values import as_utc, column_family, jsonable, start_of_day, within
from strata.data.sandbox import read_only_sql
from strata.data.sqltext import quote_ident


@dataclass
class _Outcome:
    success: bool
    observed: Any = None
    missing: int | None = None
    unexpected: int | None = None
    percent: float | None = None


@dataclass
class _Plan:
    exp: Expectation
    aliases: list[str] = field(default_factory=list)
    finish: Callable[[dict[str, Any], int], _Outcome] | None = None
    sample_where: str | None = None
    sample_values: str | None = None
    query: str | None = None


_GROUP_COUNT = "__strata_n"
# A text column whose first rows hold at most this share of distinct values is checked
# per distinct value (GROUP BY, then the predicate once per value): regexes and set lookups
# over dictionary-encoded Parquet text run ~5x faster that way. Only speed depends on it.
_PROBE_ROWS = 100_000
_GROUPED_MAX_DISTINCT_SHARE = 0.1


class _Aggregate:
    """The one aggregate SELECT: expressions are shared between expectations by text.

    Besides the row-wise aggregates, a column may get a grouped subquery: its distinct
    values with their row counts, over which uniqueness and per-value predicates are summed.
    """

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.exprs: dict[str, str] = {}
        self.grouped: dict[str, dict[str, str]] = {}

    def agg(self, plan: _Plan | None, expr: str) -> str:
        alias = self.exprs.setdefault(expr, f"a{len(self.exprs)}")
        if plan is not None:
            plan.aliases.append(alias)
        return alias

    def per_value(self, plan: _Plan, column: str, expr: str) -> str:
        """An aggregate over the column's distinct values (rows: the value, its row count)."""
        n = sum(len(e) for e in self.grouped.values())
        alias = self.grouped.setdefault(column, {}).setdefault(expr, f"g{n}")
        plan.aliases.append(alias)
        return alias

    def rows_where(self, plan: _Plan, column: str, cond: str, *, grouped: bool) -> str:
        """The number of rows where ``cond`` holds, counted row-wise or per distinct value."""
        if not grouped:
            return self.agg(plan, f"COUNT(*) FILTER (WHERE {cond})")
        return self.per_value(
            plan, column, f"COALESCE(SUM({_GROUP_COUNT}) FILTER (WHERE {cond}), 0)"
        )

    def sql(self, only: set[str] | None = None) -> str:
        aggs = [f"{e} AS {a}" for e, a in self.exprs.items() if only is None or a in only]
        # Derived tables, not CTEs: a CTE name would shadow a relation of the same name.
        parts = [f"(SELECT {', '.join(aggs)} FROM {self.rel}) AS _m"]
        for i, (column, exprs) in enumerate(self.grouped.items()):
            wanted = [f"{e} AS {a}" for e, a in exprs.items() if only is None or a in only]
            if wanted:
                col = quote_ident(column)
                parts.append(
                    f"(SELECT {', '.join(wanted)} FROM (SELECT {col}, COUNT(*) AS {_GROUP_COUNT} "
                    f"FROM {self.rel} GROUP BY {col}) AS _g) AS _c{i}"
                )
        return f"SELECT * FROM {', '.join(parts)}"

    def run(self, con: duckdb.DuckDBPyConnection, only: set[str] | None = None) -> dict[str, Any]:
        cur = con.execute(self.sql(only))
        row = cur.fetchone()
        assert row is not None  # an aggregate without GROUP BY returns exactly one row
        return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


def _low_cardinality(con: duckdb.DuckDBPyConnection, rel: str, columns: list[str]) -> set[str]:
    """The text columns whose first rows repeat values enough to check per distinct value."""
    if not columns:
        return set()
    cols = [quote_ident(c) for c in columns]
    parts = ", ".join(f"COUNT(DISTINCT {c}), COUNT({c})" for c in cols)
    row = con.execute(
        f"SELECT {parts} FROM (SELECT {', '.join(cols)} FROM {rel} LIMIT {_PROBE_ROWS})"
    ).fetchone()
    assert row is not None
    return {
        name
        for i, name in enumerate(columns)
        if row[2 * i] <= _GROUPED_MAX_DISTINCT_SHARE * max(int(row[2 * i + 1]), 1)
    }


def describe(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` of a table or view, in order; InvalidInput if unknown."""
    try:
        rows = con.execute(f"DESCRIBE {quote_ident(relation)}").fetchall()
    except duckdb.Error as exc:
        raise InvalidInput(
            f"relation {relation!r} is not a table or view of this DuckDB connection: "
            f"{str(exc).splitlines()[0]}",
            details={"relation": relation},
        ) from None
    return [(str(r[0]), str(r[1])) for r in rows]


def _map_outcome(n: int, considered: int, unexpected: int, mostly: float) -> _Outcome:
    # GE: vacuously true without rows to judge; success iff the passing share >= mostly.
    success = (
        True if n == 0 or considered == 0 else (considered - unexpected) / considered >= mostly
    )
    return _Outcome(
        success=bool(success),
        observed=(considered - unexpected) / considered if considered else None,
        missing=n - considered,
        unexpected=unexpected,
        percent=unexpected / considered * 100 if considered else None,
    )


def _plan_map(
    exp: Expectation, agg: _Aggregate, rel: str, grouped: set[str], sample_size: int
) -> _Plan:
    plan = _Plan(exp)
    mostly = float(exp.arg("mostly"))
    name = str(exp.kwargs.get("column", ""))
    col = quote_ident(name)
    if exp.type == q.NOT_NULL:
        nonnull = agg.agg(plan, f"COUNT({col})")

        def finish_nn(v: dict[str, Any], n: int) -> _Outcome:
            out = _map_outcome(n, n, n - int(v[nonnull]), mostly)
            out.missing = None  # GE reports no missing count for the null check itself
            return out

        plan.finish = finish_nn
        plan.sample_where = f"{col} IS NULL"
        return plan
    if exp.type == q.PAIR:
        considered = agg.agg(plan, f"COUNT(*) FILTER (WHERE {q.considered_condition(exp)})")
        failing = q.failure_condition(exp)
        assert failing is not None
        unexpected = agg.agg(plan, f"COUNT(*) FILTER (WHERE {failing})")
        plan.sample_where = failing
    else:
        considered = agg.agg(plan, f"COUNT({col})")
        if exp.type == q.UNIQUE:
            failing = f"{col} IS NOT NULL AND {_GROUP_COUNT} > 1"
            dupes = f"SELECT {col} FROM {rel} GROUP BY {col} HAVING COUNT(*) > 1"
            plan.sample_where = f"{col} IN ({dupes})"
        else:
            cond = q.failure_condition(exp)
            assert cond is not None
            failing = plan.sample_where = cond
        per_value = exp.type == q.UNIQUE or name in grouped
        unexpected = agg.rows_where(plan, name, failing, grouped=per_value)
        if per_value and sample_size > 0:
            # Some failing values, so that sampling rows is a cheap IN lookup, not a rescan
            # evaluating the check (e.g. a regex) on every row until enough rows fail.
            plan.sample_values = agg.per_value(
                plan, name, f"min({col}, {sample_size}) FILTER (WHERE {failing})"
            )

    def finish(v: dict[str, Any], n: int) -> _Outcome:
        return _map_outcome(n, int(v[considered]), int(v[unexpected]), mostly)

    plan.finish = finish
    return plan


_STATISTIC = {
    "expect_column_mean_to_be_between": "AVG({c})",
    "expect_column_median_to_be_between": "MEDIAN({c})",
    "expect_column_stdev_to_be_between": "STDDEV_SAMP({c})",
}
_TEMPORAL = ("TIMESTAMP", "TIMESTAMPTZ", "DATE")


def _plan_aggregate(exp: Expectation, agg: _Aggregate, types: dict[str, str]) -> _Plan:
    plan = _Plan(exp)
    bounds = {
        "lo": exp.arg("min_value"),
        "hi": exp.arg("max_value"),
        "strict_min": bool(exp.arg("strict_min")),
        "strict_max": bool(exp.arg("strict_max")),
    }

    def judged(value: Any, missing: int | None = None) -> _Outcome:
        ok = within(value, **bounds)
        return _Outcome(success=ok, observed=value, missing=missing)

    if exp.type == "expect_table_row_count_to_be_between":
        plan.finish = lambda v, n: judged(n)
        return plan
    col = quote_ident(exp.kwargs["column"])
    nonnull = agg.agg(plan, f"COUNT({col})")
    if exp.type == "expect_column_proportion_of_unique_values_to_be_between":
        # COUNT(DISTINCT) inside the big aggregate doubles its cost; per value it is cheap.
        distinct = agg.per_value(plan, exp.kwargs["column"], f"COUNT({col})")

        def finish_unique(v: dict[str, Any], n: int) -> _Outcome:
            nn = int(v[nonnull])
            return judged(int(v[distinct]) / nn if nn else None, n - nn)

        plan.finish = finish_unique
        return plan
    if exp.type == "expect_column_max_to_be_recent":
        family = column_family(types[exp.kwargs["column"]])
        expr = f"TRY_CAST({col} AS TIMESTAMPTZ)" if family == "VARCHAR" else col
        latest = agg.agg(plan, f"MAX({expr})")
        max_age = parse_duration(exp.kwargs["max_age"])

        def finish_recent(v: dict[str, Any], n: int) -> _Outcome:
            value = v[latest]
            missing = n - int(v[nonnull])
            if value is None:
                return _Outcome(success=False, observed=None, missing=missing)
            value = start_of_day(value)
            age = (utcnow() - as_utc(value)).total_seconds()
            return _Outcome(success=age <= max_age, observed=value, missing=missing)

        plan.finish = finish_recent
        return plan
    stat = agg.agg(plan, _STATISTIC[exp.type].format(c=col))
    plan.finish = lambda v, n: judged(v[stat], n - int(v[nonnull]))
    return plan


def _plan_schema(exp: Expectation, names: list[str], types: dict[str, str]) -> _Plan:
    plan = _Plan(exp)
    col = exp.kwargs["column"]
    if exp.type == "expect_column_to_exist":
        index = exp.arg("column_index")
        position = names.index(col) if col in names else None
        ok = position is not None and (index is None or position == index)
        plan.finish = lambda v, n: _Outcome(success=ok, observed=position)
        return plan
    actual = types[col]
    ok = q.type_matches(exp.kwargs["type_"], actual)
    plan.finish = lambda v, n: _Outcome(success=ok, observed=actual)
    return plan


def _check_suite(
    con: duckdb.DuckDBPyConnection, suite: Suite, relation: str, schema: list[tuple[str, str]]
) -> None:
    """Everything that can be wrong with the suite for this relation, before any scan."""
    names = [c for c, _ in schema]
    types = dict(schema)
    q.check_columns(suite, names, relation=relation)
    q.check_types(suite)
    for i, exp in enumerate(suite.expectations):
        if exp.type == q.REGEX:
            try:
                con.execute("SELECT regexp_matches('', $1)", [exp.kwargs["regex"]]).fetchall()
            except duckdb.Error as exc:
                raise InvalidInput(
                    f"expectation #{i + 1} {exp.type}: kwarg 'regex' {exp.kwargs['regex']!r} is "
                    f"not a valid (RE2) regular expression: {str(exc).splitlines()[0]}",
                    details={"expectation": exp.type, "kwarg": "regex"},
                ) from None
        if exp.type == "expect_column_max_to_be_recent":
            family = column_family(types[exp.kwargs["column"]])
            if family not in (*_TEMPORAL, "VARCHAR"):
                raise InvalidInput(
                    f"expectation #{i + 1} {exp.type}: column {exp.kwargs['column']!r} is "
                    f"{types[exp.kwargs['column']]}; expected a timestamp, a date or ISO text",
                    details={"expectation": exp.type, "column": exp.kwargs["column"]},
                )


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [{k: jsonable(v) for k, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _sample_filter(plan: _Plan, values: dict[str, Any]) -> str | None:
    """``col IN (<failing values>)`` when the scan collected some, else None."""
    failing = values.get(plan.sample_values) if plan.sample_values else None
    if not failing:
        return None
    try:
        literals = ", ".join(q.literal(v) for v in failing)
    except InvalidInput:  # a value without a literal form: filter with the check itself
        return None
    return f"{quote_ident(plan.exp.kwargs['column'])} IN ({literals})"


def _run_query_plan(
    con: duckdb.DuckDBPyConnection, plan: _Plan, sample_size: int
) -> tuple[_Outcome, list[dict[str, Any]]]:
    assert plan.query is not None
    # One SELECT, whatever the query smuggles after a ")" or ";" (it runs where the parts are
    # writable to DuckDB).
    counting = read_only_sql(f"SELECT COUNT(*) FROM ({plan.query}) AS _q", "query")
    count_row = con.execute(counting).fetchone()
    count = int(count_row[0]) if count_row else 0
    sample: list[dict[str, Any]] = []
    if count and sample_size > 0:
        sample = _rows(con.execute(f"SELECT * FROM ({plan.query}) AS _q LIMIT {sample_size}"))
    return _Outcome(success=count == 0, observed=count, unexpected=count), sample


def validate(
    con: duckdb.DuckDBPyConnection, relation: str, suite: Suite, *, sample_size: int = 20
) -> ValidationReport:
    """Run ``suite`` over the table or view ``relation`` of ``con``; results in suite order.

    Great Expectations' semantics: column-value checks ignore NULLs and ``mostly`` is a
    fraction of the non-null rows (of all rows for the null check); stdev is the sample
    stdev; the unique proportion is distinct non-null / non-null; the pair check skips a row
    only when both values are NULL and compares with strict ``>`` unless ``or_equal``. Up to
    ``sample_size`` unexpected rows (all columns, JSON-native values) are fetched for each
    expectation that failed. Raises InvalidInput, before scanning anything, for an unknown
    relation, a column that does not exist (listing the existing ones), an unknown type
    name, an invalid regex or a freshness check on a non-temporal column. A check that fails
    at run time (e.g. a bound that does not compare with the column's type) gets ``error``
    set and ``success`` false; the others still run.
    """
    started = time.perf_counter()
    if sample_size < 0:
        raise InvalidInput(f"sample_size must be >= 0, got {sample_size}")
    schema = describe(con, relation)
    _check_suite(con, suite, relation, schema)
    types = dict(schema)
    rel = quote_ident(relation)
    agg = _Aggregate(rel)
    count_alias = agg.agg(None, "COUNT(*)")
    grouped = _grouped_columns(con, rel, suite, types)
    plans = [_plan(exp, agg, rel, grouped, sample_size, schema) for exp in suite.expectations]
    values, errors = _scan(con, agg, count_alias, plans, relation)
    n = int(values[count_alias])
    results = [
        _result(con, plan, values, n, errors.get(i), rel, types, sample_size)
        for i, plan in enumerate(plans)
    ]
    return _report(suite.name, results, n, time.perf_counter() - started)


def _grouped_columns(
    con: duckdb.DuckDBPyConnection, rel: str, suite: Suite, types: dict[str, str]
) -> set[str]:
    """The columns checked per distinct value: those under a uniqueness check, and text
    columns under regex/set checks whose values repeat enough."""
    unique_cols = {e.kwargs["column"] for e in suite.expectations if e.type == q.UNIQUE}
    text_cols = {
        e.kwargs["column"]
        for e in suite.expectations
        if e.type in (q.REGEX, q.IN_SET)
        and column_family(types[e.kwargs["column"]]) == "VARCHAR"
        and e.kwargs["column"] not in unique_cols
    }
    try:
        return unique_cols | _low_cardinality(con, rel, sorted(text_cols))
    except duckdb.Error:
        return unique_cols


def _plan(
    exp: Expectation,
    agg: _Aggregate,
    rel: str,
    grouped: set[str],
    sample_size: int,
    schema: list[tuple[str, str]],
) -> _Plan:
    """How one expectation is answered: its aggregates in ``agg``, or its own query."""
    kind = exp.spec().kind
    if kind == "map":
        return _plan_map(exp, agg, rel, grouped, sample_size)
    if kind == "aggregate":
        return _plan_aggregate(exp, agg, dict(schema))
    if kind == "schema":
        return _plan_schema(exp, [c for c, _ in schema], dict(schema))
    query = str(exp.kwargs.get("query") or exp.kwargs.get("unexpected_rows_query"))
    return _Plan(exp, query=query.replace("{relation}", rel).replace("{batch}", rel))


def _scan(
    con: duckdb.DuckDBPyConnection,
    agg: _Aggregate,
    count_alias: str,
    plans: list[_Plan],
    relation: str,
) -> tuple[dict[str, Any], dict[int, str]]:
    """The aggregate values of every plan in one statement, and the errors of plans whose
    expressions could not run (each then run on its own to pin the error on it)."""
    errors: dict[int, str] = {}
    with contextlib.suppress(duckdb.Error):
        return agg.run(con), errors
    try:
        values = agg.run(con, {count_alias})
    except duckdb.Error as exc:
        raise InvalidInput(
            f"relation {relation!r} cannot be read: {_first_line(exc)}",
            details={"relation": relation},
        ) from None
    for i, plan in enumerate(plans):
        if not plan.aliases:
            continue
        try:
            values.update(agg.run(con, {count_alias, *plan.aliases}))
        except duckdb.Error as exc:
            errors[i] = _first_line(exc)
    return values, errors


def _result(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    values: dict[str, Any],
    n: int,
    error: str | None,
    rel: str,
    types: dict[str, str],
    sample_size: int,
) -> ExpectationResult:
    """One expectation's result: its outcome from the scanned values (or its own query),
    a sample of unexpected rows when it failed, and its error in plain words."""
    exp = plan.exp
    sample: list[dict[str, Any]] = []
    outcome = _Outcome(success=False)
    if error is None:
        try:
            if plan.query is not None:
                outcome, sample = _run_query_plan(con, plan, sample_size)
            else:
                assert plan.finish is not None
                outcome = plan.finish(values, n)
        except (duckdb.Error, InvalidInput, TypeError, ValueError) as exc:
            error = _first_line(exc)
            outcome = _Outcome(success=False)
    if (
        error is None
        and not outcome.success
        and plan.sample_where is not None
        and outcome.unexpected
        and sample_size > 0
    ):
        where = _sample_filter(plan, values) or plan.sample_where
        sample = _rows(con.execute(f"SELECT * FROM {rel} WHERE {where} LIMIT {sample_size}"))
    if error is not None:
        error = plain_error(exp.type, dict(exp.kwargs), types, error)
    return ExpectationResult(
        expectation_type=exp.type,
        kwargs=jsonable(exp.kwargs),
        meta=jsonable(exp.meta),
        success=outcome.success and error is None,
        observed_value=jsonable(outcome.observed),
        element_count=n,
        missing_count=outcome.missing,
        unexpected_count=outcome.unexpected,
        unexpected_percent=outcome.percent,
        unexpected_sample=sample,
        error=error,
    )


def _report(
    name: str, results: list[ExpectationResult], n: int, seconds: float
) -> ValidationReport:
    successful = sum(r.success for r in results)
    return ValidationReport(
        suite_name=name,
        success=successful == len(results),
        results=results,
        statistics=ValidationStatistics(
            evaluated=len(results),
            successful=successful,
            unsuccessful=len(results) - successful,
            success_percent=successful / len(results) * 100 if results else None,
        ),
        row_count=n,
        duration_s=seconds,
    )
