"""User-written scalar SQL expressions: checked with DuckDB's own parser, evaluated sandboxed.

A training job's target (``arr_delay > 15``) and an on-demand feature (``dep_delay /
nullif(distance, 0)``) are expressions a user writes and another process runs. Before it
runs, :func:`check_expression` confirms through DuckDB's parser (``json_serialize_sql``)
that the text is exactly one scalar expression (no FROM, WHERE, subquery, table function,
CTE or second statement) reading only known columns. :func:`evaluate` then runs it on a
connection that holds only the given rows, with external access off and the configuration
locked (the data layer's sandbox settings).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from strata.core.errors import InvalidInput

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


def columns_error(field: str, name: str, available: list[str]) -> InvalidInput:
    close = difflib.get_close_matches(name, available, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return InvalidInput(
        f"Unknown {field} column {name!r}.{hint} Available columns: {', '.join(available)}",
        details={"field": field, "column": name, "columns": available},
    )


def _walk(node: Any, refs: set[str], field: str) -> None:
    if isinstance(node, dict):
        cls = node.get("class")
        if cls == "SUBQUERY" or node.get("type") in ("SUBQUERY", "TABLE_FUNCTION"):
            raise InvalidInput(
                f"{field} must be a scalar expression over the row's columns; subqueries "
                "and table functions are not allowed",
                details={"field": field},
            )
        if cls == "COLUMN_REF":
            refs.add(str(node["column_names"][-1]))
        for value in node.values():
            _walk(value, refs, field)
    elif isinstance(node, list):
        for item in node:
            _walk(item, refs, field)


def check_expression(
    sql: str, available: list[str], *, field: str = "sql", example: str = "'arr_delay > 15'"
) -> list[str]:
    """The columns ``sql`` reads, once DuckDB's parser has confirmed it is exactly one scalar
    expression over ``available``; InvalidInput naming ``field`` otherwise."""
    import duckdb

    if not isinstance(sql, str) or not sql.strip():
        raise InvalidInput(f"{field} must be a SQL expression", details={"field": field})
    con = duckdb.connect(":memory:")
    try:
        text = con.execute("SELECT json_serialize_sql($1)", [f"SELECT {sql}"]).fetchall()[0][0]
    finally:
        con.close()
    tree = json.loads(text)
    if tree.get("error"):
        raise InvalidInput(
            f"{field} is not a valid SQL expression: {tree.get('error_message', '')}",
            details={"field": field},
        )
    statements = tree.get("statements", [])
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    clauses = ("where_clause", "having", "qualify", "sample")
    if (
        len(statements) != 1
        or node.get("type") != "SELECT_NODE"
        or len(node.get("select_list", [])) != 1
        or (node.get("from_table") or {}).get("type", "EMPTY") != "EMPTY"
        or any(node.get(c) for c in clauses)
        or node.get("group_expressions")
        or node.get("modifiers")
        or (node.get("cte_map") or {}).get("map")
    ):
        raise InvalidInput(
            f"{field} must be one scalar SQL expression over the row's columns, such as "
            f"{example} (no FROM, WHERE, ';' or second statement)",
            details={"field": field},
        )
    refs: set[str] = set()
    _walk(node["select_list"], refs, field)
    for name in sorted(refs):
        if name not in available:
            raise columns_error(field, name, available)
    return sorted(refs)


def sandbox() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that reads nothing outside what is registered in it."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def evaluate(
    table: pa.Table | pa.RecordBatch,
    expressions: Mapping[str, tuple[str, str | None]],
    *,
    field: str = "sql",
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """``{output: (sql, duckdb_type or None)}`` evaluated per row of ``table`` on a sandboxed
    connection holding only ``table``: one column per output, in ``table``'s row order.
    ``con`` reuses a connection made by :func:`sandbox`. An evaluation error (a type that
    does not cast, an unknown function) is InvalidInput naming ``field``."""
    import duckdb

    own = con is None
    con = con or sandbox()
    select = []
    for name, (sql, type_name) in expressions.items():
        # Newlines keep a trailing "-- comment" inside the parentheses it came in.
        value = f"(\n{sql}\n)"
        if type_name:
            value = f"CAST({value} AS {type_name})"
        select.append(f'{value} AS "{name.replace(chr(34), chr(34) * 2)}"')
    query = f"SELECT {', '.join(select)} FROM __strata_rows"
    try:
        if len(duckdb.extract_statements(query)) != 1:
            raise InvalidInput(f"{field} must be one expression", details={"field": field})
        con.register("__strata_rows", table)
        try:
            return con.sql(query).to_arrow_table()
        finally:
            con.unregister("__strata_rows")
    except duckdb.Error as exc:
        raise InvalidInput(
            f"{field} could not be evaluated: {str(exc).strip().splitlines()[0]}",
            details={"field": field},
        ) from None
    finally:
        if own:
            con.close()


def run_select(sql: str, tables: Mapping[str, pa.Table], *, limit: int | None = None) -> pa.Table:
    """A user's SELECT over ``tables`` (registered as views by name) on a sandboxed
    connection: exactly one SELECT (DuckDB's parser decides), nothing else readable.
    InvalidInput carries DuckDB's message and the view names."""
    import duckdb

    from strata.data.sandbox import read_only_sql

    read_only_sql(sql)
    query = sql if limit is None else f"SELECT * FROM (\n{sql}\n) LIMIT {int(limit)}"
    con = sandbox()
    try:
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(query).to_arrow_table()
    except duckdb.Error as exc:
        raise InvalidInput(
            f"The SQL failed: {str(exc).strip().splitlines()[0]} (inputs are views named "
            f"{', '.join(repr(a) for a in tables)})",
            details={"field": "sql"},
        ) from None
    finally:
        con.close()
