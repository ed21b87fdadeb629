"""The sandbox for SQL a user wrote: exactly one SELECT (DuckDB's own parser decides), run on
a connection that reads only its inputs with the configuration locked.

Pure DuckDB, no artifact store or database: the remote client's ``DataService.query`` and the
embedded service's transforms, expectations and expressions share it.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from strata.core.errors import InvalidInput
from strata.data.sqltext import sql_literal


def read_only_sql(sql: str, field: str = "sql") -> str:
    """``sql`` if it is exactly one SELECT statement (DuckDB's own parser decides), else
    InvalidInput naming ``field``.

    User SQL runs on a connection allowed to read its inputs' parts; DuckDB's
    ``allowed_paths`` grants writing them too, so a COPY, EXPORT or ATTACH (or a second
    statement smuggled after a ``;``) must never reach it. ``PIVOT`` as a statement parses as
    several statements: wrap it as ``SELECT * FROM (PIVOT ...)``.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidInput(
            f"{field} is not valid SQL: {str(exc).strip().splitlines()[0]}",
            details={"field": field},
        ) from None
    kinds = [s.type for s in statements]
    if kinds != [duckdb.StatementType.SELECT]:
        got = ", ".join(k.name for k in kinds) or "nothing"
        raise InvalidInput(
            f"{field} must be exactly one SELECT statement (read-only); got {got}. COPY, "
            "EXPORT, ATTACH and other statements are not allowed",
            details={"field": field, "statements": [k.name for k in kinds]},
        )
    return sql


def sandbox(
    con: duckdb.DuckDBPyConnection,
    locations: Sequence[str],
    directories: Sequence[str] = (),
) -> None:
    """Lock ``con`` down before it runs SQL a user wrote (transform SQL, custom expectations).

    From here on the connection may read only ``locations`` (the parts behind its views) and
    ``directories`` (e.g. its spill directory): no other files, no COPY TO, no ATTACH, no
    extension installs — and the lock cannot be lifted from SQL. Without it, a server user
    allowed to validate or transform could read any file the server can.
    """
    allowed: list[str] = []
    for loc in locations:
        allowed.append(loc)
        if "://" in loc:  # DuckDB normalises registered-filesystem URLs to scheme:///path
            allowed.append(loc.replace("://", ":///", 1))
    paths = ", ".join(sql_literal(p) for p in allowed)
    dirs = ", ".join(sql_literal(d.rstrip("/") + "/") for d in directories)
    con.execute(f"SET allowed_paths = [{paths}]")
    if dirs:
        con.execute(f"SET allowed_directories = [{dirs}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
