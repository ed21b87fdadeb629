"""Prediction-log queries (DuckDB over serving's Parquet partitions), statistics, export,
per-endpoint settings and retention."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from strata.core.clock import utcnow
from strata.governance.audit import audited
from strata.monitoring import predlog
from strata.monitoring.models import (
    LogFormat,
    LogQuery,
    LogRow,
    LogRows,
    LogSettings,
    LogStats,
    RetentionResult,
)
from strata.monitoring.refs import LogRef, sql_text
from strata.monitoring.tables import MonEndpointRow

_FORMATS = {"parquet": "(FORMAT parquet, COMPRESSION zstd)", "csv": "(FORMAT csv, HEADER)",
            "jsonl": "(FORMAT json)"}  # fmt: skip


def _where(query: LogQuery, version: str | None) -> str:
    ref = LogRef(query.model, None, query.since, query.until, query.path, query.endpoint)
    cond = predlog.where(ref, version)
    if query.request_id is not None:
        cond += f" AND request_id = {sql_text(query.request_id)}"
    if query.entity_key is not None:
        cond += f" AND entity_key = {sql_text(query.entity_key)}"
    return cond


def select_sql(store: Any, query: LogQuery, version: str | None) -> str:
    return (
        f"SELECT * EXCLUDE (date) FROM {predlog.scan(store, query.model)} "
        f"WHERE {_where(query, version)}"
    )


def query(con: Any, store: Any, q: LogQuery, version: str | None) -> LogRows:
    if not predlog.has_log(store, q.model):
        return LogRows(model=q.model, version=version, rows=[])
    sql = f"{select_sql(store, q, version)} ORDER BY ts DESC, request_id, row LIMIT {q.limit + 1}"
    table = con.sql(sql).to_arrow_table()
    rows = [LogRow.model_validate(r) for r in table.slice(0, q.limit).to_pylist()]
    return LogRows(model=q.model, version=version, rows=rows, truncated=table.num_rows > q.limit)


def stats(con: Any, store: Any, q: LogQuery, version: str | None) -> LogStats:
    if not predlog.has_log(store, q.model):
        return LogStats(model=q.model, rows=0, requests=0)
    base = select_sql(store, q, version)
    con.execute(f"CREATE OR REPLACE TEMP VIEW w AS {base}")
    row = con.execute(
        "SELECT count(*), count(DISTINCT request_id), min(ts), max(ts) FROM w"
    ).fetchone()
    rows, requests, first, last = row if row else (0, 0, None, None)
    out = LogStats(model=q.model, rows=int(rows), requests=int(requests), first=first, last=last)
    if not rows:
        return out
    out.by_version = dict(con.execute("SELECT version, count(*) FROM w GROUP BY 1").fetchall())
    out.by_path = dict(con.execute("SELECT path, count(*) FROM w GROUP BY 1").fetchall())
    lat = con.execute(
        "SELECT quantile_cont(l, [0.5, 0.9, 0.99]), avg(l), max(l) FROM "
        "(SELECT request_id, max(latency_ms) AS l FROM w GROUP BY request_id)"
    ).fetchone()
    if lat and lat[0] is not None:
        p50, p90, p99 = lat[0]
        out.latency_ms = {"p50": p50, "p90": p90, "p99": p99, "mean": lat[1], "max": lat[2]}
    return out


def export(
    con: Any, store: Any, q: LogQuery, version: str | None, dest: Path, fmt: LogFormat
) -> int:
    """Every matching row to ``dest`` (DuckDB COPY, out of core); the row count."""
    if not predlog.has_log(store, q.model):
        con.execute(
            f"COPY (SELECT 1 AS no_rows WHERE false) TO {sql_text(str(dest))} {_FORMATS[fmt]}"
        )
        return 0
    sql = select_sql(store, q, version) + " ORDER BY ts, request_id, row"
    con.execute(f"COPY ({sql}) TO {sql_text(str(dest))} {_FORMATS[fmt]}")
    row = con.execute(f"SELECT count(*) FROM ({select_sql(store, q, version)})").fetchone()
    return int(row[0]) if row else 0


def get_settings(db: Any, model: str) -> LogSettings:
    with db.read() as session:
        r = session.get(MonEndpointRow, model)
    if r is None:
        return LogSettings(model=model)
    return LogSettings(
        model=model,
        sample_rate=r.sample_rate,
        retention_days=r.retention_days,
        updated_at=r.updated_at,
    )


def set_settings(db: Any, model: str, settings: LogSettings) -> LogSettings:
    now = utcnow()
    details = {"sample_rate": settings.sample_rate, "retention_days": settings.retention_days}
    with audited(db, "monitoring.set_log_settings", "model", model, details) as scope:
        row = scope.session.get(MonEndpointRow, model)
        if row is None:
            scope.session.add(
                MonEndpointRow(
                    model=model,
                    sample_rate=settings.sample_rate,
                    retention_days=settings.retention_days,
                    updated_at=now,
                )
            )
        else:
            row.sample_rate = settings.sample_rate
            row.retention_days = settings.retention_days
            row.updated_at = now
    return LogSettings(model=model, **details, updated_at=now)


def models_with_settings(db: Any) -> list[str]:
    with db.read() as session:
        return list(session.execute(sa.select(MonEndpointRow.model)).scalars())


def apply_retention(db: Any, store: Any, model: str, today: dt.date) -> RetentionResult:
    """Delete the model's date partitions older than its retention (audited)."""
    keep_days = get_settings(db, model).retention_days
    cutoff = today - dt.timedelta(days=keep_days)
    old, kept = [], 0
    for part in predlog.listing(store, predlog.model_prefix(model)):
        name = part.path.rsplit("/", 1)[-1]
        if not (part.is_dir and name.startswith("date=")):
            continue
        try:
            day = dt.date.fromisoformat(name[5:])
        except ValueError:
            continue
        if day < cutoff:
            old.append(part.path)
        else:
            kept += 1
    if old:
        details = {"partitions": len(old), "before": cutoff.isoformat()}
        with audited(db, "monitoring.apply_retention", "model", model, details):
            for path in old:
                store.delete(path)  # the partition's tree with its digest sidecars
    return RetentionResult(model=model, deleted_partitions=old, kept_partitions=kept)
