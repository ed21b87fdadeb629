"""SQLAlchemy tables of the model registry (prefix ``reg_``).

``reg_aliases`` holds the current version of each alias; ``reg_alias_history`` every move
(append-only, ``seq`` increasing). Alias moves lock the model's row first, so concurrent
moves of one model serialize and each history entry's ``from_version`` is the previous
entry's ``to_version``. Structured fields of a version (signature, metrics, lineage, files)
are JSON text: they are read with the version, never searched.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from strata.backends.db import Base, UtcDateTime


class RegModelRow(Base):
    __tablename__ = "reg_models"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    owner: Mapped[str] = mapped_column(sa.String(256))
    latest_version: Mapped[int] = mapped_column(sa.Integer, default=0)
    gate: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RegModelTagRow(Base):
    __tablename__ = "reg_model_tags"
    __table_args__ = (sa.Index("ix_reg_model_tags_key_value", "key", "value"),)

    name: Mapped[str] = mapped_column(
        sa.ForeignKey("reg_models.name", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(5000))


class RegVersionRow(Base):
    __tablename__ = "reg_versions"
    __table_args__ = (sa.Index("ix_reg_versions_run", "run_id"),)

    name: Mapped[str] = mapped_column(
        sa.ForeignKey("reg_models.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    source: Mapped[str] = mapped_column(sa.Text)
    run_id: Mapped[str | None] = mapped_column(sa.String(32))
    artifact_path: Mapped[str | None] = mapped_column(sa.String(500))
    model_id: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    status_message: Mapped[str] = mapped_column(sa.Text, default="")
    format: Mapped[str] = mapped_column(sa.String(16))
    flavor: Mapped[str | None] = mapped_column(sa.String(64))
    digest: Mapped[str | None] = mapped_column(sa.String(64))
    files: Mapped[str] = mapped_column(sa.Text, default="{}")
    signature: Mapped[str | None] = mapped_column(sa.Text)
    metrics: Mapped[str] = mapped_column(sa.Text, default="{}")
    lineage: Mapped[str] = mapped_column(sa.Text, default="{}")
    card: Mapped[str] = mapped_column(sa.Text, default="{}")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RegVersionTagRow(Base):
    __tablename__ = "reg_version_tags"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["reg_versions.name", "reg_versions.version"],
            ondelete="CASCADE",
        ),
        sa.Index("ix_reg_version_tags_key_value", "key", "value"),
    )

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(5000))


class RegAliasRow(Base):
    __tablename__ = "reg_aliases"
    __table_args__ = (sa.Index("ix_reg_aliases_alias", "alias", "name"),)

    name: Mapped[str] = mapped_column(
        sa.ForeignKey("reg_models.name", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)


class RegAliasHistoryRow(Base):
    __tablename__ = "reg_alias_history"
    __table_args__ = (sa.Index("ix_reg_alias_history_model", "name", "alias", "seq"),)

    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    alias: Mapped[str] = mapped_column(sa.String(64))
    from_version: Mapped[int | None] = mapped_column(sa.Integer)
    to_version: Mapped[int | None] = mapped_column(sa.Integer)
    action: Mapped[str] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(256))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    request_id: Mapped[str | None] = mapped_column(sa.String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class RegRequestRow(Base):
    __tablename__ = "reg_requests"
    __table_args__ = (sa.Index("ix_reg_requests_model", "name", "status"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int] = mapped_column(sa.Integer)
    alias: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16))
    requested_by: Mapped[str] = mapped_column(sa.String(256))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(sa.String(256))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    gate: Mapped[str | None] = mapped_column(sa.Text)


class RegSettingRow(Base):
    __tablename__ = "reg_settings"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
