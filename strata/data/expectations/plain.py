"""Expectation failures in plain words: a suite that does not fit a column's type gets a
sentence naming the expectation, the column, its type and what to change — never DuckDB's
``Binder Error: ...`` text."""

from __future__ import annotations

from typing import Any

_NOT_ARGUMENTS = {"column", "mostly", "result_format", "meta"}

_TEXT = ("VARCHAR", "CHAR", "TEXT", "STRING", "ENUM")
_NUMBER = ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC", "HUGEINT", "UBIGINT")
_TIME = ("DATE", "TIME", "TIMESTAMP")


def kind_of(duckdb_type: str) -> str:
    """``text``, ``number``, ``time``, ``true/false`` or the type itself, for people."""
    t = duckdb_type.upper()
    if t.startswith(_TEXT):
        return "text"
    if t == "BOOLEAN":
        return "true/false"
    if t.startswith(_TIME):
        return "dates/times"
    if any(n in t for n in _NUMBER):
        return "numbers"
    return t


def plain_error(exp_type: str, kwargs: dict[str, Any], types: dict[str, str], raw: str) -> str:
    """The message for an expectation that could not run on the data."""
    column = kwargs.get("column")
    if not isinstance(column, str) or column not in types:
        # Not a type mismatch on a column (custom SQL, a permission refusal): the engine's
        # own words say what went wrong with the user's query.
        return f"{exp_type} could not run: {raw}"
    col_type = types[column]
    args = {k: v for k, v in kwargs.items() if k not in _NOT_ARGUMENTS and v is not None}
    head = f"{exp_type} cannot check column {column!r}: it holds {kind_of(col_type)} ({col_type})"
    if "No function matches" in raw or not args:
        return (
            f"{head}, for which this expectation is not defined. Use an expectation for "
            f"{kind_of(col_type)}, or ingest the column as the type it needs."
        )
    given = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return (
        f"{head}, and {given} cannot be compared with {kind_of(col_type)}. Give values of the "
        "column's type, or ingest the column as the type the expectation compares with."
    )
