"""SQLAlchemy tables of the tracking layer.

``trk_metric_blocks`` keeps every point (history, packed per logging call);
``trk_latest_metrics`` keeps one row per run and key — the point with the highest
(step, timestamp) — so search and order-by on a metric never scan the history. There NaN is
stored as ``is_nan`` (SQLite cannot store a NaN); blocks keep NaN as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from strata.backends.db import Base
from strata.tracking.models import MAX_KEY_LENGTH, MAX_MODEL_NAME_LENGTH


class ExperimentRow(Base):
    __tablename__ = "trk_experiments"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(500), unique=True)
    artifact_location: Mapped[str] = mapped_column(sa.Text)
    lifecycle_stage: Mapped[str] = mapped_column(sa.String(16), default="active")
    description: Mapped[str | None] = mapped_column(sa.Text)
    creation_time: Mapped[int] = mapped_column(sa.BigInteger)
    last_update_time: Mapped[int] = mapped_column(sa.BigInteger)


class ExperimentTagRow(Base):
    __tablename__ = "trk_experiment_tags"

    experiment_id: Mapped[str] = mapped_column(
        sa.ForeignKey("trk_experiments.id"), primary_key=True
    )
    key: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class RunRow(Base):
    __tablename__ = "trk_runs"
    __table_args__ = (
        sa.Index("ix_trk_runs_exp_stage_start", "experiment_id", "lifecycle_stage", "start_time"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_experiments.id"))
    name: Mapped[str] = mapped_column(sa.String(250))
    user_id: Mapped[str] = mapped_column(sa.String(256))
    status: Mapped[str] = mapped_column(sa.String(16))
    start_time: Mapped[int] = mapped_column(sa.BigInteger)
    end_time: Mapped[int | None] = mapped_column(sa.BigInteger)
    lifecycle_stage: Mapped[str] = mapped_column(sa.String(16), default="active")
    artifact_uri: Mapped[str] = mapped_column(sa.Text)
    parent_run_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)


#: The run's key-value tables keep their rows in their primary key's B-tree on SQLite (migration
#: c41d7e2a9b10): a run's rows are read with one lookup each, not an index entry then a row.
_CLUSTERED = {"sqlite_with_rowid": False}


class ParamRow(Base):
    __tablename__ = "trk_params"
    __table_args__ = (sa.Index("ix_trk_params_key_value", "key", "value"), _CLUSTERED)

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(8000))


class TagRow(Base):
    __tablename__ = "trk_tags"
    __table_args__ = (sa.Index("ix_trk_tags_key_value", "key", "value"), _CLUSTERED)

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(8000))


class MetricBlockRow(Base):
    """A block of points of one metric of one run, as packed little-endian arrays.

    Each logging call writes one block per key (100k points in one row instead of 100k rows),
    so logging and history reads cost one row per batch, not one per point. History is the
    concatenation of a key's blocks, ordered by (step, timestamp) when read.
    """

    __tablename__ = "trk_metric_blocks"
    __table_args__ = (sa.Index("ix_trk_metric_blocks_run_key", "run_id", "key", "id"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(sa.String(32))
    key: Mapped[str] = mapped_column(sa.String(250))
    count: Mapped[int] = mapped_column(sa.Integer)
    min_step: Mapped[int] = mapped_column(sa.BigInteger)
    max_step: Mapped[int] = mapped_column(sa.BigInteger)
    steps: Mapped[bytes] = mapped_column(sa.LargeBinary)  # int64
    timestamps: Mapped[bytes] = mapped_column(sa.LargeBinary)  # int64, epoch ms
    vals: Mapped[bytes] = mapped_column(sa.LargeBinary)  # float64, NaN and ±inf as they are


class LatestMetricRow(Base):
    __tablename__ = "trk_latest_metrics"
    __table_args__ = (sa.Index("ix_trk_latest_key_value", "key", "value"), _CLUSTERED)

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[float] = mapped_column(sa.Float(precision=53))
    is_nan: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    timestamp: Mapped[int] = mapped_column(sa.BigInteger)
    step: Mapped[int] = mapped_column(sa.BigInteger)


class InputRow(Base):
    __tablename__ = "trk_inputs"
    __table_args__ = (sa.UniqueConstraint("run_id", "name", "digest", "context"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_runs.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(500))
    digest: Mapped[str] = mapped_column(sa.String(128))
    context: Mapped[str] = mapped_column(sa.String(64), default="")
    source_type: Mapped[str] = mapped_column(sa.String(64), default="")
    source: Mapped[str] = mapped_column(sa.Text, default="")
    schema_json: Mapped[str | None] = mapped_column(sa.Text)
    profile: Mapped[str | None] = mapped_column(sa.Text)
    tags_json: Mapped[str] = mapped_column(sa.Text, default="{}")


# -- LoggedModels (MLflow 3) -----------------------------------------------------------------
class LoggedModelRow(Base):
    __tablename__ = "trk_logged_models"
    __table_args__ = (sa.Index("ix_trk_logged_models_exp_created", "experiment_id", "created"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_experiments.id"))
    name: Mapped[str] = mapped_column(sa.String(MAX_MODEL_NAME_LENGTH))
    source_run_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    model_type: Mapped[str | None] = mapped_column(sa.String(500))
    status: Mapped[str] = mapped_column(sa.String(16))
    status_message: Mapped[str | None] = mapped_column(sa.Text)
    artifact_location: Mapped[str] = mapped_column(sa.Text)
    creator: Mapped[str] = mapped_column(sa.String(256))
    lifecycle_stage: Mapped[str] = mapped_column(sa.String(16))
    created: Mapped[int] = mapped_column(sa.BigInteger)
    updated: Mapped[int] = mapped_column(sa.BigInteger)


class LoggedModelParamRow(Base):
    __tablename__ = "trk_logged_model_params"

    model_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_logged_models.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class LoggedModelTagRow(Base):
    __tablename__ = "trk_logged_model_tags"

    model_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_logged_models.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class LoggedModelMetricRow(Base):
    """Every point logged on a model, in logging order (NaN as ``is_nan``, as for runs)."""

    __tablename__ = "trk_logged_model_metrics"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_logged_models.id"), index=True)
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH))
    value: Mapped[float] = mapped_column(sa.Float(precision=53))
    is_nan: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    timestamp: Mapped[int] = mapped_column(sa.BigInteger)
    step: Mapped[int] = mapped_column(sa.BigInteger)
    run_id: Mapped[str | None] = mapped_column(sa.String(32))
    dataset_name: Mapped[str | None] = mapped_column(sa.String(500))
    dataset_digest: Mapped[str | None] = mapped_column(sa.String(128))


class RunModelLinkRow(Base):
    """A model a run used (``direction='input'``) or produced (``'output'``, with a step)."""

    __tablename__ = "trk_run_model_links"

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_runs.id"), primary_key=True)
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_logged_models.id"), primary_key=True)
    direction: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    step: Mapped[int] = mapped_column(sa.BigInteger, default=0)
