"""Data validation with Great Expectations' names and semantics, executed as DuckDB SQL.

Column-value checks ignore NULLs and ``mostly`` is the fraction of non-null rows that must
pass (of all rows for the null check); see :func:`validate` for the execution and
:func:`row_failure_sql` for the per-row reasons used by quarantine.

Supported expectations (GE names, GE answers):

- ``expect_column_to_exist`` (column, column_index)
- ``expect_column_values_to_not_be_null`` (column, mostly)
- ``expect_column_values_to_be_between`` (column, min_value, max_value, strict_min,
  strict_max, mostly)
- ``expect_column_values_to_be_in_set`` (column, value_set, mostly)
- ``expect_column_values_to_match_regex`` (column, regex [RE2, search semantics], mostly)
- ``expect_column_values_to_be_unique`` (column, mostly): every row of a repeated value counts
- ``expect_column_values_to_be_of_type`` (column, type_): the column's type, named the
  DuckDB, Arrow or numpy way (``BIGINT`` = ``int64``; ``int8`` is Arrow's 1-byte int);
  in quarantine (``row_failure_sql``) a row fails when its value cannot be cast to it
- ``expect_table_row_count_to_be_between`` (min_value, max_value, strict_min, strict_max)
- ``expect_column_mean_to_be_between``, ``expect_column_median_to_be_between``,
  ``expect_column_stdev_to_be_between`` (sample stdev),
  ``expect_column_proportion_of_unique_values_to_be_between`` (distinct non-null / non-null)
- ``expect_column_pair_values_a_to_be_greater_than_b`` (column_A, column_B, or_equal,
  ignore_row_if, mostly)
- ``expect_column_max_to_be_recent`` (column, max_age): Strata's freshness check — the
  latest value of a timestamp/date/ISO-text column is at most ``max_age`` old (seconds or
  ``"90s"``, ``"15m"``, ``"2h"``, ``"3d"``, ``"1w"``, combinable as ``"1d12h"``); naive
  timestamps are UTC, a date counts as its midnight UTC.
- ``expect_sql_query_to_return_no_rows`` (query): custom SQL; ``{relation}`` in the query
  is replaced by the relation being validated; every row it returns is unexpected. GE's
  ``unexpected_rows_expectation`` (unexpected_rows_query, ``{batch}`` placeholder) is the
  same check under GE's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.core.lazy import lazy_attributes

if TYPE_CHECKING:
    from strata.data.expectations.engine import describe, validate
    from strata.data.expectations.report import (
        ExpectationResult,
        ValidationReport,
        ValidationStatistics,
    )
    from strata.data.expectations.sql import row_failure_sql, type_family
    from strata.data.expectations.suite import (
        Expectation,
        Suite,
        load_suite,
        parse_duration,
        supported_expectations,
    )

# Each name's module is imported on first use (PEP 562), so importing one submodule (a remote
# client reading the pure models) does not load the DuckDB machinery beside it.
_HOME = {
    "Expectation": "strata.data.expectations.suite",
    "ExpectationResult": "strata.data.expectations.report",
    "Suite": "strata.data.expectations.suite",
    "ValidationReport": "strata.data.expectations.report",
    "ValidationStatistics": "strata.data.expectations.report",
    "describe": "strata.data.expectations.engine",
    "load_suite": "strata.data.expectations.suite",
    "parse_duration": "strata.data.expectations.suite",
    "row_failure_sql": "strata.data.expectations.sql",
    "supported_expectations": "strata.data.expectations.suite",
    "type_family": "strata.data.expectations.sql",
    "validate": "strata.data.expectations.engine",
}


__getattr__ = lazy_attributes(__name__, _HOME)


__all__ = [
    "Expectation",
    "ExpectationResult",
    "Suite",
    "ValidationReport",
    "ValidationStatistics",
    "describe",
    "load_suite",
    "parse_duration",
    "row_failure_sql",
    "supported_expectations",
    "type_family",
    "validate",
]
