"""The embedded data service: metadata in the DB, Parquet parts in the artifact store."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import sqlalchemy as sa

from strata.backends.context import Backends
from strata.core.clock import utcnow
from strata.core.errors import AlreadyExists, InvalidInput, NotFound
from strata.core.page import Page
from strata.core.parse import parse_enum, parse_options
from strata.core.staging import make_workdir
from strata.data import catalog, quality, refusals
from strata.data.models import (
    QUARANTINE_SUFFIX,
    ColumnAnnotation,
    ConsumeOptions,
    ConsumeResult,
    DataFile,
    Dataset,
    DatasetQuery,
    DatasetVersion,
    Direction,
    IngestMode,
    IngestOptions,
    IngestResult,
    LineageGraph,
    StoredReport,
    StreamPosition,
    Transform,
    TransformOptions,
    VersionDiff,
    VersionKind,
    check_name,
    with_as_of,
)
from strata.data.records import jsonable
from strata.data.service import DataService, OnBatch, Progress, part_of
from strata.data.tables import (
    ColumnRow,
    DatasetRow,
    DatasetTagRow,
    StreamPositionRow,
    TransformRow,
    VersionTagRow,
)
from strata.governance import events
from strata.governance.audit import audited

if TYPE_CHECKING:
    import threading

    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as pads

    from strata.backends.artifacts import ArtifactStore
    from strata.data.commit import Committer
    from strata.data.profiles.model import DatasetProfile
    from strata.data.storage import VersionFiles
    from strata.data.validation import Suite, ValidationReport

# Arrow, DuckDB and the write path are imported where they are used, not here: `strata data
# list` and the other metadata commands must not pay for them (docs/architecture.md, CLI startup).


def _load_suite(suite: Suite | str | Path | dict[str, Any]) -> Suite:
    from strata.data.validation import Suite as SuiteModel
    from strata.data.validation import load_suite

    return suite if isinstance(suite, SuiteModel) else load_suite(suite)


FILE_CHUNK = 1024 * 1024


class EmbeddedData(DataService):
    """:class:`DataService` in this process."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.db = backends.db
        self.tmp_root = str(backends.settings.home / "tmp")
        #: Rate limit of the audit records of failed ingests and transforms.
        self.refusal_limit = events.refusal_limiter()

    @cached_property
    def store(self) -> ArtifactStore:
        """The artifact store (fsspec), opened on first use: metadata reads never need it."""
        return self.backends.artifacts

    @cached_property
    def vfiles(self) -> VersionFiles:
        from strata.data.storage import VersionFiles

        return VersionFiles(self.store)

    @cached_property
    def committer(self) -> Committer:
        from strata.data.commit import Committer

        return Committer(self.db, self.store, self.workdir)

    # -- helpers -------------------------------------------------------------------------------
    def workdir(self) -> str:
        """A fresh private directory under ``$STRATA_HOME/tmp`` (the caller removes it).

        Work directories of processes that died (even by SIGKILL) are swept first."""
        return make_workdir(self.tmp_root, "ingest-")

    def _storage_options(self, source: Any) -> dict[str, Any] | None:
        """S3 sources use the configured S3 endpoint (MinIO, moto...) like the store does."""
        return self.store.storage_options(source) if isinstance(source, str) else None

    # -- datasets ------------------------------------------------------------------------------
    def create_dataset(
        self,
        name: str,
        *,
        project: str = "default",
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str | None = None,
    ) -> Dataset:
        check_name(name)
        if name.endswith(QUARANTINE_SUFFIX):
            raise InvalidInput(
                f"Dataset names ending in {QUARANTINE_SUFFIX!r} are reserved for quarantines",
                details={"field": "name"},
            )
        with audited(self.db, "data.create_dataset", "dataset", name) as scope:
            self.committer.lock(scope.session, name)
            exists = scope.session.scalar(sa.select(DatasetRow.id).where(DatasetRow.name == name))
            if exists is not None:
                raise AlreadyExists(f"Dataset {name!r} already exists", details={"dataset": name})
            row = self.committer.new_dataset(
                scope.session,
                name,
                project=project,
                description=description,
                owner=owner,
                tags=tags,
            )
            return catalog.to_datasets(scope.session, [row])[0]

    def get_dataset(self, name: str) -> Dataset:
        with self.db.read() as s:
            return catalog.to_datasets(s, [catalog.dataset_row(s, name)])[0]

    def update_dataset(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Dataset:
        with audited(self.db, "data.update_dataset", "dataset", name) as scope:
            s = scope.session
            row = catalog.dataset_row(s, name)
            if project is not None:
                row.project = project or "default"
            if description is not None:
                row.description = description
            if owner is not None:
                row.owner = owner
            for key, value in (tags or {}).items():
                existing = s.get(DatasetTagRow, (row.id, key))
                if value == "" and existing is not None:
                    s.delete(existing)
                elif existing is not None:
                    existing.value = value
                elif value != "":
                    s.add(DatasetTagRow(dataset_id=row.id, key=key, value=value))
            row.updated_at = utcnow()
            s.flush()
            return catalog.to_datasets(s, [row])[0]

    def list_datasets_with(self, options: DatasetQuery) -> Page[Dataset]:
        with self.db.read() as s:
            return catalog.search(s, options)

    # -- versions ------------------------------------------------------------------------------
    def list_versions(
        self,
        name: str,
        *,
        max_results: int = 1000,
        page_token: str | None = None,
        newest_first: bool = False,
    ) -> Page[DatasetVersion]:
        with self.db.read() as s:
            ds = catalog.dataset_row(s, name)
            return catalog.versions_page(s, ds, max_results, page_token, newest_first)

    def get_version(self, ref: str) -> DatasetVersion:
        with self.db.read() as s:
            ds, row = catalog.resolve(s, ref)
            return catalog.to_version(s, ds, row)

    def tag_version(self, ref: str, tag: str) -> DatasetVersion:
        check_name(tag, "tag")
        if tag == "latest" or (len(tag) >= 4 and all(c in "0123456789abcdef" for c in tag)):
            raise InvalidInput(
                f"Tag {tag!r} would shadow 'latest' or a version id; pick a "
                "name that is not all hex digits",
                details={"field": "tag"},
            )
        with audited(self.db, "data.tag_version", "dataset_version", ref) as scope:
            ds, row = catalog.resolve(scope.session, ref)
            scope.resource_id = f"{ds.name}@{row.id}"
            scope.details["tag"] = tag
            existing = scope.session.get(VersionTagRow, (ds.id, tag))
            if existing is None:
                scope.session.add(
                    VersionTagRow(dataset_id=ds.id, tag=tag, version_id=row.id, created_at=utcnow())
                )
            else:
                existing.version_id, existing.created_at = row.id, utcnow()
            scope.session.flush()
            return catalog.to_version(scope.session, ds, row)

    def annotate(
        self, ref: str, annotations: dict[str, ColumnAnnotation | dict[str, Any]]
    ) -> DatasetVersion:
        with audited(self.db, "data.annotate", "dataset_version", ref) as scope:
            s = scope.session
            ds, row = catalog.resolve(s, ref)
            scope.resource_id = f"{ds.name}@{row.id}"
            cols = {
                c.name: c
                for c in s.scalars(
                    sa.select(ColumnRow).where(
                        ColumnRow.dataset_id == ds.id, ColumnRow.version_id == row.id
                    )
                )
            }
            parsed = catalog.parse_annotations(annotations, list(cols))
            for name, ann in parsed.items():
                c = cols[name]
                c.description, c.pii, c.semantic_type = ann.description, ann.pii, ann.semantic_type
            scope.details["columns"] = sorted(parsed)
            s.flush()
            return catalog.to_version(s, ds, row)

    def files(self, ref: str, *, as_of: str | None = None) -> list[DataFile]:
        ref = with_as_of(ref, as_of)
        with self.db.read() as s:
            ds, row = catalog.resolve(s, ref)
            return [
                DataFile(
                    index=f.idx,
                    path=f.path,
                    uri=self.store.uri_for(f.path),
                    rows=f.rows,
                    bytes=f.bytes,
                    sha256=f.sha256,
                )
                for f in catalog.file_rows(s, ds, row)
            ]

    def verified_files(self, ref: str) -> list[DataFile]:
        """The version's parts, each checked against the sha256 recorded at commit (hashed
        once per process while the file is unchanged); DigestMismatch names a changed part.

        Every read goes through here — DuckDB views, pyarrow, downloads — so a part rewritten
        on disk or in the bucket is never served as the version it claims to be."""
        files = self.files(ref)
        for f in files:
            self.store.verify(f.path, f.sha256, f.bytes)
        return files

    def locations(self, ref: str) -> list[str]:
        """What DuckDB/pyarrow open for the version's parts (local paths or s3:// URLs),
        verified (see :meth:`verified_files`)."""
        return [self.vfiles.location(f.path) for f in self.verified_files(ref)]

    # -- reading -------------------------------------------------------------------------------
    def read_arrow(
        self, ref: str, *, columns: Sequence[str] | None = None, as_of: str | None = None
    ) -> pa.Table:
        ref = with_as_of(ref, as_of)
        files = self.verified_files(ref)
        version = self.get_version(ref)
        missing = [c for c in columns or () if c not in version.column_names]
        if missing:
            raise InvalidInput(
                f"Version {version.ref} has no column {missing[0]!r}; existing columns: "
                f"{', '.join(version.column_names)}",
                details={"column": missing[0], "columns": version.column_names},
            )
        dataset = self.vfiles.arrow_dataset([f.path for f in files])
        return dataset.to_table(columns=list(columns) if columns else None)

    def arrow_dataset(self, ref: str) -> pads.Dataset:
        """A lazy Arrow dataset over the version's parts in row order, each verified first
        (see :meth:`verified_files`)."""
        return self.vfiles.arrow_dataset([f.path for f in self.verified_files(ref)])

    def duckdb(
        self,
        ref: str,
        *,
        con: duckdb.DuckDBPyConnection | None = None,
        view: str | None = None,
        as_of: str | None = None,
    ) -> duckdb.DuckDBPyRelation:
        from strata.data.sqltext import create_view

        locations = self.locations(with_as_of(ref, as_of))
        if con is None:
            con = self.vfiles.connect()
        elif self.vfiles.remote:
            con.register_filesystem(self.vfiles.filesystem())
        if view:
            create_view(con, view, locations)
            return con.view(view)
        from strata.data.sqltext import parquet_scan

        return con.sql(f"SELECT * FROM {parquet_scan(locations)}")

    def open_file(self, ref: str, index: int) -> tuple[DataFile, BinaryIO]:
        part = part_of(ref, self.files(ref), index)
        # verified before the first byte: a changed part is a DigestMismatch, not a cut stream
        self.store.verify(part.path, part.sha256, part.bytes)
        return part, cast(BinaryIO, self.store.open_read(part.path, chunk_size=FILE_CHUNK))

    # -- ingestion -----------------------------------------------------------------------------
    @refusals.ingest_audited
    def ingest_with(
        self,
        source: Any,
        name: str,
        options: IngestOptions,
        *,
        progress: Progress | None = None,
        label: str | None = None,
    ) -> IngestResult:
        check_name(name)
        if name.endswith(QUARANTINE_SUFFIX):
            raise InvalidInput(
                f"Cannot ingest into {name!r}: names ending in "
                f"{QUARANTINE_SUFFIX!r} are the quarantines' own",
                details={"field": "name"},
            )
        suite_obj = _load_suite(options.suite) if options.suite is not None else None
        sql_url = options.sql_url
        if options.connection is not None:
            if sql_url is not None:
                raise InvalidInput(
                    "Give either connection= (a registered connection) or sql_url=, not both",
                    details={"field": "connection"},
                )
            from strata.governance import connections

            sql_url = connections.resolve(self.db, options.connection)
        from strata.data.readers import open_reader

        reader = open_reader(
            source,
            format=options.format,
            sql_url=sql_url,
            delimiter=options.delimiter,
            column_types=options.column_types,
            label=label,
            storage_options=self._storage_options(source),
        )
        if options.connection is not None:
            reader.info["connection"] = options.connection
        return self.committer.ingest(reader, name, options, suite=suite_obj, progress=progress)

    @refusals.push_audited
    def push_rows(
        self,
        name: str,
        rows: list[dict[str, Any]] | bytes | str,
        *,
        mode: IngestMode | str = IngestMode.APPEND,
        source_info: dict[str, Any] | None = None,
    ) -> IngestResult:
        from strata.data.rows import rows_reader

        check_name(name)
        workdir = self.workdir()
        try:
            reader = rows_reader(rows, workdir)
            options = parse_options(
                IngestOptions,
                mode=parse_enum(IngestMode, mode, "mode"),
                source_info={"kind": "push"} | (source_info or {}),
                profile=False,
            )
            return self.committer.ingest(reader, name, options, suite=None)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def stream_position(self, name: str, stream: str) -> StreamPosition | None:
        with self.db.read() as s:
            ds = catalog.dataset_row(s, name)
            row = s.get(StreamPositionRow, (ds.id, stream))
            if row is None:
                return None
            return StreamPosition(
                dataset=name,
                stream=stream,
                offsets=json.loads(row.offsets),
                version=row.version_id,
                updated_at=row.updated_at,
            )

    def consume_with(
        self,
        uri: str,
        name: str,
        options: ConsumeOptions,
        *,
        on_batch: OnBatch | None = None,
        stop: threading.Event | None = None,
    ) -> ConsumeResult:
        from strata.backends.streams import open_source
        from strata.data.streaming import StreamTarget, consume

        check_name(name)
        source = open_source(uri, group=options.group or f"strata.{name}")
        target = StreamTarget(self, self.committer, self.arrow_dataset)
        return consume(target, source, name, options, on_batch=on_batch, stop=stop)

    # -- quality -------------------------------------------------------------------------------
    def validate(
        self, ref: str, suite: Suite | str | Path | dict[str, Any], *, sample_size: int = 20
    ) -> ValidationReport:
        suite_obj = _load_suite(suite)
        version = self.get_version(ref)
        locations = self.locations(version.ref)
        return quality.validate(self.db, self.vfiles, version, locations, suite_obj, sample_size)

    def list_reports(self, ref: str) -> list[StoredReport]:
        return quality.list_reports(self.db, ref)

    def profile(self, ref: str) -> DatasetProfile:
        version = self.get_version(ref)
        return quality.profile(self.db, self.vfiles, version, lambda: self.locations(version.ref))

    def suggest_suite(self, ref: str) -> Suite:
        from strata.data.profiling import suggest_suite

        suite: Suite = suggest_suite(self.profile(ref))
        return suite

    def diff(self, a: str, b: str) -> VersionDiff:
        va, vb = self.get_version(a), self.get_version(b)
        changes = catalog.schema_changes(va.columns, vb.columns, va.ref)
        columns: dict[str, Any] = {}
        if va.kind is VersionKind.DATA and vb.kind is VersionKind.DATA:
            from strata.data.profiling import compare_profiles

            columns = jsonable(compare_profiles(self.profile(va.ref), self.profile(vb.ref)))
        return VersionDiff(
            a=va.ref,
            b=vb.ref,
            schema_changes=changes,
            rows_a=va.rows,
            rows_b=vb.rows,
            same_content=va.digest == vb.digest,
            columns=columns,
        )

    def quarantine(self, ref: str) -> DatasetVersion | None:
        version = self.get_version(ref)
        return self.get_version(version.quarantine) if version.quarantine else None

    # -- lineage -------------------------------------------------------------------------------
    @refusals.transform_audited
    def transform_with(
        self, options: TransformOptions, *, fn: Callable[..., Any] | None = None
    ) -> IngestResult:
        from strata.data import lineage
        from strata.data.sandbox import sandbox
        from strata.data.sqltext import create_view

        options.check_code(fn)
        versions = {alias: self.get_version(ref) for alias, ref in options.named_inputs.items()}
        con = self.vfiles.connect()
        try:
            if options.sql is not None:
                allowed: list[str] = []
                for alias, v in versions.items():
                    allowed += self.locations(v.ref)
                    create_view(con, alias, self.locations(v.ref))
                sandbox(con, allowed)  # the SQL is the user's: it may read its inputs only
                reader, record = lineage.sql_step(
                    con, options.sql, list(versions), options.output, options.git_commit
                )
            else:
                assert fn is not None
                frames = {alias: self.read_pandas(v.ref) for alias, v in versions.items()}
                reader, record = lineage.python_step(
                    fn, frames, isinstance(options.inputs, dict), options.git_commit
                )
            ingest_options = parse_options(
                IngestOptions,
                on_fail=options.on_fail,
                allow_breaking=options.allow_breaking,
                parents=[v.ref for v in versions.values()],
                run_id=options.run_id,
                description=options.description,
                transform=record,
            )
            suite = _load_suite(options.suite) if options.suite is not None else None
            return self.committer.ingest(reader, options.output, ingest_options, suite=suite)
        finally:
            con.close()

    def get_transform(self, transform_id: str) -> Transform:
        with self.db.read() as s:
            t = s.get(TransformRow, transform_id)
            if t is None:
                raise NotFound(
                    f"Transform {transform_id!r} does not exist",
                    details={"transform": transform_id},
                )
            return Transform(
                id=t.id,
                kind=t.kind,
                name=t.name,
                code=t.code,
                code_digest=t.code_digest,
                git_commit=t.git_commit,
                inputs=json.loads(t.inputs),
                output=t.output,
                created_by=t.created_by,
                created_at=t.created_at,
            )

    def lineage(
        self, ref: str, *, direction: Direction | str = Direction.UP, depth: int = 5
    ) -> LineageGraph:
        from strata.data import lineage

        with self.db.read() as s:
            _, row = catalog.resolve(s, ref)
            return lineage.build(s, row, direction, depth)
