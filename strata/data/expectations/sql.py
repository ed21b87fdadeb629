"""Expectations compiled to DuckDB SQL: quoting, literals, type names, row-level conditions.

Each row-level (map) expectation becomes a boolean *failure condition* that is TRUE exactly
for the rows Great Expectations counts as unexpected: NULLs are never unexpected except for
the null check, and a column pair is skipped only as ``ignore_row_if`` says (default: both
NULL). The same conditions drive the counts in :func:`~strata.data.expectations.engine.validate`
and the quarantine reasons of :func:`row_failure_sql`, so the two always agree.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from strata.core.errors import InvalidInput
from strata.data.expectations.suite import Expectation, Suite
from strata.data.expectations.values import column_family
from strata.data.sqltext import quote_ident

NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
REGEX = "expect_column_values_to_match_regex"
UNIQUE = "expect_column_values_to_be_unique"
OF_TYPE = "expect_column_values_to_be_of_type"
PAIR = "expect_column_pair_values_a_to_be_greater_than_b"


def literal(value: Any) -> str:
    """A SQL literal for a suite value (text, number, boolean, date, datetime or None).

    Raises InvalidInput for values that have no literal form.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "'nan'::DOUBLE"
        if math.isinf(value):
            return "'inf'::DOUBLE" if value > 0 else "'-inf'::DOUBLE"
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, dt.datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo is not None else "TIMESTAMP"
        return f"{kind} '{value.isoformat()}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    raise InvalidInput(f"value {value!r} of type {type(value).__name__} cannot be used in a check")


# --- type names -----------------------------------------------------------------------------

# Lower-case spellings (DuckDB, Arrow, numpy/pandas) -> DuckDB type family. Sized integer
# names follow Arrow/numpy (int8 = 1 byte = TINYINT), not DuckDB's byte-counted INT8 alias.
_TYPE_ALIASES: dict[str, str] = {}
for _family, _names in {
    "BOOLEAN": "bool boolean logical bool_",
    "TINYINT": "tinyint int8 int1",
    "SMALLINT": "smallint int16 int2 short",
    "INTEGER": "integer int int32 int4 signed",
    "BIGINT": "bigint int64 long",
    "HUGEINT": "hugeint int128",
    "UTINYINT": "utinyint uint8",
    "USMALLINT": "usmallint uint16",
    "UINTEGER": "uinteger uint32",
    "UBIGINT": "ubigint uint64",
    "UHUGEINT": "uhugeint uint128",
    "FLOAT": "float float32 float4 real",
    "DOUBLE": "double float64 float8 double_precision",
    "DECIMAL": "decimal numeric decimal128",
    "VARCHAR": "varchar string str utf8 large_string large_utf8 string_view text char bpchar "
    "object",
    "BLOB": "blob binary large_binary bytea bytes varbinary",
    "DATE": "date date32 date32[day] date64 date64[ms]",
    "TIME": "time time64[us] time64[ns] time32[ms] time32[s]",
    "TIMESTAMP": "timestamp datetime datetime64 timestamp_s timestamp_ms timestamp_ns timestamp_us",
    "TIMESTAMPTZ": "timestamptz timestamp_with_time_zone",
    "INTERVAL": "interval duration timedelta timedelta64",
    "UUID": "uuid",
    "ENUM": "enum category dictionary",
}.items():
    for _name in _names.split():
        _TYPE_ALIASES[_name] = _family

_PARAM_TS = re.compile(r"^(?:timestamp|datetime64)\[(?:s|ms|us|ns)(?:,\s*(?:tz=)?(.+))?\]$")


def type_family(type_name: str) -> str:
    """The DuckDB type family a user type name means, e.g. ``int64`` -> ``BIGINT``.

    Accepts DuckDB names (``BIGINT``, ``DECIMAL(18,3)``), Arrow names (``int64``, ``string``,
    ``timestamp[us, tz=UTC]``) and numpy/pandas names (``float64``, ``object``,
    ``datetime64[ns]``). Parameterised decimals keep their parameters; nested types (``INTEGER[]``,
    ``STRUCT(...)``) are matched on their full DuckDB spelling. Raises ValueError if unknown.
    """
    raw = " ".join(type_name.strip().split())
    low = (
        raw.lower()
        .replace(" with time zone", "_with_time_zone")
        .replace(" precision", "_precision")
    )
    if low in _TYPE_ALIASES:
        return _TYPE_ALIASES[low]
    match = _PARAM_TS.match(low)
    if match:
        return "TIMESTAMPTZ" if match.group(1) else "TIMESTAMP"
    match = re.match(r"^(?:decimal|numeric|decimal128)\((\d+),\s*(\d+)\)$", low)
    if match:
        return f"DECIMAL({match.group(1)},{match.group(2)})"
    if raw.endswith("[]") or raw.upper().startswith(("STRUCT(", "MAP(", "UNION(", "LIST(")):
        return raw.upper()
    raise ValueError(f"unknown type name {type_name!r}")


