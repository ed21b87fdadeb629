"""SQLAlchemy tables of the feature store (prefix ``fs_``).

Definitions are stored as their validated JSON spec, one current row per (kind, name) plus
every version in ``fs_definition_versions`` (a feature service's version is what a model
records). Materializations record the window and the source version they read, so
``materialize_incremental`` knows where to start.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from strata.backends.db import Base, UtcDateTime


class DefinitionRow(Base):
    __tablename__ = "fs_definitions"

    kind: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    spec: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(sa.String(256))


class DefinitionVersionRow(Base):
    __tablename__ = "fs_definition_versions"

    kind: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    spec: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(sa.String(256))
    #: False when this version was a removal.
    live: Mapped[bool] = mapped_column(sa.Boolean, default=True)


class MaterializationRow(Base):
    __tablename__ = "fs_materializations"
    __table_args__ = (sa.Index("ix_fs_materializations_view_end", "view", "end_ts"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    view: Mapped[str] = mapped_column(sa.String(128))
    store: Mapped[str] = mapped_column(sa.String(256))
    start_ts: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_ts: Mapped[datetime] = mapped_column(UtcDateTime)
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    source_version: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(sa.String(256))
