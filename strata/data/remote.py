"""The data interface over HTTP (``/api/v1/data``).

Where the data goes: a local file is streamed to the server (``PUT /upload/{name}``); an
in-memory DataFrame/Arrow table is written to a temporary Parquet file first and uploaded the
same way (the server re-chunks it canonically, so the version id equals an embedded ingest's);
URLs and SQL queries are handed to the server, which reads them itself. Python transforms run
here, on downloaded inputs, and upload their output with the transform's record; SQL
transforms run on the server. Reading a version downloads its Parquet parts once into
``$STRATA_HOME/cache/datasets/<name>/<version>/`` (verified against their sha256; versions
are immutable, so the cache never goes stale).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

import orjson

from strata.core.arrow import ArrowData, as_arrow_data
from strata.core.code import git_commit, run_python_transform
from strata.core.config import Settings
from strata.core.errors import InvalidInput
from strata.core.page import Page
from strata.core.parse import parse_options
from strata.core.paths import local_files
from strata.core.staging import make_workdir
from strata.core.transport import HttpTransport
from strata.data.models import (
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
    parse_ref,
    with_as_of,
)
from strata.data.service import DataService, OnBatch, Progress, part_of

if TYPE_CHECKING:
    import threading

    import duckdb
    import pyarrow as pa

    from strata.data.expectations.report import ValidationReport
    from strata.data.expectations.suite import Suite
    from strata.data.profiles.model import DatasetProfile

P = "/api/v1/data"
UPLOAD_CHUNK = 1024 * 1024


_CACHE_DIGESTS: dict[str, tuple[tuple[int, ...], str]] = {}


def _sha256_file(path: Path) -> str:
    """The sha256 of a cached part, hashed again only when the file changed on disk (size,
    mtime, ctime, inode), so a tampered or truncated cache entry is never reused."""
    st = path.stat()
    key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    known = _CACHE_DIGESTS.get(str(path))
    if known is not None and known[0] == key:
        return known[1]
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(UPLOAD_CHUNK):
            digest.update(chunk)
    _CACHE_DIGESTS[str(path)] = (key, digest.hexdigest())
    return digest.hexdigest()


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _suite_json(suite: Suite | str | Path | dict[str, Any]) -> dict[str, Any]:
    """Parse the suite here (errors with line numbers come from this side), send it as JSON."""
    from strata.data.expectations.suite import Suite as SuiteModel
    from strata.data.expectations.suite import load_suite

    parsed = suite if isinstance(suite, SuiteModel) else load_suite(suite)
    return parsed.model_dump(mode="json")


def _wire(options: IngestOptions) -> dict[str, Any]:
    """The options as the REST body spells them (JSON). The suite is parsed here, so its
    errors (with line numbers) come from this side."""
    suite = _suite_json(options.suite) if options.suite is not None else None
    return options.model_dump(mode="json", exclude={"suite"}) | {"suite": suite}


class RemoteData(DataService):
    """:class:`DataService` against a ``strata server``; raises the server's error classes."""

    def __init__(self, http: HttpTransport, settings: Settings) -> None:
        self.http = http
        self.cache_root = settings.home / "cache" / "datasets"
        self.tmp_root = settings.home / "tmp"

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
        body = {
            "name": name,
            "project": project,
            "description": description,
            "tags": tags or {},
            "owner": owner,
        }
        return Dataset.model_validate(self.http.request("POST", f"{P}/datasets", json=body))

    def get_dataset(self, name: str) -> Dataset:
        return Dataset.model_validate(self.http.request("GET", f"{P}/datasets/{_q(name)}"))

    def update_dataset(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Dataset:
        body = {"project": project, "description": description, "owner": owner, "tags": tags}
        out = self.http.request("PATCH", f"{P}/datasets/{_q(name)}", json=body)
        return Dataset.model_validate(out)

    def list_datasets_with(self, options: DatasetQuery) -> Page[Dataset]:
        params = {
            "q": options.query,
            "project": options.project,
            "tag": options.tag,
            "column": options.column,
            "pii": None if options.pii is None else str(options.pii).lower(),
            "include_quarantine": str(options.include_quarantine).lower(),
            "max_results": options.max_results,
            "page_token": options.page_token,
        }
        out = self.http.request("GET", f"{P}/datasets", params=params)
        items = [Dataset.model_validate(d) for d in out["datasets"]]
        return Page[Dataset](items=items, next_page_token=out.get("next_page_token"))

    # -- versions ------------------------------------------------------------------------------
    def list_versions(
        self,
        name: str,
        *,
        max_results: int = 1000,
        page_token: str | None = None,
        newest_first: bool = False,
    ) -> Page[DatasetVersion]:
        params = {
            "max_results": max_results,
            "page_token": page_token,
            "newest_first": str(newest_first).lower(),
        }
        out = self.http.request("GET", f"{P}/datasets/{_q(name)}/versions", params=params)
        items = [DatasetVersion.model_validate(v) for v in out["versions"]]
        return Page[DatasetVersion](items=items, next_page_token=out.get("next_page_token"))

    def get_version(self, ref: str) -> DatasetVersion:
        parse_ref(ref)
        return DatasetVersion.model_validate(self.http.request("GET", f"{P}/versions/{_q(ref)}"))

    def tag_version(self, ref: str, tag: str) -> DatasetVersion:
        out = self.http.request("POST", f"{P}/versions/{_q(ref)}/tags", json={"tag": tag})
        return DatasetVersion.model_validate(out)

    def annotate(
        self, ref: str, annotations: dict[str, ColumnAnnotation | dict[str, Any]]
    ) -> DatasetVersion:
        body = {
            "annotations": {
                k: v.model_dump() if isinstance(v, ColumnAnnotation) else v
                for k, v in annotations.items()
            }
        }
        out = self.http.request("PUT", f"{P}/versions/{_q(ref)}/annotations", json=body)
        return DatasetVersion.model_validate(out)

    def files(self, ref: str, *, as_of: str | None = None) -> list[DataFile]:
        out = self.http.request("GET", f"{P}/versions/{_q(with_as_of(ref, as_of))}/files")
        return [DataFile.model_validate(f) for f in out["files"]]

    # -- ingestion -----------------------------------------------------------------------------
    def ingest_with(
        self,
        source: Any,
        name: str,
        options: IngestOptions,
        *,
        progress: Progress | None = None,
        label: str | None = None,
    ) -> IngestResult:
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        if (
            options.sql_url is not None
            or options.connection is not None
            or (isinstance(source, str) and "://" in source and not source.startswith("file:"))
        ):
            body = _wire(options) | {"source": source}
            out = self.http.request("POST", f"{P}/datasets/{_q(name)}/ingest", json=body)
            return IngestResult.model_validate(out)
        if isinstance(source, str):
            paths = local_files(source)
            if len(paths) != 1:
                raise InvalidInput(
                    f"{source!r} names {len(paths)} files; a remote ingest uploads one file: "
                    "ingest them one at a time, or give a URL the server reads (s3://...)",
                    details={"source": source},
                )
            filename = label or os.path.basename(paths[0])
            return self._upload(paths[0], filename, name, options, progress)
        return self._upload_memory(source, name, options, progress)

    def _upload_memory(
        self,
        source: Any,
        name: str,
        options: IngestOptions,
        progress: Progress | None,
        info: dict[str, Any] | None = None,
    ) -> IngestResult:
        """Write in-memory data to a temp Parquet file and upload it (the server reads it
        like any upload, so its checks and the version id are an embedded ingest's)."""
        data = source if isinstance(source, ArrowData) else as_arrow_data(source)
        if data is None:
            raise InvalidInput(
                f"Cannot ingest a {type(source).__name__}: pass a DataFrame, an Arrow table or "
                "stream, a path or URL, or a SQL query with sql_url=",
                details={"field": "source"},
            )
        import pyarrow.parquet as pq  # only for uploads: a metadata command loads no Arrow

        workdir = make_workdir(self.tmp_root, "upload-")
        try:
            path = os.path.join(workdir, "data.parquet")
            if data.table is not None:
                pq.write_table(data.table, path)
                info = info or {"kind": data.kind}
            else:
                assert data.stream is not None
                with pq.ParquetWriter(path, data.stream.schema) as writer:
                    for batch in data.stream:
                        writer.write_batch(batch)
                info = info or {"kind": "arrow_stream", "type": data.kind}
            options = options.model_copy(
                update={"format": "parquet", "source_info": info | (options.source_info or {})}
            )
            return self._upload(path, "data.parquet", name, options, progress)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _upload(
        self,
        path: str,
        filename: str,
        name: str,
        options: IngestOptions,
        progress: Progress | None,
    ) -> IngestResult:
        total = os.path.getsize(path)

        def chunks() -> Iterator[bytes]:
            sent = 0
            with open(path, "rb") as f:
                while chunk := f.read(UPLOAD_CHUNK):
                    sent += len(chunk)
                    if progress is not None:
                        progress(0, sent, total)
                    yield chunk

        params = {"filename": filename, "options": orjson.dumps(_wire(options)).decode()}
        out = self.http.request(
            "PUT",
            f"{P}/upload/{_q(name)}",
            params=params,
            content=chunks(),
            headers={"content-type": "application/octet-stream"},
        )
        return IngestResult.model_validate(out)

    def push_rows(
        self,
        name: str,
        rows: list[dict[str, Any]] | bytes | str,
        *,
        mode: IngestMode | str = IngestMode.APPEND,
        source_info: dict[str, Any] | None = None,
    ) -> IngestResult:
        if isinstance(rows, list):
            body, ctype = orjson.dumps(rows), "application/json"
        else:
            body = rows.encode() if isinstance(rows, str) else bytes(rows)
            ctype = "application/x-ndjson"
        out = self.http.request(
            "POST",
            f"{P}/datasets/{_q(name)}/rows",
            params={
                "mode": str(mode),
                "source_info": orjson.dumps(source_info).decode() if source_info else None,
            },
            content=body,
            headers={"content-type": ctype},
        )
        return IngestResult.model_validate(out)

    def stream_position(self, name: str, stream: str) -> StreamPosition | None:
        out = self.http.request(
            "GET", f"{P}/datasets/{_q(name)}/stream-position", params={"stream": stream}
        )
        pos = out.get("position")
        return None if pos is None else StreamPosition.model_validate(pos)

    def consume_with(
        self,
        uri: str,
        name: str,
        options: ConsumeOptions,
        *,
        on_batch: OnBatch | None = None,
        stop: threading.Event | None = None,
    ) -> ConsumeResult:
        raise InvalidInput(
            "Stream consumers run next to the metadata database: unset STRATA_URI (use the "
            "embedded client configured with the server's database and artifact store)",
            details={"field": "uri"},
        )

    # -- reading -------------------------------------------------------------------------------
    def download(self, ref: str) -> list[str]:
        """The version's parts as local files (downloaded once, verified, then cached)."""
        version = self.get_version(ref)
        folder = self.cache_root / version.dataset / version.id
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for f in self.files(version.ref):
            dest = folder / f"part-{f.index:05d}.parquet"
            if not (dest.is_file() and _sha256_file(dest) == f.sha256):
                self._fetch(version.ref, f, str(dest))
            out.append(str(dest))
        return out

    def open_file(self, ref: str, index: int) -> tuple[DataFile, BinaryIO]:
        """Downloads the version's parts once (verified, cached) and opens the local copy."""
        version = self.get_version(ref)
        part = part_of(version.ref, self.files(version.ref), index)
        return part, open(self.download(version.ref)[part.index], "rb")

    def _fetch(self, ref: str, f: DataFile, dest: str) -> None:
        self.http.download_verified(
            f"{P}/versions/{_q(ref)}/files/{f.index}",
            dest,
            what=f"Part {f.index} of {ref}",
            expected=f.sha256,
            details={"index": f.index},
        )

    def read_arrow(
        self, ref: str, *, columns: Sequence[str] | None = None, as_of: str | None = None
    ) -> pa.Table:
        version = self.get_version(with_as_of(ref, as_of))
        missing = [c for c in columns or () if c not in version.column_names]
        if missing:
            raise InvalidInput(
                f"Version {version.ref} has no column {missing[0]!r}; existing columns: "
                f"{', '.join(version.column_names)}",
                details={"column": missing[0], "columns": version.column_names},
            )
        import pyarrow.dataset as ds

        paths = self.download(version.ref)
        return ds.dataset(paths, format="parquet").to_table(
            columns=list(columns) if columns else None
        )

    def duckdb(
        self,
        ref: str,
        *,
        con: duckdb.DuckDBPyConnection | None = None,
        view: str | None = None,
        as_of: str | None = None,
    ) -> duckdb.DuckDBPyRelation:
        import duckdb as _duckdb

        paths = self.download(with_as_of(ref, as_of))
        con = con if con is not None else _duckdb.connect(":memory:")
        rel = con.read_parquet(paths)
        if view:
            rel.create_view(view, replace=True)
            return con.view(view)
        return rel

    # -- quality -------------------------------------------------------------------------------
    def validate(
        self, ref: str, suite: Suite | str | Path | dict[str, Any], *, sample_size: int = 20
    ) -> ValidationReport:
        from strata.data.expectations.report import ValidationReport

        body = {"suite": _suite_json(suite), "sample_size": sample_size}
        out = self.http.request("POST", f"{P}/versions/{_q(ref)}/validate", json=body)
        return ValidationReport.model_validate(out)

    def list_reports(self, ref: str) -> list[StoredReport]:
        out = self.http.request("GET", f"{P}/versions/{_q(ref)}/reports")
        return [StoredReport.model_validate(r) for r in out["reports"]]

    def profile(self, ref: str) -> DatasetProfile:
        from strata.data.profiles.model import DatasetProfile

        out = self.http.request("GET", f"{P}/versions/{_q(ref)}/profile")
        return DatasetProfile.model_validate(out)

    def suggest_suite(self, ref: str) -> Suite:
        from strata.data.expectations.suite import Suite

        out = self.http.request("GET", f"{P}/versions/{_q(ref)}/suggest-suite")
        return Suite.model_validate(out)

    def diff(self, a: str, b: str) -> VersionDiff:
        out = self.http.request("GET", f"{P}/diff", params={"a": a, "b": b})
        return VersionDiff.model_validate(out)

    def quarantine(self, ref: str) -> DatasetVersion | None:
        out = self.http.request("GET", f"{P}/versions/{_q(ref)}/quarantine")
        q = out.get("quarantine")
        return None if q is None else DatasetVersion.model_validate(q)

    # -- lineage -------------------------------------------------------------------------------
    def transform_with(
        self, options: TransformOptions, *, fn: Callable[..., Any] | None = None
    ) -> IngestResult:
        options.check_code(fn)
        if options.sql is not None:
            body = options.model_dump(mode="json", exclude={"suite"}) | {
                "inputs": options.named_inputs,
                "suite": _suite_json(options.suite) if options.suite is not None else None,
                "git_commit": options.git_commit or git_commit(),
            }
            out = self.http.request("POST", f"{P}/transforms", json=body)
            return IngestResult.model_validate(out)
        assert fn is not None
        # A Python transform runs here, on downloaded inputs; its output is uploaded with
        # the transform's record (kept as *claimed* by the server).
        named = options.named_inputs
        versions = {alias: self.get_version(ref) for alias, ref in named.items()}
        frames = {alias: self.read_pandas(v.ref) for alias, v in versions.items()}
        data, fname, record = run_python_transform(
            fn, frames, isinstance(options.inputs, dict), options.git_commit
        )
        return self._upload_memory(
            data,
            options.output,
            parse_options(
                IngestOptions,
                parents=[v.ref for v in versions.values()],
                run_id=options.run_id,
                description=options.description,
                allow_breaking=options.allow_breaking,
                suite=options.suite,
                on_fail=options.on_fail,
                transform=record,
            ),
            None,
            info={"kind": "transform", "function": fname},
        )

    def get_transform(self, transform_id: str) -> Transform:
        return Transform.model_validate(
            self.http.request("GET", f"{P}/transforms/{_q(transform_id)}")
        )

    def lineage(
        self, ref: str, *, direction: Direction | str = Direction.UP, depth: int = 5
    ) -> LineageGraph:
        out = self.http.request(
            "GET",
            f"{P}/versions/{_q(ref)}/lineage",
            params={"direction": str(direction), "depth": depth},
        )
        return LineageGraph.model_validate(out)