def type_matches(type_name: str, duckdb_type: str) -> bool:
    """Whether a column of ``duckdb_type`` is of the user's ``type_name`` (see type_family)."""
    want = type_family(type_name)
    have = column_family(duckdb_type)
    if want == "DECIMAL":
        return have.startswith("DECIMAL")
    return want == have


def _cast_target(family: str) -> str | None:
    """The DuckDB type a value must cast to for the row-level of_type check."""
    if family == "ENUM" or family.endswith("]") or family.startswith(("STRUCT", "MAP", "UNION")):
        return None
    return "DOUBLE" if family == "DECIMAL" else family


# --- row-level conditions ---------------------------------------------------------------------


def _bounds_condition(col: str, exp: Expectation) -> str:
    parts = []
    lo, hi = exp.arg("min_value"), exp.arg("max_value")
    if lo is not None:
        parts.append(f"{col} {'>' if exp.arg('strict_min') else '>='} {literal(lo)}")
    if hi is not None:
        parts.append(f"{col} {'<' if exp.arg('strict_max') else '<='} {literal(hi)}")
    return " AND ".join(parts) if parts else "TRUE"


def _pair_skip(exp: Expectation) -> str:
    a, b = quote_ident(exp.kwargs["column_A"]), quote_ident(exp.kwargs["column_B"])
    mode = exp.arg("ignore_row_if")
    if mode == "either_value_is_missing":
        return f"({a} IS NULL OR {b} IS NULL)"
    if mode == "neither":
        return "FALSE"
    return f"({a} IS NULL AND {b} IS NULL)"


def considered_condition(exp: Expectation) -> str:
    """TRUE for the rows a map expectation judges (the denominator of ``mostly``)."""
    if exp.type == NOT_NULL:
        return "TRUE"
    if exp.type == PAIR:
        a, b = quote_ident(exp.kwargs["column_A"]), quote_ident(exp.kwargs["column_B"])
        mode = exp.arg("ignore_row_if")
        if mode == "either_value_is_missing":
            return f"({a} IS NOT NULL AND {b} IS NOT NULL)"
        if mode == "neither":
            return "TRUE"
        return f"({a} IS NOT NULL OR {b} IS NOT NULL)"
    return f"{quote_ident(exp.kwargs['column'])} IS NOT NULL"


def failure_condition(exp: Expectation) -> str | None:
    """TRUE exactly for the rows GE counts as unexpected; None if not decidable per row.

    ``unique`` needs the other rows and ``of_type`` is a column-level check in ``validate``,
    so neither has a failure condition here (see :func:`row_reason_sql` for of_type).
    """
    t = exp.type
    if t == PAIR:
        a, b = quote_ident(exp.kwargs["column_A"]), quote_ident(exp.kwargs["column_B"])
        op = ">=" if exp.arg("or_equal") else ">"
        # A NULL comparison fails the row unless the row is skipped.
        return f"(NOT COALESCE({a} {op} {b}, {_pair_skip(exp)}))"
    if t not in (NOT_NULL, BETWEEN, IN_SET, REGEX):
        return None
    col = quote_ident(exp.kwargs["column"])
    if t == NOT_NULL:
        return f"({col} IS NULL)"
    if t == BETWEEN:
        return f"(NOT ({_bounds_condition(col, exp)}))"
    if t == IN_SET:
        values = [v for v in exp.kwargs["value_set"] if v is not None]
        if not values:
            return f"({col} IS NOT NULL)"
        return f"(NOT ({col} IN ({', '.join(literal(v) for v in values)})))"
    return f"(NOT regexp_matches(CAST({col} AS VARCHAR), {literal(exp.kwargs['regex'])}))"


def _short_list(values: Iterable[Any], limit: int = 10) -> str:
    items = [str(v) for v in values]
    shown = ", ".join(items[:limit])
    return f"[{shown}, ... ({len(items)} values)]" if len(items) > limit else f"[{shown}]"


def _text(col: str) -> str:
    return f"COALESCE(CAST({col} AS VARCHAR), 'NULL')"


