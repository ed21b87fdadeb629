"""Source readers: anything ingestible → a stream of Arrow record batches of one schema.

Sources: pandas DataFrames, Arrow tables/batches/readers, any object exporting an Arrow C
stream (``__arrow_c_stream__``: Polars, DuckDB relations, ...), CSV / Parquet / JSON Lines
files given as a local path, a directory, a glob or any fsspec URL (``s3://``, ``https://``,
optionally compressed), and a SQL query against a SQLAlchemy URL.

Everything streams: files are read block by block, SQL results partition by partition, and at
most a few blocks are held at once, so inputs larger than memory ingest in bounded RSS.

Rows that cannot be read are never dropped silently: they go to the :class:`BadRowSink` with
their 1-based physical line number (the header is line 1) and a reason (files: see
:mod:`strata.data.readers`, which also holds :func:`~strata.data.readers.open_reader`, the
dispatch over every kind of source).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from strata.core.arrow import ArrowData, as_arrow_data
from strata.core.config import redact_uri
from strata.core.errors import InvalidInput, Unavailable

BLOCK_BYTES = 4 * 1024 * 1024
BATCH_ROWS = 64 * 1024


@dataclass
class BadRow:
    line: int | None
    reason: str
    raw: str | None
    source: str
    row: int | None = None


BAD_ROW_SCHEMA = pa.schema(
    [
        ("_line", pa.int64()),
        ("_row", pa.int64()),
        ("_reason", pa.string()),
        ("_raw", pa.string()),
        ("_source", pa.string()),
    ]
)


class BadRowSink:
    """Collects unreadable rows; spills them to a Parquet file past a few thousand rows."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self._rows: list[BadRow] = []
        self._writer: pq.ParquetWriter | None = None

    def add(self, row: BadRow) -> None:
        self.count += 1
        self._rows.append(row)
        if len(self._rows) >= 8192:
            self._spill()

    def _spill(self) -> None:
        if not self._rows:
            return
        table = pa.table(
            {
                "_line": [r.line for r in self._rows],
                "_row": [r.row for r in self._rows],
                "_reason": [r.reason for r in self._rows],
                "_raw": [r.raw for r in self._rows],
                "_source": [r.source for r in self._rows],
            },
            schema=BAD_ROW_SCHEMA,
        )
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, BAD_ROW_SCHEMA)
        self._writer.write_table(table)
        self._rows = []

    def close(self) -> str | None:
        """The Parquet file holding every bad row, or None when there were none."""
        self._spill()
        if self._writer is None:
            return None
        self._writer.close()
        return self.path


