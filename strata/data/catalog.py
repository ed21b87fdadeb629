"""Metadata queries: resolving references, rows → models, the catalog, schema evolution."""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.core.errors import InvalidInput, NotFound
from strata.core.page import Page, decode_page_token, encode_page_token
from strata.data.models import (
    LATEST,
    MAX_PAGE,
    ColumnAnnotation,
    ColumnSchema,
    Dataset,
    DatasetQuery,
    DatasetVersion,
    SchemaChanges,
    TypeChange,
    VersionKind,
    check_name,
    parse_ref,
)
from strata.data.tables import (
    ColumnRow,
    DatasetRow,
    DatasetTagRow,
    FileRow,
    ParentRow,
    VersionRow,
    VersionTagRow,
)

if TYPE_CHECKING:
    import pyarrow as pa

_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 4

# Lossless widenings: (old, new) Arrow type ids that keep every value.
_WIDER: dict[str, tuple[str, ...]] = {
    "int8": ("int16", "int32", "int64", "float", "double"),
    "int16": ("int32", "int64", "float", "double"),
    "int32": ("int64", "double"),
    "uint8": ("uint16", "uint32", "uint64", "int16", "int32", "int64"),
    "uint16": ("uint32", "uint64", "int32", "int64"),
    "uint32": ("uint64", "int64"),
    "float": ("double",),
    "halffloat": ("float", "double"),
    "string": ("large_string",),
    "binary": ("large_binary",),
    "date32": ("date64",),
    "null": (),
}


def widening(old: str, new: str) -> bool:
    """True when every value of Arrow type ``old`` is exactly representable in ``new``."""
    if old == "null":
        return True
    return new in _WIDER.get(old, ())


def schema_changes(
    old: Sequence[ColumnSchema], new: Sequence[ColumnSchema], base: str | None
) -> SchemaChanges:
    """Added / removed / type-changed columns from ``old`` to ``new`` (matched by name)."""
    before = {c.name: c for c in old}
    after = {c.name: c for c in new}
    return SchemaChanges(
        base=base,
        added=[c for c in new if c.name not in before],
        removed=[c for c in old if c.name not in after],
        type_changed=[
            TypeChange(
                name=c.name,
                old=before[c.name].type,
                new=c.type,
                widening=widening(before[c.name].type, c.type),
            )
            for c in new
            if c.name in before and before[c.name].type != c.type
        ],
    )


def columns_of(schema: pa.Schema) -> list[ColumnSchema]:
    return [ColumnSchema(name=f.name, type=str(f.type), nullable=f.nullable) for f in schema]


def dataset_row(session: Session, name: str) -> DatasetRow:
    check_name(name)
    row = session.scalar(sa.select(DatasetRow).where(DatasetRow.name == name))
    if row is None:
        raise NotFound(
            f"Dataset {name!r} does not exist; list datasets with `strata data list`",
            details={"dataset": name},
        )
    return row


def resolve(session: Session, ref: str) -> tuple[DatasetRow, VersionRow]:
    """The dataset and version ``ref`` names: latest, exact id, tag, then unique id prefix."""
    name, sel = parse_ref(ref)
    ds = dataset_row(session, name)
    vid: str | None = None
    if sel == LATEST:
        if ds.latest_version is None:
            raise NotFound(f"Dataset {name!r} has no versions yet", details={"dataset": name})
        vid = ds.latest_version
    else:
        if session.get(VersionRow, (ds.id, sel)) is not None:
            vid = sel
        else:
            tag = session.get(VersionTagRow, (ds.id, sel))
            if tag is not None:
                vid = tag.version_id
            elif _HEX.match(sel) and len(sel) >= MIN_PREFIX:
                hits = session.scalars(
                    sa.select(VersionRow.id)
                    .where(VersionRow.dataset_id == ds.id, VersionRow.id.startswith(sel))
                    .limit(6)
                ).all()
                if len(hits) > 1:
                    raise InvalidInput(
                        f"Version prefix {sel!r} of dataset {name!r} is ambiguous: it matches "
                        f"{', '.join(hits[:5])}{'...' if len(hits) > 5 else ''}; give more digits",
                        details={"dataset": name, "candidates": list(hits[:5])},
                    )
                vid = hits[0] if hits else None
    if vid is None:
        raise NotFound(
            f"Dataset {name!r} has no version, tag or unique version prefix {sel!r}; "
            f"see `strata data versions {name}`",
            details={"dataset": name, "version": sel},
        )
    row = session.get(VersionRow, (ds.id, vid))
    if row is None:
        raise NotFound(
            f"Version {vid!r} of dataset {name!r} does not exist",
            details={"dataset": name, "version": vid},
        )
    return ds, row


