"""Point-in-time retrieval on all 336,776 flights against a plain DuckDB ASOF reference:
the same rows, in the same order, with the same values; nothing lost, nothing merged."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa

from strata.client import Client
from strata.core.config import Settings

from .conftest import FLIGHT_DEFS, WEATHER_FEATURES, flights, planes, weather


def reference(entities: pd.DataFrame) -> pa.Table:
    """What the retrieval must return, written directly in DuckDB."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("e_raw", entities)
    con.register("w_raw", weather)
    con.register("p", planes)
    feats = ", ".join(WEATHER_FEATURES)
    ttl_feats = ", ".join(
        f"CASE WHEN w.ts >= e.event_timestamp - INTERVAL 6 HOUR THEN w.{f} END AS {f}"
        for f in WEATHER_FEATURES
    )
    sql = f"""
        WITH e AS (SELECT *, row_number() OVER () AS rn FROM e_raw),
             w AS (SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS ts, {feats} FROM w_raw)
        SELECT e.* EXCLUDE (rn), {ttl_feats}, p.seats, CAST(p.year AS DOUBLE) AS year
        FROM e
        ASOF LEFT JOIN w ON e.origin = w.origin AND e.event_timestamp >= w.ts
        LEFT JOIN p ON e.tailnum = p.tailnum
        ORDER BY e.rn
    """
    return con.sql(sql).to_arrow_table()


def test_all_flights_match_the_duckdb_reference(tmp_path: object) -> None:
    settings = Settings(home=f"{tmp_path}/home")  # type: ignore[arg-type]
    with Client("", settings=settings) as client:
        client.data.ingest(weather, "weather")
        client.data.ingest(planes, "planes")
        client.features.apply(FLIGHT_DEFS)
        entities = flights[["origin", "tailnum", "flight", "arr_delay"]].copy()
        # a minute after the scheduled hour: some flights see the hour's reading, the
        # first flights of a gap see none within 6 h
        entities["event_timestamp"] = pd.to_datetime(flights["time_hour"], utc=True) + pd.Timedelta(
            minutes=1
        )
        got = client.features.get_historical_features(entities, "delay_model")
    want = reference(entities)
    assert got.num_rows == want.num_rows == len(flights)  # nothing lost, nothing merged
    assert got.column_names == want.column_names
    for name in want.column_names:
        a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
        mismatches = sum(1 for x, y in zip(a, b, strict=True) if x != y and not (x != x and y != y))
        assert mismatches == 0, (name, mismatches)
    temps = got.column("temp")
    assert 0 < temps.null_count < len(flights) // 10  # some rows really have no reading
    assert got.column("seats").null_count > 0  # tail numbers without a plane are kept
