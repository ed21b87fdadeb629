"""File sources: CSV, Parquet and JSON Lines from local paths, globs, directories or URLs.

Files are read block by block (:data:`~strata.data.ingest.BLOCK_BYTES`). For CSV, rows with
the wrong number of fields are caught by pyarrow's invalid-row handler with their line
number. A value that does not convert to its column's type (inferred from the first block)
switches the file to a line-exact mode: it resumes after the rows already read, parses blocks
of whole lines with the fixed types and bisects a failing block down to the offending lines.
JSON Lines always runs that way: the schema comes from the first block, and a line that is
not a JSON object, does not match a column's type or has a field the schema lacks goes to
quarantine. Embedded newlines inside quoted CSV values are not supported (rows = lines).
Empty strings read as NULL in every column type.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from strata.core.config import redact_uri
from strata.core.errors import InvalidInput, StrataError
from strata.data.csvtypes import check_declared, declared_schema, parse_types
from strata.data.ingest import (
    BATCH_ROWS,
    BLOCK_BYTES,
    BadRow,
    BadRowSink,
    Reader,
    empty_batch,
    memory_reader,
    normalize_schema,
    sql_reader,
)
from strata.data.sources import (
    FORMATS,
    compression,
    detect_format,
    file_size,
    fs_error,
    open_source,
    resolve_files,
)

_CSV_COLUMN = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?")


# -- readers ----------------------------------------------------------------------------------
def file_reader(
    source: str,
    *,
    format: str | None = None,
    delimiter: str | None = None,
    column_types: dict[str, str] | None = None,
    storage_options: dict[str, Any] | None = None,
    label: str | None = None,
) -> Reader:
    """A reader over every file ``source`` names (in sorted order; one format, one schema).

    ``label`` replaces the file name in messages and in the quarantine's ``_source``."""
    fs, paths = resolve_files(source, storage_options)
    fmt = (format or detect_format(paths[0])).lower()
    if fmt == "json":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise InvalidInput(
            f"Unknown format {format!r}; expected one of {', '.join(FORMATS)}",
            details={"field": "format"},
        )
    sizes = [file_size(fs, p) for p in paths]
    total = None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)
    display = label or redact_uri(source)
    info: dict[str, Any] = {"kind": "file", "uri": display, "format": fmt}
    if len(paths) > 1:
        info["files"] = [redact_uri(p) for p in paths[:1000]]
    types = parse_types(column_types)
    if types and fmt != "csv":
        raise InvalidInput(
            f"Column types (--schema) apply to CSV sources; {fmt} files carry their own types",
            details={"field": "column_types"},
        )

    def batches(bad: BadRowSink, r: Reader) -> Iterator[pa.RecordBatch]:
        done = 0
        for path, size in zip(paths, sizes, strict=True):
            shown = label or redact_uri(path)
            r.extra["base"], r.extra["size"] = done, size
            if fmt == "csv":
                gen = _csv_batches(fs, path, shown, bad, r, delimiter, types)
            elif fmt == "jsonl":
                gen = _jsonl_batches(fs, path, shown, bad, r)
            else:
                gen = _parquet_batches(fs, path, shown, r)
            try:
                yield from gen
            except StrataError:
                raise
            except (OSError, EOFError, ValueError) as exc:
                if fs is not None and type(exc) is OSError:
                    raise fs_error(shown, exc) from None
                # A corrupt or truncated file (bad gzip stream, broken Parquet footer): the
                # caller's data, so a 400 naming the file, never a 500.
                reason = redact_uri(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
                packed = compression(path)
                raise InvalidInput(
                    f"Source {shown!r} cannot be read as {fmt}"
                    f"{f' ({packed})' if packed else ''}: {type(exc).__name__}: {reason[:300]}",
                    details={"source": shown},
                ) from None
            done += size or 0
            r.bytes_read = done

    return Reader(info, display, batches, total_bytes=total)


def _advance(r: Reader, f: Any) -> None:
    """Progress: the current file's bytes consumed so far (decompressed bytes for compressed
    files, capped at the file's size), on top of the files before it."""
    try:
        pos = int(f.tell())
    except (OSError, ValueError, AttributeError):
        return
    size = r.extra.get("size")
    if isinstance(size, int):
        pos = min(pos, size)
    r.bytes_read = int(r.extra.get("base", 0)) + pos


def _parquet_batches(fs: Any, path: str, shown: str, r: Reader) -> Iterator[pa.RecordBatch]:
    f = open_source(fs, path, shown)
    with f:
        try:
            pf = pq.ParquetFile(f)
        except pa.ArrowInvalid as exc:
            raise InvalidInput(f"Source {shown} is not a Parquet file: {exc}") from None
        if pf.metadata.num_rows == 0:
            yield empty_batch(pf.schema_arrow.empty_table())
            return
        yield from pf.iter_batches(batch_size=BATCH_ROWS)


def _csv_message(exc: BaseException, names: Sequence[str]) -> str:
    text = str(exc).splitlines()[0]
    m = _CSV_COLUMN.match(text)
    if m:
        idx = int(m.group(1))
        name = names[idx] if idx < len(names) else f"#{idx}"
        text = f"column {name!r}: " + text[m.end() :]
    return text


class _Pending:
    """Bad rows seen by the optimistic CSV pass, released once the rows around them are out."""

    def __init__(self, bad: BadRowSink) -> None:
        self.bad = bad
        self.rows: list[BadRow] = []
        self.released = 0

    def last_line(self, emitted: int) -> int:
        """The physical line of the last emitted row (header = line 1; rows = lines)."""
        last = 1 + emitted + self.released
        for line in sorted(p.line or 0 for p in self.rows):
            if line <= last:
                last += 1
        return last

    def release(self, upto: int | None) -> None:
        keep = []
        for row in self.rows:
            if upto is None or (row.line or 0) <= upto:
                self.bad.add(row)
                self.released += 1
            else:
                keep.append(row)
        self.rows = keep


def _csv_batches(
    fs: Any,
    path: str,
    shown: str,
    bad: BadRowSink,
    r: Reader,
    delimiter: str | None,
    types: dict[str, pa.DataType],
) -> Iterator[pa.RecordBatch]:
    delim = delimiter or ("\t" if ".tsv" in path.lower() else ",")
    pending = _Pending(bad)

    def handler(row: Any) -> str:
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        pending.rows.append(BadRow(row.number, reason, row.text, shown))
        return "skip"

    parse = pacsv.ParseOptions(delimiter=delim, invalid_row_handler=handler)
    fixed = dict(types)
    if r.schema is not None:  # later files of a glob keep the first file's types
        fixed = {f.name: f.type for f in r.schema} | fixed
    convert = pacsv.ConvertOptions(column_types=fixed, strings_can_be_null=True)
    emitted = 0
    schema: pa.Schema | None = None
    f = open_source(fs, path, shown)
    try:
        try:
            reader = pacsv.open_csv(
                f,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
                parse_options=parse,
                convert_options=convert,
            )
            schema = reader.schema
            check_declared(schema, types, shown)
            for batch in reader:
                emitted += batch.num_rows
                pending.release(pending.last_line(emitted))
                _advance(r, f)
                yield batch
        except pa.ArrowInvalid as exc:
            message = str(exc)
            if "Empty CSV" in message:
                raise InvalidInput(
                    f"Source file {shown!r} is empty: nothing to ingest", details={"source": shown}
                ) from None
            if schema is None and "conversion error" in message and types:
                # A declared type failed inside the first block: take the schema from that
                # block read with those columns as text, then go line-exact from the top.
                schema = declared_schema(
                    lambda: open_source(fs, path, shown), BLOCK_BYTES, parse, convert, types
                )
                if schema is not None:
                    check_declared(schema, types, shown)
            if schema is None or "conversion error" not in message:
                names = schema.names if schema is not None else []
                raise InvalidInput(
                    f"Source {shown} is not valid CSV: {_csv_message(exc, names)}"
                ) from None
        else:
            pending.release(None)
            if emitted == 0:
                yield empty_batch(schema.empty_table())
            return
    finally:
        f.close()
    # A value did not convert: resume after the rows already emitted, line-exact. Bad rows
    # past that point are dropped here because the exact pass finds them again.
    last = pending.last_line(emitted)
    pending.release(last)
    yield from _csv_exact(fs, path, shown, bad, r, schema, delim, last)


def _line_blocks(f: Any, skip_lines: int) -> Iterator[tuple[int, list[bytes]]]:
    """(line number of the first line, whole lines each ending in \\n) after ``skip_lines``."""
    line = 1
    carry = b""
    while True:
        chunk = f.read(BLOCK_BYTES)
        data = carry + chunk if carry else chunk
        if not data:
            return
        cut = data.rfind(b"\n") + 1 if chunk else len(data)
        if cut == 0:
            carry = data
            continue
        block, carry = data[:cut], data[cut:]
        pos = 0
        while skip_lines > 0 and pos < len(block):
            nl = block.find(b"\n", pos)
            pos = len(block) if nl < 0 else nl + 1
            skip_lines -= 1
            line += 1
        lines = [ln + b"\n" for ln in block[pos:].split(b"\n")]
        if block.endswith(b"\n"):
            lines.pop()
        if lines:
            yield line, lines
            line += len(lines)
        if not chunk:
            return


def _csv_exact(
    fs: Any,
    path: str,
    shown: str,
    bad: BadRowSink,
    r: Reader,
    schema: pa.Schema,
    delim: str,
    skip: int,
) -> Iterator[pa.RecordBatch]:
    names = list(schema.names)
    convert = pacsv.ConvertOptions(
        column_types={f.name: f.type for f in schema}, strings_can_be_null=True
    )

    def parse(first: int, lines: list[bytes]) -> Iterator[pa.RecordBatch]:
        rows: list[BadRow] = []

        def handler(row: Any) -> str:
            rows.append(
                BadRow(
                    first + row.number - 1,
                    f"expected {row.expected_columns} fields, found {row.actual_columns}",
                    row.text,
                    shown,
                )
            )
            return "skip"

        try:
            table = pacsv.read_csv(
                io.BytesIO(b"".join(lines)),
                read_options=pacsv.ReadOptions(
                    column_names=names, use_threads=False, block_size=BLOCK_BYTES * 2
                ),
                parse_options=pacsv.ParseOptions(delimiter=delim, invalid_row_handler=handler),
                convert_options=convert,
            )
        except pa.ArrowInvalid as exc:
            if len(lines) == 1:
                text = lines[0].decode("utf-8", "replace").rstrip("\r\n")
                bad.add(BadRow(first, _csv_message(exc, names), text, shown))
                return
            mid = len(lines) // 2
            yield from parse(first, lines[:mid])
            yield from parse(first + mid, lines[mid:])
            return
        for row in rows:
            bad.add(row)
        yield from table.to_batches(max_chunksize=BATCH_ROWS)

    f = open_source(fs, path, shown)
    with f:
        for first, lines in _line_blocks(f, skip):
            _advance(r, f)
            for batch in parse(first, lines):
                if batch.num_rows:
                    yield batch


def _jsonl_batches(
    fs: Any, path: str, shown: str, bad: BadRowSink, r: Reader
) -> Iterator[pa.RecordBatch]:
    lines_of = _JsonLines(bad, shown, r.schema)
    f = open_source(fs, path, shown)
    seen = False
    with f:
        for first, lines in _line_blocks(f, 0):
            _advance(r, f)
            if lines_of.schema is None:
                inferred = lines_of.infer(first, lines)
                if len(inferred) == 0:
                    continue
                lines_of.schema = normalize_schema(inferred)
            for batch in lines_of.parse(first, lines):
                if batch.num_rows:
                    seen = True
                    yield batch
    if not seen and lines_of.schema is not None:
        yield empty_batch(lines_of.schema.empty_table())


class _JsonLines:
    """Blocks of JSON lines → Arrow with pyarrow's reader; a block that fails is halved until
    the failing lines are found, and each goes to ``bad`` with its reason."""

    def __init__(self, bad: BadRowSink, shown: str, schema: pa.Schema | None) -> None:
        self.bad, self.shown, self.schema = bad, shown, schema

    @staticmethod
    def read(lines: list[bytes], explicit: pa.Schema | None) -> pa.Table:
        opts = (
            pajson.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="error")
            if explicit is not None
            else pajson.ParseOptions()
        )
        return pajson.read_json(
            io.BytesIO(b"".join(lines)),
            read_options=pajson.ReadOptions(use_threads=False, block_size=BLOCK_BYTES * 4),
            parse_options=opts,
        )

    def _bad(self, line: int, reason: str, raw: bytes) -> None:
        self.bad.add(
            BadRow(line, reason, raw.decode("utf-8", "replace").rstrip("\r\n"), self.shown)
        )

    @staticmethod
    def _not_an_object(raw: bytes) -> str | None:
        """Why ``raw`` is not a JSON object, or None when it is one."""
        import orjson

        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            return f"invalid JSON: {err}"
        if not isinstance(value, dict):
            return f"not a JSON object (found {type(value).__name__})"
        return None

    def parse(self, first: int, lines: list[bytes]) -> Iterator[pa.RecordBatch]:
        try:
            table = self.read(lines, self.schema)
        except pa.ArrowInvalid as exc:
            if len(lines) == 1:
                why = (
                    self._not_an_object(lines[0])
                    or str(exc)
                    .splitlines()[0]
                    .removeprefix("JSON parse error: ")
                    .split(" in row ")[0]
                )
                self._bad(first, why, lines[0])
                return
            mid = len(lines) // 2
            yield from self.parse(first, lines[:mid])
            yield from self.parse(first + mid, lines[mid:])
            return
        yield from table.to_batches(max_chunksize=BATCH_ROWS)

    def infer(self, first: int, lines: list[bytes]) -> pa.Schema:
        """The schema of the longest clean prefix of ``lines``; bad lines before it go out
        (blanked in ``lines``, so parsing does not report them twice)."""
        good: list[bytes] = []
        for i, ln in enumerate(lines):
            if not ln.strip():
                continue
            why = self._not_an_object(ln)
            if why is not None:
                self._bad(first + i, why, ln)
                lines[i] = b"\n"
                continue
            good.append(ln)
        if not good:
            return pa.schema([])
        lo, hi = 1, len(good)
        while lo < hi:  # the largest prefix that reads without a type conflict
            mid = (lo + hi + 1) // 2
            try:
                self.read(good[:mid], None)
                lo = mid
            except pa.ArrowInvalid:
                hi = mid - 1
        return self.read(good[:lo], None).schema


def open_reader(
    source: Any,
    *,
    format: str | None = None,
    sql_url: str | None = None,
    delimiter: str | None = None,
    column_types: dict[str, str] | None = None,
    storage_options: dict[str, Any] | None = None,
    label: str | None = None,
) -> Reader:
    """Dispatch on the kind of ``source`` (see the module doc)."""
    if sql_url is not None:
        if not isinstance(source, str):
            raise InvalidInput("A SQL source is a query string", details={"field": "source"})
        return sql_reader(source, sql_url)
    mem = memory_reader(source)
    if mem is not None:
        return mem
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str):
        if not source.strip():
            raise InvalidInput("The source is an empty string", details={"field": "source"})
        return file_reader(
            source,
            format=format,
            delimiter=delimiter,
            column_types=column_types,
            storage_options=storage_options,
            label=label,
        )
    raise InvalidInput(
        f"Cannot ingest a {type(source).__name__}: pass a DataFrame (pandas/Polars), an Arrow "
        "table or stream, a path, glob or URL, or a SQL query with sql_url=",
        details={"field": "source"},
    )
