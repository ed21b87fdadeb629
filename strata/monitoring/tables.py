"""SQLAlchemy tables of monitoring (prefix ``mon_``).

``mon_points`` is every monitored series: one row per (model, series, time) — drift scores
per feature (``drift.score.<feature>``) and the drifted share (``drift.share``), performance
metrics per window (``f1``, ``mae``...), service health (``p99_latency_ms``...). ``labels``
is JSON text of the point's context (method, threshold, segment, version); series are read by
(model, series, time) only. Feedback rows keep the label with what it was matched to; rules
and their firing events are what the scheduler evaluates and records.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from strata.backends.db import Base, UtcDateTime


class MonPointRow(Base):
    __tablename__ = "mon_points"
    __table_args__ = (sa.Index("ix_mon_points_series", "model", "series", "ts"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    model: Mapped[str] = mapped_column(sa.String(128))
    series: Mapped[str] = mapped_column(sa.String(300))
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    value: Mapped[float] = mapped_column(sa.Float)
    labels: Mapped[str] = mapped_column(sa.Text, default="{}")


class MonFeedbackRow(Base):
    __tablename__ = "mon_feedback"
    __table_args__ = (
        sa.Index("ix_mon_feedback_request", "model", "request_id", "row"),
        sa.Index("ix_mon_feedback_entity", "model", "entity_key", "ts"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    model: Mapped[str] = mapped_column(sa.String(128))
    request_id: Mapped[str | None] = mapped_column(sa.String(128))
    row: Mapped[int] = mapped_column(sa.Integer, default=0)
    entity_key: Mapped[str | None] = mapped_column(sa.String(512))
    ts: Mapped[datetime | None] = mapped_column(UtcDateTime)
    label: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MonRuleRow(Base):
    __tablename__ = "mon_rules"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(128), index=True)
    spec: Mapped[str] = mapped_column(sa.Text)  # the AlertRule as JSON
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    state: Mapped[str] = mapped_column(sa.Text, default="{}")  # streak, last fired, last key
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MonAlertEventRow(Base):
    __tablename__ = "mon_alert_events"
    __table_args__ = (sa.Index("ix_mon_alert_events_rule", "rule", "fired_at"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    rule: Mapped[str] = mapped_column(sa.String(128))
    model: Mapped[str] = mapped_column(sa.String(128))
    fired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    value: Mapped[float] = mapped_column(sa.Float)
    detail: Mapped[str] = mapped_column(sa.Text, default="{}")  # values, notifications, actions


class MonEndpointRow(Base):
    __tablename__ = "mon_endpoints"

    model: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    sample_rate: Mapped[float] = mapped_column(sa.Float, default=1.0)
    retention_days: Mapped[int] = mapped_column(sa.Integer, default=30)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
