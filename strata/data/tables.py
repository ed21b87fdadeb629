"""SQLAlchemy tables of the data layer (prefix ``dat_``).

A version row is written once, in the transaction that publishes it, after all its Parquet
parts are in the artifact store; the only later changes are metadata (version tags, column
annotations). ``dat_files`` may point a version at parts living under an ancestor's
directory: an append reuses its parent's parts instead of copying them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from strata.backends.db import Base, UtcDateTime


class DatasetRow(Base):
    __tablename__ = "dat_datasets"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    project: Mapped[str] = mapped_column(sa.String(128), index=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    owner: Mapped[str] = mapped_column(sa.String(256), default="")
    kind: Mapped[str] = mapped_column(sa.String(16), default="data")
    latest_version: Mapped[str | None] = mapped_column(sa.String(16))
    next_seq: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DatasetTagRow(Base):
    __tablename__ = "dat_dataset_tags"
    __table_args__ = (sa.Index("ix_dat_dataset_tags_key_value", "key", "value"),)

    dataset_id: Mapped[str] = mapped_column(sa.ForeignKey("dat_datasets.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(250), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(2000), default="")


class VersionRow(Base):
    __tablename__ = "dat_versions"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "seq", name="uq_dat_versions_seq"),)

    dataset_id: Mapped[str] = mapped_column(sa.ForeignKey("dat_datasets.id"), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(64))
    seq: Mapped[int] = mapped_column(sa.Integer)
    kind: Mapped[str] = mapped_column(sa.String(16))
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    num_files: Mapped[int] = mapped_column(sa.Integer)
    arrow_schema: Mapped[str] = mapped_column(sa.Text)  # base64 of the IPC-serialized schema
    source: Mapped[str] = mapped_column(sa.Text)  # JSON
    created_by: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    transform_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    run_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    schema_changes: Mapped[str | None] = mapped_column(sa.Text)  # JSON
    quarantine_version: Mapped[str | None] = mapped_column(sa.String(16))
    quarantined_rows: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    quarantine_of: Mapped[str | None] = mapped_column(sa.String(160))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    #: JSON: provenance a remote caller claimed (parents, transform, source), never lineage.
    claimed: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class ColumnRow(Base):
    __tablename__ = "dat_columns"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["dataset_id", "version_id"], ["dat_versions.dataset_id", "dat_versions.id"]
        ),
        sa.Index("ix_dat_columns_name", "name"),
    )

    dataset_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(512))
    type: Mapped[str] = mapped_column(sa.String(512))
    nullable: Mapped[bool] = mapped_column(sa.Boolean)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    pii: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    semantic_type: Mapped[str | None] = mapped_column(sa.String(128))


class FileRow(Base):
    __tablename__ = "dat_files"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["dataset_id", "version_id"], ["dat_versions.dataset_id", "dat_versions.id"]
        ),
    )

    dataset_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    idx: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    path: Mapped[str] = mapped_column(sa.String(1024))
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))


class ParentRow(Base):
    """Edge ``parent → child`` between versions (possibly of different datasets)."""

    __tablename__ = "dat_parents"
    __table_args__ = (sa.Index("ix_dat_parents_parent", "parent_dataset_id", "parent_version_id"),)

    dataset_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    parent_dataset_id: Mapped[str] = mapped_column(sa.String(32))
    parent_version_id: Mapped[str] = mapped_column(sa.String(16))


class VersionTagRow(Base):
    """A named pointer to one version of a dataset (movable; unique per dataset)."""

    __tablename__ = "dat_version_tags"

    dataset_id: Mapped[str] = mapped_column(sa.ForeignKey("dat_datasets.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TransformRow(Base):
    __tablename__ = "dat_transforms"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(256))
    code: Mapped[str] = mapped_column(sa.Text)
    code_digest: Mapped[str] = mapped_column(sa.String(64))
    git_commit: Mapped[str | None] = mapped_column(sa.String(64))
    inputs: Mapped[str] = mapped_column(sa.Text)  # JSON list of version refs
    output: Mapped[str | None] = mapped_column(sa.String(160))
    created_by: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReportRow(Base):
    __tablename__ = "dat_validation_reports"
    __table_args__ = (sa.Index("ix_dat_reports_version", "dataset_id", "version_id"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(sa.ForeignKey("dat_datasets.id"))
    version_id: Mapped[str | None] = mapped_column(sa.String(16))
    suite: Mapped[str] = mapped_column(sa.String(256))
    success: Mapped[bool] = mapped_column(sa.Boolean)
    gate: Mapped[str | None] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    report: Mapped[str] = mapped_column(sa.Text)  # JSON


class ProfileRow(Base):
    __tablename__ = "dat_profiles"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["dataset_id", "version_id"], ["dat_versions.dataset_id", "dat_versions.id"]
        ),
    )

    dataset_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    profile: Mapped[str] = mapped_column(sa.Text)  # JSON


class StreamPositionRow(Base):
    """Stream offsets committed in the same transaction as the version holding their rows."""

    __tablename__ = "dat_stream_positions"

    dataset_id: Mapped[str] = mapped_column(sa.ForeignKey("dat_datasets.id"), primary_key=True)
    stream: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    offsets: Mapped[str] = mapped_column(sa.Text)  # JSON
    version_id: Mapped[str] = mapped_column(sa.String(16))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
