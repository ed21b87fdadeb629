"""The ingest pipeline up to (not including) the database: read → stage → gate → profile.

Everything here works on local staged files in a private work directory: the reader runs a
couple of batches ahead in a thread while canonical Parquet parts are written; the suite gate
and the profile run as DuckDB SQL over those parts (out of core, ``memory_limit`` bounded).
The caller then digests the parts, uploads them and commits the version.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from strata.core.errors import InvalidInput
from strata.data.ingest import BAD_ROW_SCHEMA, BadRowSink, Reader, conform, prefetch
from strata.data.models import OnFail
from strata.data.sandbox import sandbox
from strata.data.sqltext import create_view, parquet_scan, quote_ident, sql_literal
from strata.data.storage import ROWS_PER_FILE, Part, PartWriter, relation_batches

if TYPE_CHECKING:
    from strata.data.profiles.model import DatasetProfile
    from strata.data.service import Progress
    from strata.data.validation import Suite, ValidationReport

DUCKDB_MEMORY = "1GB"
_PROGRESS_EVERY = 0.25  # seconds between progress callbacks


@dataclass
class Staged:
    """What a staged ingest holds: final data parts, quarantine parts, report, profile."""

    schema: pa.Schema
    parts: list[Part]
    rows: int
    read_rows: int
    input_bytes: int
    quarantine_schema: pa.Schema | None = None
    quarantine_parts: list[Part] = field(default_factory=list)
    quarantined_rows: int = 0
    unreadable_rows: int = 0
    report: ValidationReport | None = None
    gate_failed: bool = False
    profile: Any = None


def connect(
    memory_limit: str = DUCKDB_MEMORY, temp_dir: str | None = None
) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
    if temp_dir:
        con.execute(f"SET temp_directory = {sql_literal(temp_dir)}")
    return con


def read_to_parts(
    reader: Reader,
    workdir: str,
    *,
    base_schema: pa.Schema | None,
    progress: Progress | None,
) -> tuple[pa.Schema, list[Part], int, BadRowSink, str | None]:
    """Stream ``reader`` into canonical parts under ``workdir/data``.

    With ``base_schema`` (append mode) every batch is cast to it. Returns (schema, parts,
    rows, the bad-row sink, the bad-row file or None).
    """
    bad = BadRowSink(os.path.join(workdir, "unreadable.parquet"))
    writer: PartWriter | None = None
    last = 0.0
    try:
        for batch in prefetch(reader.batches(bad)):
            if writer is None:
                schema = base_schema if base_schema is not None else reader.schema
                assert schema is not None
                writer = PartWriter(os.path.join(workdir, "data"), schema)
            if base_schema is not None:
                batch = conform(batch, base_schema, reader.display)
            writer.write(batch)
            now = time.monotonic()
            if progress is not None and now - last >= _PROGRESS_EVERY:
                last = now
                progress(writer.rows, reader.bytes_read, reader.total_bytes)
    except BaseException:
        if writer is not None:
            writer.abort()
        bad.close()
        raise
    if writer is None:
        raise InvalidInput(f"{reader.display} holds no rows: nothing to ingest")
    parts = writer.close()
    bad_file = bad.close()
    if progress is not None:
        progress(writer.rows, reader.total_bytes or reader.bytes_read, reader.total_bytes)
    return writer.schema, parts, writer.rows, bad, bad_file


def _ordinal_sql(parts: list[Part]) -> str:
    """1-based row number of a staged row, from DuckDB's ``filename``/``file_row_number``."""
    cases = " ".join(
        f"WHEN {sql_literal(p.path)} THEN {i * ROWS_PER_FILE}" for i, p in enumerate(parts)
    )
    return f"(file_row_number + 1 + CASE filename {cases} ELSE 0 END)"


def quarantine_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(list(schema) + list(BAD_ROW_SCHEMA))


def _select_list(schema: pa.Schema) -> str:
    return ", ".join(quote_ident(n) for n in schema.names)


