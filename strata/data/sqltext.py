"""DuckDB SQL text: literals, identifiers and Parquet scans over a version's files.

Pure string building (no connection is opened here), shared by the embedded service, the
remote client and the expectation compiler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


def sql_literal(value: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A DuckDB identifier, double-quoted (any name is safe, quotes are doubled)."""
    return '"' + name.replace('"', '""') + '"'


def parquet_scan(locations: Sequence[str], **options: bool) -> str:
    """A ``read_parquet([...])`` table function call over ``locations``."""
    files = ", ".join(sql_literal(loc) for loc in locations)
    extra = "".join(f", {k} = {'true' if v else 'false'}" for k, v in options.items())
    return f"read_parquet([{files}]{extra})"


def create_view(
    con: duckdb.DuckDBPyConnection, view: str, locations: Sequence[str], **options: bool
) -> None:
    con.execute(
        f"CREATE OR REPLACE VIEW {quote_ident(view)} AS SELECT * FROM "
        f"{parquet_scan(locations, **options)}"
    )
