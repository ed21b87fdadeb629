"""The rows one publish writes, one small function per table.

:class:`strata.data.commit.Committer` calls them inside its audited transaction, in this
order: the version row, its columns, files and parents, then profile, report, tags and the
stream position. Each takes the open session and the version's ``(dataset_id, version_id)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from strata.core.clock import utcnow
from strata.data.models import ColumnAnnotation, ColumnSchema
from strata.data.tables import (
    ColumnRow,
    FileRow,
    ParentRow,
    ProfileRow,
    ReportRow,
    StreamPositionRow,
    VersionTagRow,
)


def jsonable(obj: Any) -> Any:
    """A model as JSON-ready values (anything else unchanged)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return obj


def add_columns(
    s: Session,
    dataset_id: str,
    version_id: str,
    columns: Sequence[ColumnSchema],
    annotations: Mapping[str, ColumnAnnotation] | None = None,
) -> None:
    """One row per column, in order, with its annotation (default: none)."""
    for i, c in enumerate(columns):
        ann = (annotations or {}).get(c.name) or ColumnAnnotation()
        s.add(
            ColumnRow(
                dataset_id=dataset_id,
                version_id=version_id,
                position=i,
                name=c.name,
                type=c.type,
                nullable=c.nullable,
                description=ann.description,
                pii=ann.pii,
                semantic_type=ann.semantic_type,
            )
        )


def add_files(
    s: Session, dataset_id: str, version_id: str, reused: Sequence[FileRow], new: list[FileRow]
) -> None:
    """The version's parts: copies of the base version's rows (an append), then the new ones."""
    for f in reused:
        s.add(
            FileRow(
                dataset_id=dataset_id,
                version_id=version_id,
                idx=f.idx,
                path=f.path,
                rows=f.rows,
                bytes=f.bytes,
                sha256=f.sha256,
            )
        )
    for f in new:
        f.dataset_id, f.version_id = dataset_id, version_id
        s.add(f)


def add_parents(
    s: Session, dataset_id: str, version_id: str, parents: Sequence[tuple[str, str]]
) -> None:
    """``parents``: ``(dataset_id, version_id)`` pairs in order."""
    for i, (parent_dataset, parent_version) in enumerate(parents):
        s.add(
            ParentRow(
                dataset_id=dataset_id,
                version_id=version_id,
                position=i,
                parent_dataset_id=parent_dataset,
                parent_version_id=parent_version,
            )
        )


def add_profile(s: Session, dataset_id: str, version_id: str, profile: Any) -> None:
    s.add(
        ProfileRow(
            dataset_id=dataset_id,
            version_id=version_id,
            created_at=utcnow(),
            profile=json.dumps(jsonable(profile)),
        )
    )


def add_report(
    s: Session,
    report_id: str,
    dataset_id: str,
    version_id: str | None,
    *,
    suite: str,
    success: bool,
    gate: str,
    report: dict[str, Any],
) -> None:
    """A stored validation report (``version_id`` None: the gate failed, nothing published)."""
    s.add(
        ReportRow(
            id=report_id,
            dataset_id=dataset_id,
            version_id=version_id,
            suite=suite,
            success=success,
            gate=gate,
            created_at=utcnow(),
            report=json.dumps(report),
        )
    )


def set_tags(s: Session, dataset_id: str, version_id: str, tags: Sequence[str]) -> None:
    """Point each tag at the version (moved if it pointed elsewhere)."""
    for tag in tags:
        t = s.get(VersionTagRow, (dataset_id, tag))
        if t is None:
            s.add(
                VersionTagRow(
                    dataset_id=dataset_id, tag=tag, version_id=version_id, created_at=utcnow()
                )
            )
        else:
            t.version_id = version_id


def set_stream_position(
    s: Session, dataset_id: str, version_id: str, info: Mapping[str, Any]
) -> None:
    """Store ``info["offsets"]`` for stream ``info["stream"]`` with the version (no-op when
    the source info carries no stream)."""
    stream = info.get("stream")
    if not (isinstance(stream, str) and isinstance(info.get("offsets"), dict)):
        return
    offsets = json.dumps(info["offsets"])
    pos = s.get(StreamPositionRow, (dataset_id, stream))
    if pos is None:
        s.add(
            StreamPositionRow(
                dataset_id=dataset_id,
                stream=stream,
                offsets=offsets,
                version_id=version_id,
                updated_at=utcnow(),
            )
        )
    else:
        pos.offsets, pos.version_id, pos.updated_at = offsets, version_id, utcnow()
