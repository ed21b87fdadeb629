"""Sketches from DuckDB: one aggregate query per column over any relation (Parquet parts of a
dataset version, a prediction-log window, an Arrow table), computed out of core by DuckDB.

A column's query reads only that column (Parquet is columnar) and returns its distinct
values with counts; nothing goes through Python row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np

from strata.data.sqltext import quote_ident
from strata.monitoring.sketch import EXACT_MAX, OTHER, Sketch, bucket_sql, from_counts

_INTEGER = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
_FLOAT = {"FLOAT", "DOUBLE", "REAL"}
_TEXT = {"VARCHAR", "BOOLEAN", "ENUM", "UUID"}


def storage_kind(duckdb_type: str) -> str | None:
    """``integer``, ``float``, ``text`` or None (temporal, nested...: not tested by default)."""
    base = duckdb_type.split("(")[0].upper().strip()
    if base in _INTEGER:
        return "integer"
    if base in _FLOAT or base.startswith("DECIMAL"):
        return "float"
    if base in _TEXT or base.startswith("ENUM"):
        return "text"
    return None


def schema(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    """Column name → DuckDB type of the SQL ``source`` (a FROM expression)."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def sketch_column(
    con: duckdb.DuckDBPyConnection, source: str, column: str, duckdb_type: str
) -> Sketch:
    """The sketch of ``column`` in ``source`` (numeric for integer/float storage, else text)."""
    kind = storage_kind(duckdb_type) or "text"
    col = quote_ident(column)
    if kind == "text":
        return _categorical(con, source, col)
    expr = f"CAST({col} AS DOUBLE)"
    finite = f"CASE WHEN isfinite({expr}) THEN {expr} END"
    rows = con.execute(
        f"SELECT v, count(*) AS n FROM (SELECT {finite} AS v FROM {source}) GROUP BY v"
    ).fetchnumpy()
    values, counts = _split_nulls(rows)
    if len(values[0]) <= EXACT_MAX:
        return Sketch(True, *_sorted(values[0], counts[0]), counts[1], True, kind == "integer")
    rows = con.execute(
        f"SELECT {bucket_sql('v')} AS b, count(*) AS n FROM "
        f"(SELECT {finite} AS v FROM {source}) WHERE v IS NOT NULL GROUP BY b"
    ).fetchnumpy()
    return from_counts(
        True,
        np.asarray(rows["b"], dtype=np.float64),
        np.asarray(rows["n"], dtype=np.int64),
        nulls=counts[1],
        exact=False,
        integral=kind == "integer",
    )


def _split_nulls(
    rows: dict[str, Any],
) -> tuple[tuple[np.ndarray, None], tuple[np.ndarray, int]]:
    raw = rows["v"]
    counts = np.asarray(rows["n"], dtype=np.int64)
    mask = np.ma.getmaskarray(raw) if isinstance(raw, np.ma.MaskedArray) else _none_mask(raw)
    nulls = int(counts[mask].sum())
    data = np.ma.getdata(raw)[~mask] if isinstance(raw, np.ma.MaskedArray) else raw[~mask]
    return (data, None), (counts[~mask], nulls)


def _none_mask(raw: np.ndarray) -> np.ndarray:
    if raw.dtype == object:
        return np.fromiter((v is None for v in raw), dtype=bool, count=len(raw))
    return np.zeros(len(raw), dtype=bool)


def _sorted(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    return values[order], counts[order]


def _categorical(con: duckdb.DuckDBPyConnection, source: str, col: str) -> Sketch:
    rows = con.execute(
        f"SELECT CAST({col} AS VARCHAR) AS v, count(*) AS n FROM {source} GROUP BY v"
    ).fetchnumpy()
    (values, _), (counts, nulls) = _split_nulls(rows)
    values = np.asarray(values, dtype=object)
    exact = len(values) <= EXACT_MAX
    if not exact:  # keep the most frequent values, the rest as one
        top = np.argsort(-counts, kind="stable")
        rest = int(counts[top[EXACT_MAX:]].sum())
        values = np.concatenate([values[top[:EXACT_MAX]], np.array([OTHER], dtype=object)])
        counts = np.concatenate([counts[top[:EXACT_MAX]], [rest]])
    order = np.argsort(values, kind="stable")
    return Sketch(False, values[order], counts[order], nulls, exact, False)


def sketch_source(
    con: duckdb.DuckDBPyConnection, source: str, columns: Sequence[str] | None = None
) -> tuple[int, dict[str, Sketch], dict[str, str]]:
    """(rows, sketches by column, types by column) of ``source``; with ``columns``, only
    those that exist (the caller reports the others). Temporal and nested columns are
    skipped unless named."""
    types = schema(con, source)
    row = con.execute(f"SELECT count(*) FROM {source}").fetchone()
    rows = int(row[0]) if row else 0
    wanted = [c for c in columns if c in types] if columns else list(types)
    sketches: dict[str, Sketch] = {}
    for name in wanted:
        if storage_kind(types[name]) is None and not columns:
            continue
        sketches[name] = sketch_column(con, source, name, types[name])
    return rows, sketches, types