def arrow_schema(row: VersionRow) -> pa.Schema:
    from strata.data.storage import schema_from_bytes

    return schema_from_bytes(base64.b64decode(row.arrow_schema))


def to_versions(
    session: Session, ds: DatasetRow, rows: Sequence[VersionRow]
) -> list[DatasetVersion]:
    """Models for ``rows`` of ``ds``, loading columns, parents and tags in bulk."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    cols: dict[str, list[ColumnSchema]] = defaultdict(list)
    for c in session.scalars(
        sa.select(ColumnRow)
        .where(ColumnRow.dataset_id == ds.id, ColumnRow.version_id.in_(ids))
        .order_by(ColumnRow.version_id, ColumnRow.position)
    ):
        cols[c.version_id].append(
            ColumnSchema(
                name=c.name,
                type=c.type,
                nullable=c.nullable,
                annotation=ColumnAnnotation(
                    description=c.description, pii=c.pii, semantic_type=c.semantic_type
                ),
            )
        )
    parents: dict[str, list[str]] = defaultdict(list)
    for p, pname in session.execute(
        sa.select(ParentRow, DatasetRow.name)
        .join(DatasetRow, DatasetRow.id == ParentRow.parent_dataset_id)
        .where(ParentRow.dataset_id == ds.id, ParentRow.version_id.in_(ids))
        .order_by(ParentRow.version_id, ParentRow.position)
    ):
        parents[p.version_id].append(f"{pname}@{p.parent_version_id}")
    tags: dict[str, list[str]] = defaultdict(list)
    for t in session.scalars(
        sa.select(VersionTagRow)
        .where(VersionTagRow.dataset_id == ds.id, VersionTagRow.version_id.in_(ids))
        .order_by(VersionTagRow.tag)
    ):
        tags[t.version_id].append(t.tag)
    out = []
    for r in rows:
        quarantine = None
        if r.quarantine_version:
            quarantine = f"{ds.name}__quarantine@{r.quarantine_version}"
        out.append(
            DatasetVersion(
                dataset=ds.name,
                id=r.id,
                digest=r.digest,
                seq=r.seq,
                kind=VersionKind(r.kind),
                rows=r.rows,
                bytes=r.bytes,
                num_files=r.num_files,
                columns=cols[r.id],
                source=json.loads(r.source or "{}"),
                created_by=r.created_by,
                created_at=r.created_at,
                parents=parents[r.id],
                transform_id=r.transform_id,
                run_id=r.run_id,
                tags=tags[r.id],
                schema_changes=(
                    SchemaChanges.model_validate(json.loads(r.schema_changes))
                    if r.schema_changes
                    else None
                ),
                quarantine=quarantine,
                quarantined_rows=r.quarantined_rows,
                quarantine_of=r.quarantine_of,
                description=r.description,
                claimed=json.loads(r.claimed) if r.claimed else None,
            )
        )
    return out


def to_version(session: Session, ds: DatasetRow, row: VersionRow) -> DatasetVersion:
    return to_versions(session, ds, [row])[0]


def file_rows(session: Session, ds: DatasetRow, row: VersionRow) -> list[FileRow]:
    return list(
        session.scalars(
            sa.select(FileRow)
            .where(FileRow.dataset_id == ds.id, FileRow.version_id == row.id)
            .order_by(FileRow.idx)
        )
    )


def to_datasets(session: Session, rows: Sequence[DatasetRow]) -> list[Dataset]:
    if not rows:
        return []
    ids = [r.id for r in rows]
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for t in session.scalars(sa.select(DatasetTagRow).where(DatasetTagRow.dataset_id.in_(ids))):
        tags[t.dataset_id][t.key] = t.value
    counts: dict[str, int] = {}
    for dataset_id, count in session.execute(
        sa.select(VersionRow.dataset_id, sa.func.count())
        .where(VersionRow.dataset_id.in_(ids))
        .group_by(VersionRow.dataset_id)
    ):
        counts[dataset_id] = int(count)
    return [
        Dataset(
            name=r.name,
            project=r.project,
            description=r.description,
            owner=r.owner,
            tags=tags[r.id],
            kind=VersionKind(r.kind),
            created_at=r.created_at,
            updated_at=r.updated_at,
            latest_version=r.latest_version,
            version_count=int(counts.get(r.id, 0)),
        )
        for r in rows
    ]


def search(session: Session, options: DatasetQuery) -> Page[Dataset]:
    """The page of datasets ``options`` selects, by name (offset paging)."""
    query, project, tag = options.query, options.project, options.tag
    column, pii = options.column, options.pii
    offset = decode_page_token(options.page_token, "offset")
    stmt = sa.select(DatasetRow)
    if not options.include_quarantine:
        stmt = stmt.where(DatasetRow.kind == VersionKind.DATA.value)
    if query:
        like = f"%{query.lower()}%"
        stmt = stmt.where(
            sa.or_(
                sa.func.lower(DatasetRow.name).like(like),
                sa.func.lower(DatasetRow.description).like(like),
            )
        )
    if project:
        stmt = stmt.where(DatasetRow.project == project)
    if tag:
        key, sep, value = tag.partition("=")
        cond = DatasetTagRow.key == key
        if sep:
            cond = sa.and_(cond, DatasetTagRow.value == value)
        stmt = stmt.where(sa.exists().where(DatasetTagRow.dataset_id == DatasetRow.id, cond))
    latest_cols = sa.and_(
        ColumnRow.dataset_id == DatasetRow.id, ColumnRow.version_id == DatasetRow.latest_version
    )
    if column:
        stmt = stmt.where(sa.exists().where(latest_cols, ColumnRow.name == column))
    if pii is not None:
        has = sa.exists().where(latest_cols, ColumnRow.pii.is_(True))
        stmt = stmt.where(has if pii else ~has)
    size = options.max_results
    rows = session.scalars(stmt.order_by(DatasetRow.name).offset(offset).limit(size + 1)).all()
    token = encode_page_token("offset", offset + size) if len(rows) > size else None
    return Page[Dataset](items=to_datasets(session, rows[:size]), next_page_token=token)


def versions_page(
    session: Session, ds: DatasetRow, max_results: int, page_token: str | None, newest_first: bool
) -> Page[DatasetVersion]:
    """One page of ``ds``'s versions by sequence (keyset paging on ``seq``)."""
    if not 1 <= max_results <= MAX_PAGE:
        raise InvalidInput(
            f"max_results must be between 1 and {MAX_PAGE}, got {max_results}",
            details={"field": "max_results"},
        )
    stmt = sa.select(VersionRow).where(VersionRow.dataset_id == ds.id)
    if newest_first:
        if page_token:
            stmt = stmt.where(VersionRow.seq < decode_page_token(page_token, "before_seq"))
        stmt = stmt.order_by(VersionRow.seq.desc())
    else:
        stmt = stmt.where(VersionRow.seq > decode_page_token(page_token, "after_seq"))
        stmt = stmt.order_by(VersionRow.seq)
    rows = session.scalars(stmt.limit(max_results + 1)).all()
    token = None
    if len(rows) > max_results:
        rows = rows[:max_results]
        key = "before_seq" if newest_first else "after_seq"
        token = encode_page_token(key, rows[-1].seq)
    return Page[DatasetVersion](items=to_versions(session, ds, rows), next_page_token=token)


def annotations_of(
    session: Session, ds: DatasetRow, version_id: str
) -> dict[str, ColumnAnnotation]:
    return {
        c.name: ColumnAnnotation(
            description=c.description, pii=c.pii, semantic_type=c.semantic_type
        )
        for c in session.scalars(
            sa.select(ColumnRow).where(
                ColumnRow.dataset_id == ds.id, ColumnRow.version_id == version_id
            )
        )
    }


def parse_annotations(
    values: Mapping[str, ColumnAnnotation | dict[str, Any]] | None, columns: Sequence[str]
) -> dict[str, ColumnAnnotation]:
    """Annotations validated against ``columns``; InvalidInput names an unknown column."""
    out: dict[str, ColumnAnnotation] = {}
    for name, value in (values or {}).items():
        if name not in columns:
            raise InvalidInput(
                f"Cannot annotate column {name!r}: it does not exist; existing columns: "
                f"{', '.join(columns)}",
                details={"column": name, "columns": list(columns)},
            )
        out[name] = (
            value if isinstance(value, ColumnAnnotation) else ColumnAnnotation.model_validate(value)
        )
    return out
