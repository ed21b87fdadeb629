"""Monitored series in ``mon_points``: append points, read a series over a time range."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from strata.governance.audit import audited
from strata.monitoring.models import DriftReport, SeriesPoint
from strata.monitoring.tables import MonPointRow

DATASET = "drift.share"


def drift_points(model: str, report: DriftReport, ts: dt.datetime) -> list[SeriesPoint]:
    """A drift report as points: ``drift.share`` and ``drift.score.<feature>`` per column."""
    if report.status != "ok":
        return []
    points = [
        SeriesPoint(
            model=model,
            series=DATASET,
            ts=ts,
            value=report.drifted_share,
            labels={
                "dataset_drift": report.dataset_drift,
                "drifted": report.drifted_count,
                "rows": report.current_rows,
                "current": report.current,
            },
        )
    ]
    for name, col in report.columns.items():
        if col.status != "tested":
            continue
        points.append(
            SeriesPoint(
                model=model,
                series=f"drift.score.{name}",
                ts=ts,
                value=col.score,
                labels={
                    "method": col.method.value,
                    "threshold": col.threshold,
                    "drifted": col.drifted,
                    "rows": col.current_rows,
                    "overlay": col.overlay,
                },
            )
        )
    return points


def append(db: Any, points: Iterable[SeriesPoint], action: str = "monitoring.record") -> int:
    """Insert ``points`` in one audited transaction; their count."""
    rows = [
        {
            "model": p.model,
            "series": p.series,
            "ts": p.ts,
            "value": p.value if math.isfinite(p.value) else float("nan"),
            "labels": json.dumps(p.labels, default=str),
        }
        for p in points
    ]
    if not rows:
        return 0
    model = str(rows[0]["model"])
    with audited(db, action, "model", model, {"points": len(rows)}) as scope:
        scope.session.execute(sa.insert(MonPointRow), rows)
    return len(rows)


def record_drift(db: Any, model: str, report: DriftReport, ts: dt.datetime) -> int:
    return append(db, drift_points(model, report, ts), "monitoring.record_drift")


def read(
    db: Any,
    model: str,
    series: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 10_000,
) -> list[SeriesPoint]:
    """Points of one series, oldest first, in [since, until)."""
    q = sa.select(MonPointRow).where(MonPointRow.model == model, MonPointRow.series == series)
    if since is not None:
        q = q.where(MonPointRow.ts >= since)
    if until is not None:
        q = q.where(MonPointRow.ts < until)
    q = q.order_by(MonPointRow.ts.desc(), MonPointRow.id.desc()).limit(limit)
    with db.read() as session:
        rows = session.execute(q).scalars().all()
    return [
        SeriesPoint(
            model=r.model, series=r.series, ts=r.ts, value=r.value, labels=json.loads(r.labels)
        )
        for r in reversed(rows)
    ]


def names(db: Any, model: str) -> list[str]:
    """The series recorded for ``model``."""
    q = sa.select(MonPointRow.series).where(MonPointRow.model == model).distinct()
    with db.read() as session:
        return sorted(session.execute(q).scalars().all())
