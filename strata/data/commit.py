"""Publishing versions: stage an ingest, then upload its parts and commit its metadata.

Order of a publish: stage locally (:func:`strata.data.staging.stage`), check the schema
evolution, digest the parts into the version id, upload the parts (skipped when the version
exists: identical data is never copied), then one audited transaction inserts the version,
its columns, files, parents, transform, report, profile, quarantine version and stream
offsets, and moves ``latest``. The version is visible only once that transaction commits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.backends.artifacts import ArtifactStore
from strata.backends.db import Database
from strata.core import faults
from strata.core.clock import utcnow
from strata.core.config import redact_uri
from strata.core.errors import Conflict, InvalidInput
from strata.core.ids import new_id
from strata.core.principal import current
from strata.data import catalog, lineage, records
from strata.data.ingest import Reader
from strata.data.models import (
    CLAIMED,
    ColumnSchema,
    DatasetVersion,
    IngestMode,
    IngestOptions,
    IngestResult,
    SchemaChanges,
    VersionKind,
    check_name,
    quarantine_name,
)
from strata.data.service import Progress
from strata.data.staging import Staged, stage
from strata.data.storage import Part, schema_bytes, store_path, version_digest, version_id
from strata.data.tables import (
    DatasetRow,
    DatasetTagRow,
    FileRow,
    TransformRow,
    VersionRow,
)
from strata.governance.audit import AUDITED_MARK, audited

if TYPE_CHECKING:
    import pyarrow as pa

    from strata.data.validation import Suite

_LOCK_BASE = 731_100_000


def audit_source(info: dict[str, Any]) -> dict[str, Any]:
    """What an ingest's audit record says about its source: the source description with
    secrets masked and SQL replaced by its sha256 (the query text may be long or sensitive)."""
    shown: dict[str, Any] = {}
    out: dict[str, Any] = {"source": shown}
    for key, value in info.items():
        if key in ("query", "sql") and isinstance(value, str):
            out["sql_sha256"] = hashlib.sha256(value.encode()).hexdigest()
        elif isinstance(value, str):
            shown[key] = redact_uri(value)[:300]
        elif isinstance(value, int | float | bool) or value is None:
            shown[key] = value
    return out


@dataclass
class _Parent:
    dataset_id: str
    version_id: str
    ref: str


@dataclass
class Draft:
    """A staged ingest that passed its checks, with everything its publish records."""

    name: str
    staged: Staged
    options: IngestOptions
    suite: Suite | None
    columns: list[ColumnSchema]
    changes: SchemaChanges | None
    info: dict[str, Any]
    base: DatasetVersion | None
    base_files: list[FileRow]  # the base version's parts an append keeps ([] otherwise)
    parents: list[_Parent]
    started: float
    #: What a remote caller claimed about provenance (kept apart from ``info``, never lineage).
    claimed: dict[str, Any] | None = None


class Committer:
    """Turns a :class:`~strata.data.ingest.Reader` into a published version."""

    def __init__(self, db: Database, store: ArtifactStore, workdir: Callable[[], str]) -> None:
        self.db = db
        self.store = store
        self.workdir = workdir

    def lock(self, session: Session, name: str) -> None:
        key = _LOCK_BASE + int.from_bytes(hashlib.sha256(name.encode()).digest()[:3], "big")
        self.db.lock(session, key)

    def new_dataset(
        self,
        session: Session,
        name: str,
        *,
        project: str = "default",
        description: str = "",
        owner: str | None = None,
        kind: VersionKind = VersionKind.DATA,
        tags: dict[str, str] | None = None,
    ) -> DatasetRow:
        now = utcnow()
        row = DatasetRow(
            id=new_id(),
            name=name,
            project=project or "default",
            description=description,
            owner=owner if owner is not None else current().principal.name,
            kind=kind.value,
            latest_version=None,
            next_seq=1,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        for key, value in (tags or {}).items():
            session.add(DatasetTagRow(dataset_id=row.id, key=key, value=value))
        session.flush()
        return row

    def read_base(
        self, name: str, parents: Sequence[str], appending: bool
    ) -> tuple[DatasetVersion | None, list[FileRow], pa.Schema | None, list[_Parent]]:
        """In one read transaction: the latest version of ``name`` (None when there is none),
        its file rows and Arrow schema, and the resolved ``parents`` — with the latest
        version first when ``appending`` and not listed already."""
        with self.db.read() as s:
            rows = []
            for ref in parents:
                pds, prow = catalog.resolve(s, ref)
                rows.append(_Parent(pds.id, prow.id, f"{pds.name}@{prow.id}"))
            ds = s.scalar(sa.select(DatasetRow).where(DatasetRow.name == name))
            if ds is None or ds.latest_version is None:
                return None, [], None, rows
            row = s.get(VersionRow, (ds.id, ds.latest_version))
            assert row is not None
            base = catalog.to_version(s, ds, row)
            files = catalog.file_rows(s, ds, row)
            schema = catalog.arrow_schema(row) if appending else None
            if appending and base.ref not in [p.ref for p in rows]:
                rows.insert(0, _Parent(ds.id, row.id, base.ref))
            return base, files, schema, rows

    def ingest(
        self,
        reader: Reader,
        name: str,
        options: IngestOptions,
        *,
        suite: Suite | None,
        progress: Progress | None = None,
    ) -> IngestResult:
        """Stage, check and publish ``reader`` as a version of ``name`` under ``options``
        (``options.suite`` arrives parsed as ``suite``; reader options are already applied)."""
        started = time.perf_counter()
        for tag in options.tags:
            check_name(tag, "tag")
        appending = options.mode is IngestMode.APPEND
        base, base_files, base_schema, parent_rows = self.read_base(
            name, options.parents, appending
        )
        appending = appending and base is not None
        workdir = self.workdir()
        try:
            staged = stage(
                reader,
                workdir,
                base_schema=base_schema,
                suite=suite,
                on_fail=options.on_fail,
                # An append's staged rows are only the new part of the version: its profile
                # would describe them, not the version. It is computed on first use instead.
                want_profile=options.profile and not appending,
                progress=progress,
            )
            columns = catalog.columns_of(staged.schema)
            changes = None
            if base is not None:
                changes = catalog.schema_changes(base.columns, columns, base.ref)
                if changes.breaking and not options.allow_breaking:
                    raise Conflict(
                        f"Ingesting into {name!r} would be a breaking schema change from "
                        f"{base.ref} ({changes.summary()}); pass allow_breaking=True "
                        "(--allow-breaking) if it is intended",
                        details={"schema_changes": changes.to_json()},
                    )
            catalog.parse_annotations(options.annotations, [c.name for c in columns])
            if staged.gate_failed:
                return self.gate_failed(name, staged, suite, options.raise_on_fail, started, reader)
            info = reader.info | (options.source_info or {})
            claimed = info.pop(CLAIMED, None)
            draft = Draft(
                name=name,
                staged=staged,
                options=options,
                suite=suite,
                columns=columns,
                changes=changes,
                info=info,
                base=base,
                base_files=base_files if appending else [],
                parents=parent_rows,
                started=started,
                claimed=claimed if isinstance(claimed, dict) and claimed else None,
            )
            return self.publish(draft)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def gate_failed(
        self,
        name: str,
        staged: Staged,
        suite: Suite | None,
        raise_on_fail: bool,
        started: float,
        reader: Reader,
    ) -> IngestResult:
        assert staged.report is not None and suite is not None
        report = staged.report.model_dump(mode="json")
        with audited(self.db, "data.ingest", "dataset", name, {"gate": "failed"}) as scope:
            ds = scope.session.scalar(sa.select(DatasetRow).where(DatasetRow.name == name))
            if ds is None:
                ds = self.new_dataset(scope.session, name)
            report_id = new_id()
            records.add_report(
                scope.session,
                report_id,
                ds.id,
                None,
                suite=suite.name,
                success=False,
                gate="fail",
                report=report,
            )
        failed = [r.expectation_type for r in staged.report.results if not r.success]
        if raise_on_fail:
            refused = InvalidInput(
                f"Ingest into {name!r} not published: suite {suite.name!r} failed "
                f"{len(failed)} of {len(staged.report.results)} expectations "
                f"({', '.join(failed[:5])}); see report {report_id} or use "
                "on_fail='quarantine'/'warn'",
                details={"validation": report, "report_id": report_id},
            )
            setattr(refused, AUDITED_MARK, True)  # the record above says so already
            raise refused
        return IngestResult(
            dataset=name,
            version=None,
            ref=None,
            rows=staged.rows,
            published=False,
            validation=report,
            report_id=report_id,
            seconds=time.perf_counter() - started,
            input_bytes=reader.bytes_read,
            created=False,
        )

    def upload(self, name: str, vid: str, parts: list[Part], offset: int = 0) -> list[FileRow]:
        rows = []
        for i, part in enumerate(parts, start=offset):
            path = store_path(name, vid, i)
            info = self.store.put_file(path, part.path)
            self.store.protect(path)  # a published part never changes; DuckDB can't write it
            rows.append(
                FileRow(idx=i, path=path, rows=part.rows, bytes=info.size, sha256=info.sha256)
            )
        return rows

    def publish(self, d: Draft) -> IngestResult:
        """Digest and upload the staged parts (skipped when the version exists), then record
        everything in one audited transaction and move ``latest``."""
        name, staged, options = d.name, d.staged, d.options
        for f in d.base_files:  # an append reuses these parts: never carry a changed one on
            self.store.verify(f.path, f.sha256, f.bytes)
        reused = [Part(f.path, f.rows, f.bytes, f.sha256) for f in d.base_files]
        digest = version_digest(reused + staged.parts)
        vid = version_id(digest)
        q_vid = q_digest = None
        if staged.quarantine_parts:
            q_digest = version_digest(staged.quarantine_parts)
            q_vid = version_id(q_digest)
        with self.db.read() as s:
            ds = s.scalar(sa.select(DatasetRow).where(DatasetRow.name == name))
            exists = ds is not None and s.get(VersionRow, (ds.id, vid)) is not None
        new_files: list[FileRow] = []
        q_files: list[FileRow] = []
        if not exists:
            new_files = self.upload(name, vid, staged.parts, offset=len(reused))
            if q_vid is not None:
                q_files = self.upload(quarantine_name(name), q_vid, staged.quarantine_parts)
        ref = f"{name}@{vid}"
        with audited(self.db, "data.ingest", "dataset_version", ref) as scope:
            s = scope.session
            self.lock(s, name)
            ds = s.scalar(sa.select(DatasetRow).where(DatasetRow.name == name))
            base = d.base
            if reused and base is not None and ds is not None and ds.latest_version != base.id:
                # Another append landed since we read the base: publishing ours would drop
                # its rows from the new latest version.
                raise Conflict(
                    f"Dataset {name!r} moved from {base.ref} to {name}@{ds.latest_version} "
                    "while this append was staged; retry it on the new latest version",
                    details={"base": base.ref, "latest": ds.latest_version},
                )
            if ds is None:
                ds = self.new_dataset(s, name, project=options.project or "default")
            elif options.project and ds.project != options.project:
                ds.project = options.project
            row = s.get(VersionRow, (ds.id, vid))
            created = row is None
            scope.details["created"] = created
            scope.details.update(audit_source(d.info))
            transform_id = None
            if options.transform is not None:
                inputs = [p.ref for p in d.parents]
                transform_id = self.add_transform(s, options.transform, inputs, ref)
            if row is None:
                if not new_files and staged.parts:
                    raise Conflict(
                        f"Version {ref} appeared and vanished during the ingest; retry it",
                        details={"version": vid},
                    )
                q_ref = None
                if q_vid is not None and staged.quarantine_schema is not None:
                    q_ref = self.add_quarantine(
                        s, name, q_vid, q_digest or "", staged, q_files, d.info, ref
                    )
                row = self.add_version(s, ds, d, vid, digest, new_files, transform_id, q_ref)
            report_id = None
            if staged.report is not None and d.suite is not None:
                report_id = new_id()
                records.add_report(
                    s,
                    report_id,
                    ds.id,
                    vid,
                    suite=d.suite.name,
                    success=staged.report.success,
                    gate=options.on_fail.value,
                    report=staged.report.model_dump(mode="json"),
                )
            records.set_tags(s, ds.id, vid, options.tags)
            records.set_stream_position(s, ds.id, vid, d.info)
            ds.latest_version = vid
            ds.updated_at = utcnow()
            s.flush()
            version = catalog.to_version(s, ds, row)
            faults.point("data.publish.transaction")  # every row written, not committed
        return IngestResult(
            dataset=name,
            version=vid,
            ref=ref,
            rows=version.rows,
            bytes=version.bytes,
            quarantined_rows=version.quarantined_rows,
            quarantine=version.quarantine,
            created=created,
            published=True,
            schema_changes=version.schema_changes,
            validation=staged.report.model_dump(mode="json") if staged.report else None,
            report_id=report_id,
            seconds=time.perf_counter() - d.started,
            input_bytes=staged.input_bytes,
        )

    def add_version(
        self,
        s: Session,
        ds: DatasetRow,
        d: Draft,
        vid: str,
        digest: str,
        new_files: list[FileRow],
        transform_id: str | None,
        q_ref: str | None,
    ) -> VersionRow:
        """The new version's row and its columns (annotations: explicit, else inherited from
        the base version), files, parents and profile."""
        staged, options = d.staged, d.options
        inherited = catalog.annotations_of(s, ds, d.base.id) if d.base is not None else {}
        explicit = catalog.parse_annotations(options.annotations, [c.name for c in d.columns])
        row = VersionRow(
            dataset_id=ds.id,
            id=vid,
            digest=digest,
            seq=ds.next_seq,
            kind=VersionKind.DATA.value,
            rows=sum(f.rows for f in d.base_files) + staged.rows,
            bytes=sum(f.bytes for f in d.base_files) + sum(f.bytes for f in new_files),
            num_files=len(d.base_files) + len(new_files),
            arrow_schema=base64.b64encode(schema_bytes(staged.schema)).decode(),
            source=json.dumps(d.info, default=str),
            claimed=json.dumps(d.claimed, default=str) if d.claimed else None,
            created_by=current().principal.name,
            created_at=utcnow(),
            transform_id=transform_id,
            run_id=options.run_id,
            schema_changes=json.dumps(d.changes.to_json()) if d.changes is not None else None,
            quarantine_version=q_ref,
            quarantined_rows=staged.quarantined_rows,
            quarantine_of=None,
            description=options.description,
        )
        ds.next_seq += 1
        s.add(row)
        s.flush()
        annotations = {c.name: explicit.get(c.name) or inherited.get(c.name) for c in d.columns}
        records.add_columns(
            s, ds.id, vid, d.columns, {k: v for k, v in annotations.items() if v is not None}
        )
        records.add_files(s, ds.id, vid, d.base_files, new_files)
        records.add_parents(s, ds.id, vid, [(p.dataset_id, p.version_id) for p in d.parents])
        if staged.profile is not None:
            records.add_profile(s, ds.id, vid, staged.profile)
        return row

    def add_quarantine(
        self,
        s: Session,
        name: str,
        q_vid: str,
        q_digest: str,
        staged: Staged,
        q_files: list[FileRow],
        info: dict[str, Any],
        of_ref: str,
    ) -> str:
        qname = quarantine_name(name)
        qds = s.scalar(sa.select(DatasetRow).where(DatasetRow.name == qname))
        if qds is None:
            qds = self.new_dataset(
                s,
                qname,
                kind=VersionKind.QUARANTINE,
                description=f"Rows set aside while ingesting {name!r}",
            )
        if s.get(VersionRow, (qds.id, q_vid)) is None:
            assert staged.quarantine_schema is not None
            s.add(
                VersionRow(
                    dataset_id=qds.id,
                    id=q_vid,
                    digest=q_digest,
                    seq=qds.next_seq,
                    kind=VersionKind.QUARANTINE.value,
                    rows=staged.quarantined_rows,
                    bytes=sum(f.bytes for f in q_files),
                    num_files=len(q_files),
                    arrow_schema=base64.b64encode(schema_bytes(staged.quarantine_schema)).decode(),
                    source=json.dumps(info, default=str),
                    created_by=current().principal.name,
                    created_at=utcnow(),
                    transform_id=None,
                    run_id=None,
                    schema_changes=None,
                    quarantine_version=None,
                    quarantined_rows=0,
                    quarantine_of=of_ref,
                    description="",
                )
            )
            qds.next_seq += 1
            s.flush()
            records.add_columns(s, qds.id, q_vid, catalog.columns_of(staged.quarantine_schema))
            records.add_files(s, qds.id, q_vid, [], q_files)
        qds.latest_version = q_vid
        qds.updated_at = utcnow()
        return q_vid

    def add_transform(self, s: Session, t: dict[str, Any], inputs: list[str], output: str) -> str:
        code = str(t.get("code", ""))
        row = TransformRow(
            id=new_id(),
            kind=str(t.get("kind", "python")),
            name=str(t.get("name", ""))[:256],
            code=code,
            code_digest=str(t.get("code_digest") or lineage.code_digest(code)),
            git_commit=t.get("git_commit"),
            inputs=json.dumps(inputs),
            output=output,
            created_by=current().principal.name,
            created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        return row.id
