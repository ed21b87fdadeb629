"""Where version data lives: canonical Parquet parts, digests, the artifact store, DuckDB.

**Canonical parts.** :class:`PartWriter` re-chunks any stream of record batches into row
groups of exactly :data:`ROWS_PER_GROUP` rows and files of exactly :data:`ROWS_PER_FILE` rows
(only the last group/file is shorter), each group written from contiguous arrays with the
fixed :data:`PARQUET_OPTIONS`, and the schema stripped of metadata. So the same rows in the
same order with the same Arrow schema give byte-identical parts, whichever way the input was
batched (a CSV, a DataFrame, a SQL cursor). The bytes also carry the writer's version string:
a pyarrow upgrade that changes them makes identical data a new version (never a wrong one).

**Digest.** A version's digest is ``sha256("strata-dataset-v1\\n" + "<part sha256> <rows>\\n"
for each part in order)`` and its id the first 16 hex digits (:func:`version_digest`).

**Layout.** Parts are staged in a local temp directory, then uploaded to
``datasets/<name>/<version>/part-NNNNN.parquet`` in the artifact store; the version becomes
visible only when its database row commits, after every part is stored.

**Reading.** :class:`VersionFiles` turns stored paths into what DuckDB and pyarrow open: local
paths for a local store; ``s3://`` URLs read through an fsspec filesystem registered with
DuckDB (and wrapped for pyarrow) for an S3 store.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from strata.backends.artifacts import ArtifactStore
from strata.core.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow.dataset

ROWS_PER_GROUP = 128 * 1024
GROUPS_PER_FILE = 32
ROWS_PER_FILE = ROWS_PER_GROUP * GROUPS_PER_FILE
PARQUET_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "compression": "snappy",
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_size": 1024 * 1024,
    "data_page_version": "1.0",
    "write_page_index": False,
    "store_schema": True,
}
DIGEST_PREFIX = b"strata-dataset-v1\n"


@dataclass(frozen=True)
class Part:
    """A finished Parquet part (local while staged; ``path`` is its store path once stored)."""

    path: str
    rows: int
    bytes: int
    sha256: str


def canonical_schema(schema: pa.Schema) -> pa.Schema:
    """The schema without metadata (pandas/arrow annotations would make equal data differ)."""
    return pa.schema([f.remove_metadata() for f in schema]).remove_metadata()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def version_digest(parts: Sequence[Part]) -> str:
    """The content digest of a version made of ``parts`` in order (see the module doc)."""
    digest = hashlib.sha256(DIGEST_PREFIX)
    for part in parts:
        digest.update(f"{part.sha256} {part.rows}\n".encode())
    return digest.hexdigest()


def version_id(digest: str) -> str:
    return digest[:16]


class PartWriter:
    """Writes batches of one schema as canonical Parquet parts into ``directory``.

    ``write`` buffers at most one row group (plus the incoming batch); ``close`` flushes the
    rest and returns the parts in order. At least one part is always produced, so an empty
    version still has a schema on disk.
    """

    def __init__(self, directory: str, schema: pa.Schema, prefix: str = "part") -> None:
        self.directory = directory
        self.schema = canonical_schema(schema)
        self.prefix = prefix
        self.rows = 0
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._file_rows = 0
        self._current: str | None = None
        self._parts: list[Part] = []
        os.makedirs(directory, exist_ok=True)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append rows; their schema must equal the writer's (modulo metadata)."""
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(self.schema, check_metadata=False):
            batch = batch.cast(self.schema) if batch.schema.names == self.schema.names else batch
            if not batch.schema.equals(self.schema, check_metadata=False):
                raise InvalidInput(
                    f"batch schema {batch.schema} does not match the dataset schema {self.schema}"
                )
        batches = batch.to_batches() if isinstance(batch, pa.Table) else [batch]
        for b in batches:
            self._buffer.append(b)
            self._buffered += b.num_rows
            self.rows += b.num_rows
        while self._buffered >= ROWS_PER_GROUP:
            self._flush(ROWS_PER_GROUP)

    def _flush(self, n: int) -> None:
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        group, rest = table.slice(0, n), table.slice(n)
        self._buffer = rest.to_batches() if rest.num_rows else []
        self._buffered = rest.num_rows
        self._write_group(group.combine_chunks())

    def _write_group(self, group: pa.Table) -> None:
        if self._writer is None:
            self._current = os.path.join(
                self.directory, f"{self.prefix}-{len(self._parts):05d}.parquet"
            )
            self._writer = pq.ParquetWriter(self._current, self.schema, **PARQUET_OPTIONS)
        self._writer.write_table(group, row_group_size=ROWS_PER_GROUP)
        self._file_rows += group.num_rows
        if self._file_rows >= ROWS_PER_FILE:
            self._finish_file()

    def _finish_file(self) -> None:
        assert self._writer is not None and self._current is not None
        self._writer.close()
        size = os.path.getsize(self._current)
        self._parts.append(Part(self._current, self._file_rows, size, file_sha256(self._current)))
        self._writer, self._current, self._file_rows = None, None, 0

    def close(self) -> list[Part]:
        if self._buffered:
            self._flush(self._buffered)
        if self._writer is not None:
            self._finish_file()
        if not self._parts:
            self._write_group(self.schema.empty_table())
            self._finish_file()
        return list(self._parts)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_parts(directory: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> list[Part]:
    """Write ``batches`` (of ``schema``) as canonical parts into ``directory``."""
    writer = PartWriter(directory, schema)
    try:
        for batch in batches:
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def store_path(dataset: str, version: str, index: int) -> str:
    return f"datasets/{dataset}/{version}/part-{index:05d}.parquet"


class VersionFiles:
    """Opens stored parts for DuckDB and pyarrow, locally or on S3."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._fs: Any = None

    @property
    def remote(self) -> bool:
        return self.store.is_remote

    def filesystem(self) -> Any:
        """The fsspec filesystem for an S3 store (None for a local one), as the store
        configures it (one place for the S3 endpoint)."""
        if self._fs is None:
            self._fs = self.store.filesystem()
        return self._fs

    def location(self, path: str) -> str:
        """What DuckDB/pyarrow open for a store path: a local path or an ``s3://`` URL."""
        uri = self.store.uri_for(path)
        if uri.startswith("file:"):
            return unquote(urlsplit(uri).path)
        return uri

    def connect(self, *, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB connection that can read this store's parts."""
        con = duckdb.connect(":memory:")
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        fs = self.filesystem()
        if fs is not None:
            con.register_filesystem(fs)
        return con

    def arrow_dataset(self, paths: Sequence[str]) -> pyarrow.dataset.Dataset:
        import pyarrow.dataset as ds

        locations = [self.location(p) for p in paths]
        fs = self.filesystem()
        if fs is None:
            return ds.dataset(locations, format="parquet")
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        stripped = [loc.removeprefix("s3://") for loc in locations]
        return ds.dataset(stripped, format="parquet", filesystem=PyFileSystem(FSSpecHandler(fs)))


def relation_batches(
    con: duckdb.DuckDBPyConnection, sql: str, batch_rows: int = 64 * 1024
) -> Iterator[pa.RecordBatch]:
    """Stream the result of ``sql`` as record batches (bounded memory)."""
    yield from con.sql(sql).to_arrow_reader(batch_rows)


def schema_bytes(schema: pa.Schema) -> bytes:
    return bytes(schema.serialize())


def schema_from_bytes(data: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(data))