def stage(
    reader: Reader,
    workdir: str,
    *,
    base_schema: pa.Schema | None,
    suite: Suite | None,
    on_fail: OnFail,
    want_profile: bool,
    progress: Progress | None = None,
) -> Staged:
    """Read, gate and profile ``reader`` into local parts (see the module doc)."""
    from strata.data.validation import row_failure_sql, validate

    schema, parts, rows, bad, bad_file = read_to_parts(
        reader, workdir, base_schema=base_schema, progress=progress
    )
    if rows == 0 and bad.count == 0:
        raise InvalidInput(
            f"{reader.display} holds no rows: nothing to ingest", details={"source": reader.display}
        )
    staged = Staged(schema, parts, rows, rows, reader.bytes_read, unreadable_rows=bad.count)
    qschema = quarantine_schema(schema)
    qwriter: PartWriter | None = None
    con = connect(temp_dir=os.path.join(workdir, "duckdb-tmp"))
    try:
        if bad_file is not None:
            qwriter = PartWriter(os.path.join(workdir, "quarantine"), qschema)
            nulls = ", ".join(_null_column(con, f) for f in schema)
            sql = (
                f"SELECT {nulls + ', ' if nulls else ''}_line, _row, _reason, _raw, _source "
                f"FROM {parquet_scan([bad_file])}"
            )
            for batch in relation_batches(con, sql):
                qwriter.write(batch)
        create_view(con, "staged", [p.path for p in parts])
        if suite is not None and on_fail is OnFail.QUARANTINE:
            expr = row_failure_sql(suite, list(schema.names))
            if expr is not None and not {"filename", "file_row_number"} & set(schema.names):
                scan = parquet_scan([p.path for p in parts], filename=True, file_row_number=True)
                cols = _select_list(schema)
                marked = (
                    f"SELECT {cols}, {_ordinal_sql(parts)} AS __row, ({expr}) AS __reason "
                    f"FROM {scan}"
                )
                good = PartWriter(os.path.join(workdir, "good"), schema)
                for batch in relation_batches(
                    con, f"SELECT {cols} FROM ({marked}) WHERE __reason IS NULL"
                ):
                    good.write(batch)
                if qwriter is None:
                    qwriter = PartWriter(os.path.join(workdir, "quarantine"), qschema)
                failing = (
                    f"SELECT {cols}, CAST(NULL AS BIGINT) AS _line, __row AS _row, "
                    f"__reason AS _reason, CAST(NULL AS VARCHAR) AS _raw, "
                    f"{sql_literal(reader.display)} AS _source FROM ({marked}) "
                    "WHERE __reason IS NOT NULL"
                )
                for batch in relation_batches(con, failing):
                    qwriter.write(batch)
                staged.parts = good.close()
                staged.rows = good.rows
                create_view(con, "staged", [p.path for p in staged.parts])
        if suite is not None:
            # Suites may carry custom SQL: from here on, only the staged parts are readable.
            sandbox(con, [p.path for p in staged.parts], [os.path.join(workdir, "duckdb-tmp")])
            staged.report = validate(con, "staged", suite)
            staged.gate_failed = not staged.report.success and on_fail is OnFail.FAIL
        if qwriter is not None:
            staged.quarantined_rows = qwriter.rows
            staged.quarantine_parts = qwriter.close()
            staged.quarantine_schema = qschema
        if want_profile and not staged.gate_failed:
            staged.profile = profile_relation(con, "staged")
    finally:
        if qwriter is not None:
            qwriter.abort()
        con.close()
    return staged


def profile_relation(con: duckdb.DuckDBPyConnection, relation: str) -> DatasetProfile:
    from strata.data.profiling import profile

    return profile(con, relation)


def _null_column(con: duckdb.DuckDBPyConnection, f: pa.Field) -> str:
    """``CAST(NULL AS <the DuckDB type of f>) AS "name"`` (found via an empty Arrow table)."""
    if pa.types.is_null(f.type):
        return f"NULL AS {quote_ident(f.name)}"
    rel = con.from_arrow(pa.table({"c": pa.array([], type=f.type)}))
    return f"CAST(NULL AS {rel.types[0]}) AS {quote_ident(f.name)}"