@dataclass
class Reader:
    """A source opened for reading. ``batches`` may be iterated once."""

    info: dict[str, Any]
    display: str
    batches_fn: Callable[[BadRowSink, Reader], Iterator[pa.RecordBatch]]
    total_bytes: int | None = None
    bytes_read: int = 0
    rows_read: int = 0
    schema: pa.Schema | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def batches(self, bad: BadRowSink) -> Iterator[pa.RecordBatch]:
        for batch in self.batches_fn(bad, self):
            if self.schema is None:
                self.schema = normalize_schema(batch.schema)
            batch = conform(batch, self.schema, self.display)
            self.rows_read += batch.num_rows
            yield batch


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """Metadata stripped; large_string/large_binary and the view types as string/binary (pandas
    3 emits large_*, Polars string_view), so the same data reads to the same schema — and the
    same version id — from every source."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
            t = pa.binary()
        fields.append(pa.field(f.name, t, f.nullable))
    return pa.schema(fields)


def conform(batch: pa.RecordBatch, schema: pa.Schema, display: str) -> pa.RecordBatch:
    """``batch`` cast to ``schema``; InvalidInput naming the column when that fails."""
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    if batch.schema.names != schema.names:
        raise InvalidInput(
            f"Source {display}: columns {batch.schema.names} do not match the first part's "
            f"columns {schema.names}",
            details={"expected": schema.names, "received": batch.schema.names},
        )
    arrays = []
    for col, f in zip(batch.columns, schema, strict=True):
        try:
            arrays.append(col if col.type == f.type else col.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"Source {display}: column {f.name!r} holds {col.type} values that do not "
                f"convert to {f.type} (the type of its first part): {exc}",
                details={"column": f.name, "expected": str(f.type), "received": str(col.type)},
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def prefetch(it: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``it`` in a thread, ``depth`` items ahead (reading overlaps writing)."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:
            q.put(("error", exc))

    thread = threading.Thread(target=run, name="strata-ingest-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                continue
        thread.join()


# -- in-memory sources ------------------------------------------------------------------------
def _table_reader(table: pa.Table, kind: str) -> Reader:
    def batches(_: BadRowSink, r: Reader) -> Iterator[pa.RecordBatch]:
        for b in table.to_batches(max_chunksize=BATCH_ROWS):
            r.bytes_read += b.nbytes
            yield b
        if table.num_rows == 0:
            yield empty_batch(table)

    return Reader({"kind": kind}, f"the {kind}", batches, total_bytes=table.nbytes)


def empty_batch(table: pa.Table) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([], type=f.type) for f in table.schema], schema=table.schema
    )


def memory_reader(obj: Any) -> Reader | None:
    """A reader for in-memory data, or None if ``obj`` is not a known in-memory type (see
    :func:`strata.core.arrow.as_arrow_data`)."""
    data = as_arrow_data(obj)
    return None if data is None else arrow_reader(data)


def arrow_reader(data: ArrowData) -> Reader:
    """A reader over in-memory Arrow data."""
    if data.table is not None:
        return _table_reader(data.table, data.kind)
    stream = data.stream
    assert stream is not None

    def batches(_: BadRowSink, r: Reader) -> Iterator[pa.RecordBatch]:
        seen = False
        for b in stream:
            seen = True
            r.bytes_read += b.nbytes
            yield b
        if not seen:
            yield empty_batch(stream.schema.empty_table())

    return Reader({"kind": "arrow_stream", "type": data.kind}, f"the {data.kind}", batches)


# -- SQL --------------------------------------------------------------------------------------
def sql_reader(query: str, url: str) -> Reader:
    """A reader over ``query``'s result on the database at SQLAlchemy ``url`` (streamed).

    Errors carry the database's own message with any password masked: Unavailable when the
    database cannot be reached, InvalidInput when the query fails.
    """
    import sqlalchemy as sa

    shown = redact_uri(url)
    if not query or not query.strip():
        raise InvalidInput("The SQL query is empty", details={"field": "query"})
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise InvalidInput(
            f"Cannot use SQL source URL {shown!r}: {redact_uri(str(exc))}", details={"field": "url"}
        ) from None

    def db_message(exc: BaseException) -> str:
        orig = getattr(exc, "orig", None) or exc
        return redact_uri(" ".join(str(orig).split()))[:500]

    def batches(_: BadRowSink, r: Reader) -> Iterator[pa.RecordBatch]:
        try:
            conn = engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise Unavailable(
                f"SQL source {shown} cannot be reached: {db_message(exc)}",
                details={"source": shown},
            ) from None
        try:
            try:
                result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(
                    sa.text(query)
                )
                names = list(result.keys())
                types: list[pa.DataType | None] = [None] * len(names)
                scales = _decimal_scales(result, len(names))
                seen = False
                for rows in result.partitions(BATCH_ROWS):
                    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
                    arrays = []
                    for i, values in enumerate(columns):
                        array = _sql_array(list(values), types[i], names[i], shown)
                        if types[i] is None and array.type != pa.null():
                            if pa.types.is_decimal(array.type):
                                # pyarrow infers precision from the first value: widen
                                prec, scale = scales[i] or (38, array.type.scale)
                                array = array.cast(pa.decimal128(prec, scale))
                            types[i] = array.type
                        arrays.append(array)
                    batch = pa.RecordBatch.from_arrays(arrays, names=names)
                    if r.schema is not None:
                        batch = _promote_nulls(batch, r.schema)
                    r.bytes_read += batch.nbytes
                    seen = True
                    yield batch
                if not seen:
                    yield pa.RecordBatch.from_arrays(
                        [pa.array([], type=pa.null()) for _ in names], names=names
                    )
            except sa.exc.SQLAlchemyError as exc:
                raise InvalidInput(
                    f"SQL query on {shown} failed: {db_message(exc)}", details={"source": shown}
                ) from None
        finally:
            conn.close()
            engine.dispose()

    return Reader({"kind": "sql", "url": shown, "query": query}, f"SQL query on {shown}", batches)


def _decimal_scales(result: Any, n: int) -> list[tuple[int, int] | None]:
    """(precision, scale) per column from the DB-API cursor description, where it says."""
    out: list[tuple[int, int] | None] = [None] * n
    cursor = getattr(result, "cursor", None)
    for i, d in enumerate(getattr(cursor, "description", None) or []):
        known = i < n and len(d) >= 6 and isinstance(d[4], int) and isinstance(d[5], int)
        if known and 0 < d[4] <= 38 and 0 <= d[5] <= d[4]:
            out[i] = (d[4], d[5])
    return out


def _sql_array(values: list[Any], known: pa.DataType | None, name: str, shown: str) -> pa.Array:
    try:
        return pa.array(values, type=known) if known is not None else pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise InvalidInput(
            f"SQL source {shown}: column {name!r} mixes value types Arrow cannot hold in one "
            f"column ({exc}); CAST it in the query",
            details={"column": name},
        ) from None


def _promote_nulls(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Columns typed null in the first batch stay null-typed; a later value is a hard error."""
    for i, f in enumerate(schema):
        if f.type == pa.null() and batch.column(i).type != pa.null():
            raise InvalidInput(
                f"SQL column {f.name!r} was all NULL in the first {BATCH_ROWS} rows, so its type "
                "is unknown; CAST it in the query",
                details={"column": f.name},
            )
    return batch
