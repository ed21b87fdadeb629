"""Point-in-time joins as one DuckDB query over the views' Parquet parts, out of core.

For each entity row (its join keys and its timestamp) and each time-series view, the query
takes the latest view row with ``event_ts <= the row's ts`` (an ``ASOF LEFT JOIN``); a match
older than the view's TTL gives nulls. Ties on the event time go to the row with the latest
created timestamp (the view's rows are de-duplicated first). Static views are a plain
``LEFT JOIN`` on the keys. Entity rows without a match are kept with nulls, duplicate entity
rows are kept, every other entity column passes through, and the output keeps the entity
rows' order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from strata.core.errors import InvalidInput
from strata.features.models import DUCKDB_TYPES, FeatureView

ROW_COL = "__strata_row"
TS_COL = "__strata_ts"
#: Strings with a UTC offset (or Z) at the end, what a timestamp string must carry.
OFFSET_RE = r"(Z|z|[+-]\d\d(:?\d\d)?)$"


def q(name: str) -> str:
    """A quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class ViewJoin:
    """One view in a retrieval: the relation holding its rows and the features wanted."""

    view: FeatureView
    relation: str  # a DuckDB view name over the source version
    join_keys: list[str]
    features: list[str]  # feature names of the view
    output_names: list[str]  # column names in the result


def timestamp_expr(column: str, type_name: str, *, assume_utc: bool, what: str) -> str:
    """SQL turning a column into TIMESTAMPTZ (UTC), refusing naive values unless
    ``assume_utc``. ``type_name`` is the column's DuckDB type."""
    t = type_name.upper()
    col = q(column)
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return col
    if t.startswith("TIMESTAMP") or t == "DATE":
        if not assume_utc:
            raise InvalidInput(
                f"{what} column {column!r} holds naive timestamps ({type_name}); make them "
                "timezone-aware (pandas: series.dt.tz_localize('UTC')) or pass assume_utc=True",
                details={"field": column},
            )
        return f"timezone('UTC', CAST({col} AS TIMESTAMP))"
    if t == "VARCHAR":
        return f"CAST({col} AS TIMESTAMPTZ)"
    raise InvalidInput(
        f"{what} column {column!r} must hold timestamps, not {type_name}",
        details={"field": column},
    )


def string_offsets_sql(relation: str, column: str) -> str:
    """A query counting the non-null strings of ``column`` without a UTC offset."""
    return (
        f"SELECT count(*) FROM {q(relation)} WHERE {q(column)} IS NOT NULL "
        f"AND NOT regexp_matches({q(column)}, '{OFFSET_RE}')"
    )


def source_sql(join: ViewJoin, ts_sql: str | None) -> str:
    """The view's rows reduced to keys, event time and the wanted features (cast to their
    declared types), de-duplicated on (keys, event time) by the created timestamp."""
    v = join.view
    cols = [q(k) for k in join.join_keys]
    feats = [f"CAST({q(f)} AS {DUCKDB_TYPES[v.feature(f).dtype]}) AS {q(f)}" for f in join.features]
    if ts_sql is None:  # static: one row per key
        select = ", ".join(cols + feats)
        keys = ", ".join(cols)
        return (
            f"SELECT {select} FROM {q(join.relation)} "
            f"QUALIFY row_number() OVER (PARTITION BY {keys}) = 1"
        )
    select = ", ".join([*cols, f"{ts_sql} AS {TS_COL}", *feats])
    base = f"SELECT {select} FROM {q(join.relation)} WHERE {ts_sql} IS NOT NULL"
    if v.created_timestamp is None:
        return base
    partition = ", ".join([*cols, TS_COL])
    return (
        f"SELECT * EXCLUDE (__strata_created) FROM ("
        f"SELECT {select}, {q(v.created_timestamp)} AS __strata_created "
        f"FROM {q(join.relation)} WHERE {ts_sql} IS NOT NULL) "
        f"QUALIFY row_number() OVER (PARTITION BY {partition} "
        f"ORDER BY __strata_created DESC NULLS LAST) = 1"
    )


def historical_sql(
    entities: str,
    entity_columns: Sequence[str],
    entity_ts_sql: str,
    joins: Sequence[ViewJoin],
    ts_sqls: Sequence[str | None],
) -> str:
    """The whole retrieval: entity rows (relation ``entities``) joined to every view."""
    ctes = [
        f"e AS (SELECT *, {entity_ts_sql} AS {TS_COL}, row_number() OVER () AS {ROW_COL} "
        f"FROM {q(entities)})"
    ]
    for i, (join, ts_sql) in enumerate(zip(joins, ts_sqls, strict=True)):
        ctes.append(f"v{i} AS ({source_sql(join, ts_sql)})")
    select = [f"e.{q(c)}" for c in entity_columns]
    froms = ["e"]
    for i, (join, ts_sql) in enumerate(zip(joins, ts_sqls, strict=True)):
        on = " AND ".join(f"e.{q(k)} = v{i}.{q(k)}" for k in join.join_keys)
        ttl = join.view.ttl
        for feature, out in zip(join.features, join.output_names, strict=True):
            value = f"v{i}.{q(feature)}"
            if ts_sql is not None and ttl is not None:
                micros = int(ttl.total_seconds() * 1_000_000)
                value = (
                    f"CASE WHEN v{i}.{TS_COL} >= e.{TS_COL} - to_microseconds({micros}) "
                    f"THEN {value} END"
                )
            select.append(f"{value} AS {q(out)}")
        if ts_sql is None:
            froms.append(f"LEFT JOIN v{i} ON {on}")
        else:
            froms.append(f"ASOF LEFT JOIN v{i} ON {on} AND e.{TS_COL} >= v{i}.{TS_COL}")
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM {' '.join(froms)} "
        f"ORDER BY e.{ROW_COL}"
    )


def latest_sql(join: ViewJoin, ts_sql: str, start_sql: str | None, end_sql: str) -> str:
    """The latest row per entity key with ``start <= event_ts < end`` (what materialization
    writes), its event time as ``__strata_ts``."""
    keys = ", ".join(q(k) for k in join.join_keys)
    where = f"{TS_COL} < {end_sql}" + (f" AND {TS_COL} >= {start_sql}" if start_sql else "")
    return (
        f"SELECT * FROM ({source_sql(join, ts_sql)}) WHERE {where} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {TS_COL} DESC) = 1"
    )