def row_reason_sql(exp: Expectation) -> str | None:
    """``CASE WHEN <row fails> THEN '<label>: <why>' END`` for a row-level expectation, or None.

    ``mostly`` plays no part here: every row that breaks the rule gets a reason.
    """
    prefix = literal(exp.label() + ": ")
    t = exp.type
    if t == OF_TYPE:
        family = type_family(exp.kwargs["type_"])
        target = _cast_target(family)
        if target is None:
            return None
        col = quote_ident(exp.kwargs["column"])
        why = literal(f" is not a valid {target}")
        return (
            f"CASE WHEN {col} IS NOT NULL AND TRY_CAST({col} AS {target}) IS NULL "
            f"THEN {prefix} || {_text(col)} || {why} END"
        )
    cond = failure_condition(exp)
    if cond is None:
        return None
    if t == NOT_NULL:
        return f"CASE WHEN {cond} THEN {prefix} || 'null' END"
    if t == PAIR:
        a, b = quote_ident(exp.kwargs["column_A"]), quote_ident(exp.kwargs["column_B"])
        op = literal(" is not >= " if exp.arg("or_equal") else " is not > ")
        return f"CASE WHEN {cond} THEN {prefix} || {_text(a)} || {op} || {_text(b)} END"
    col = quote_ident(exp.kwargs["column"])
    if t == BETWEEN:
        lo, hi = exp.arg("min_value"), exp.arg("max_value")
        left = ("(" if exp.arg("strict_min") else "[") + ("-inf" if lo is None else str(lo))
        right = ("inf" if hi is None else str(hi)) + (")" if exp.arg("strict_max") else "]")
        why = literal(f" not in {left}, {right}")
    elif t == IN_SET:
        why = literal(" not in " + _short_list(exp.kwargs["value_set"]))
    else:
        why = literal(f" does not match {exp.kwargs['regex']}")
    return f"CASE WHEN {cond} THEN {prefix} || {_text(col)} || {why} END"


def check_columns(suite: Suite, columns: Sequence[str], *, relation: str | None = None) -> None:
    """Raise InvalidInput if an expectation reads a column that is not in ``columns``.

    ``expect_column_to_exist`` is exempt: a missing column is its answer, not an error.
    """
    known = set(columns)
    for i, exp in enumerate(suite.expectations):
        if exp.type == "expect_column_to_exist":
            continue
        for col in exp.columns():
            if col not in known:
                where = f"relation {relation!r}" if relation else "the data"
                raise InvalidInput(
                    f"expectation #{i + 1} {exp.type}: column {col!r} does not exist in {where}; "
                    f"existing columns: {', '.join(columns)}",
                    details={"column": col, "expectation": exp.type, "columns": list(columns)},
                )


def check_types(suite: Suite) -> None:
    """Raise InvalidInput for an of_type expectation whose ``type_`` names no known type."""
    for i, exp in enumerate(suite.expectations):
        if exp.type == OF_TYPE:
            try:
                type_family(exp.kwargs["type_"])
            except ValueError:
                raise InvalidInput(
                    f"expectation #{i + 1} {exp.type}: kwarg 'type_' {exp.kwargs['type_']!r} is "
                    "not a known type name; use a DuckDB (BIGINT, DOUBLE, VARCHAR, TIMESTAMP, "
                    "...), Arrow (int64, double, string, timestamp[us]) or numpy name (float64)",
                    details={"expectation": exp.type, "kwarg": "type_"},
                ) from None


def row_failure_sql(suite: Suite, columns: list[str]) -> str | None:
    """A SQL expression over one row: why it fails the suite's row-level expectations, or NULL.

    Columns are referenced by quoted name, so use it as ``SELECT *, <expr> AS _reason FROM
    rel``. Row-level expectations: not_null, between, in_set, match_regex, of_type (a value
    that cannot be cast to ``type_``) and the column pair check. Several reasons are joined
    with ``"; "`` in suite order. ``mostly`` is ignored: every breaking row gets a reason.
    Aggregate expectations (row count, mean, median, stdev, unique, unique proportion,
    freshness, column existence, custom SQL) have no row-level form and are skipped.
    Returns None when the suite has no row-level expectation. Raises InvalidInput when an
    expectation names a column not in ``columns`` (listing them).
    """
    check_columns(suite, columns)
    check_types(suite)
    reasons = [r for exp in suite.expectations if (r := row_reason_sql(exp)) is not None]
    if not reasons:
        return None
    if len(reasons) == 1:
        return reasons[0]
    return "NULLIF(concat_ws('; ', " + ", ".join(reasons) + "), '')"
