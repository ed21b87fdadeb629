"""Stream ingestion: a Kafka topic or Redis stream appended to a dataset in micro-batches.

The loop, per batch:

1. poll up to ``batch_size`` records or for ``batch_seconds``, whichever comes first;
2. drop records the stored positions already cover (delivered again after a crash between
   steps 4 and 5: they are in the dataset already);
3. decode each record's value as a JSON object into an Arrow table of the dataset's schema
   (inferred from the first batch when the dataset has no version and none is given);
   records that are not JSON objects, or whose fields do not fit the schema, go to the
   quarantine with their position (``_source``: ``kafka:TOPIC partition P offset O`` /
   ``redis:STREAM id ID``) and the reason (``_reason``), with the raw value in ``_raw``;
4. append the rows as a new version (``mode="append"``: the previous version's parts plus
   this batch's), storing the batch's end positions in the same database transaction
   (:meth:`~strata.data.service.DataService.stream_position` returns them);
5. only then commit the positions at the source (Kafka offsets, Redis XACK).

On start the positions stored with the dataset are handed to the source, so the database, not
the broker, decides where reading resumes: killing the consumer at any point and restarting
it loses no record and stores none twice.

Schema rules: a record's fields are matched to columns by name; missing fields are null; a
field the schema lacks, or a value that does not convert to its column's type, sends the
record to quarantine. When inferring, a column seen only as null is typed string; pass
``schema`` to fix types up front (it applies until the dataset has a version).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from typing import Any

import orjson
import pyarrow as pa
import sqlalchemy as sa
from pydantic import BaseModel, Field

from strata.backends.streams import Positions, StreamRecord, StreamSource, open_source
from strata.core import faults
from strata.core.errors import InvalidInput, NotFound, StrataError
from strata.core.parse import parse_enum
from strata.data import catalog
from strata.data.embedded import EmbeddedData
from strata.data.ingest import (
    BATCH_ROWS,
    BadRow,
    BadRowSink,
    Reader,
    normalize_schema,
)
from strata.data.models import IngestMode, IngestOptions, IngestResult, OnFail, check_name
from strata.data.readers import open_reader
from strata.data.service import DataService
from strata.data.tables import DatasetRow, VersionRow

log = logging.getLogger(__name__)

#: Malformed records held (not committed) while no schema is known, before giving up.
MAX_UNSCHEMED = 100_000


class StreamBatch(BaseModel):
    """One appended batch: what was read, stored, set aside, and where the stream now is."""

    batch: int
    records: int
    rows: int
    quarantined: int
    skipped: int
    version: str
    quarantine: str | None = None
    offsets: dict[str, Any]
    seconds: float
    source_committed: bool


#: Parts of a stream-grown version after which the consumer rewrites it into canonical parts.
COMPACT_AFTER = 64


class ConsumeResult(BaseModel):
    """What a :func:`consume` run did (``stopped``: ``max_batches``, ``idle`` or ``stop``).

    ``skipped`` records were delivered again but stored already; ``uncommitted`` records were
    read but left for the next run (malformed records while no schema is known yet).
    """

    dataset: str
    stream: str
    source: str
    resumed_from: dict[str, Any] = Field(default_factory=dict)
    batches: int = 0
    records: int = 0
    rows: int = 0
    quarantined: int = 0
    compactions: int = 0
    skipped: int = 0
    uncommitted: int = 0
    source_commit_failures: int = 0
    version: str | None = None
    offsets: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    stopped: str = ""


OnBatch = Callable[[StreamBatch, ConsumeResult], None]


# -- decoding ---------------------------------------------------------------------------------
def _where(source: StreamSource, record: StreamRecord) -> str:
    return f"{source.key} {record.label}"


def _raw(record: StreamRecord) -> str | None:
    return record.value.decode("utf-8", "replace") if record.value is not None else None


def decode(
    records: Sequence[StreamRecord],
) -> tuple[list[tuple[StreamRecord, dict[str, Any]]], list[tuple[StreamRecord, str]]]:
    """Split ``records`` into (record, JSON object) pairs and (record, reason) failures."""
    docs: list[tuple[StreamRecord, dict[str, Any]]] = []
    bad: list[tuple[StreamRecord, str]] = []
    for r in records:
        if r.problem is not None:
            bad.append((r, r.problem))
            continue
        if r.value is None:
            bad.append((r, "empty record: no value (a tombstone)"))
            continue
        try:
            doc = orjson.loads(r.value)
        except orjson.JSONDecodeError as exc:
            bad.append((r, f"invalid JSON: {exc}"))
            continue
        if not isinstance(doc, dict):
            bad.append((r, f"not a JSON object (found {type(doc).__name__})"))
            continue
        docs.append((r, doc))
    return docs, bad


def _no_nulls(t: pa.DataType) -> pa.DataType:
    """``t`` with every null type (a column seen only as null) replaced by string."""
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_no_nulls(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _no_nulls(f.type)) for f in t])
    return t


_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


def infer_schema(docs: Sequence[dict[str, Any]]) -> pa.Schema | None:
    """The schema of the longest prefix of ``docs`` Arrow reads as one table (fields in
    first-seen order; null-only columns as string); None when not even one doc reads."""
    start = 0
    while start < len(docs):
        try:
            pa.array(docs[start : start + 1])
            break
        except _ARROW_ERRORS:
            start += 1
    if start == len(docs):
        return None
    lo, hi = start + 1, len(docs)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            pa.array(docs[start:mid])
            lo = mid
        except _ARROW_ERRORS:
            hi = mid - 1
    struct = pa.array(docs[start:lo]).type
    if struct.num_fields == 0:
        return None
    return normalize_schema(pa.schema([pa.field(f.name, _no_nulls(f.type)) for f in struct]))


def _column(values: list[Any], t: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=t)
    except _ARROW_ERRORS:
        # e.g. ISO timestamp strings for a timestamp column: Arrow parses them on cast
        return pa.array(values).cast(t)


def to_table(
    docs: Sequence[tuple[StreamRecord, dict[str, Any]]], schema: pa.Schema
) -> tuple[pa.Table, list[tuple[StreamRecord, str]]]:
    """The docs that fit ``schema`` as a table, and the others with the reason."""
    names = set(schema.names)
    bad: dict[int, str] = {}
    for i, (_, doc) in enumerate(docs):
        extra = [k for k in doc if k not in names]
        if extra:
            bad[i] = (
                f"field {extra[0]!r} is not a column of the dataset (columns: "
                f"{', '.join(schema.names)})"
            )
    for f in schema:
        rows = [i for i in range(len(docs)) if i not in bad]
        with suppress(*_ARROW_ERRORS):
            _column([docs[i][1].get(f.name) for i in rows], f.type)
            continue
        for i in rows:  # only on the failure path: find which records break the column
            value = docs[i][1].get(f.name)
            try:
                _column([value], f.type)
            except _ARROW_ERRORS as exc:
                shown = orjson.dumps(value).decode()[:80]
                bad[i] = (
                    f"field {f.name!r}: expected {f.type}, got {type(value).__name__} {shown} "
                    f"({str(exc).splitlines()[0]})"
                )
    keep = [doc for i, (_, doc) in enumerate(docs) if i not in bad]
    arrays = [_column([d.get(f.name) for d in keep], f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table, [(docs[i][0], reason) for i, reason in sorted(bad.items())]


def parse_schema(schema: pa.Schema | dict[str, str] | None) -> pa.Schema | None:
    """An explicit schema: an Arrow schema or ``{column: Arrow type name}`` (``int64``,
    ``float64``, ``string``, ``bool``, ``timestamp[ms]``...)."""
    if schema is None or isinstance(schema, pa.Schema):
        return schema
    fields = []
    for name, spec in schema.items():
        try:
            fields.append(pa.field(name, pa.type_for_alias(spec)))
        except ValueError:
            raise InvalidInput(
                f"Unknown type {spec!r} for column {name!r}: use an Arrow type name such as "
                "int64, float64, string, bool, date32, timestamp[ms]",
                details={"column": name},
            ) from None
    return pa.schema(fields)


# -- the loop ---------------------------------------------------------------------------------
def latest_schema(data: EmbeddedData, name: str) -> pa.Schema | None:
    """The Arrow schema of the dataset's latest version (None: no dataset or no version)."""
    with data.db.read() as s:
        ds = s.scalar(sa.select(DatasetRow).where(DatasetRow.name == name))
        if ds is None or ds.latest_version is None:
            return None
        row = s.get(VersionRow, (ds.id, ds.latest_version))
        return catalog.arrow_schema(row) if row is not None else None


def stored_positions(data: DataService, name: str, stream: str) -> Positions:
    """The positions stored with the dataset for ``stream`` ({} when none)."""
    try:
        pos = data.stream_position(name, stream)
    except NotFound:
        return {}
    return dict(pos.offsets) if pos is not None else {}


def _poll(
    source: StreamSource, want: int, seconds: float, stop: threading.Event | None
) -> list[StreamRecord]:
    deadline = time.monotonic() + seconds
    out: list[StreamRecord] = []
    while len(out) < want and not (stop is not None and stop.is_set()):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        out.extend(source.poll(want - len(out), min(left, 1.0)))
    return out


def _reader(
    source: StreamSource, table: pa.Table, bad: list[tuple[StreamRecord, str]], nbytes: int
) -> Reader:
    def batches(sink: BadRowSink, r: Reader) -> Iterator[pa.RecordBatch]:
        for record, reason in bad:
            sink.add(BadRow(None, reason, _raw(record), _where(source, record)))
        r.bytes_read = nbytes
        if table.num_rows:
            yield from table.to_batches(max_chunksize=BATCH_ROWS)
        else:
            yield pa.RecordBatch.from_pylist([], schema=table.schema)

    return Reader(
        {"kind": "stream", "uri": source.display},
        f"stream {source.display}",
        batches,
        total_bytes=nbytes,
    )


def consume(
    data: EmbeddedData,
    source: StreamSource,
    name: str,
    *,
    batch_size: int = 10_000,
    batch_seconds: float = 5.0,
    max_batches: int | None = None,
    idle_seconds: float | None = None,
    schema: pa.Schema | dict[str, str] | None = None,
    suite: Any = None,
    on_fail: OnFail | str = OnFail.FAIL,
    on_batch: OnBatch | None = None,
    stop: threading.Event | None = None,
    compact_after: int = COMPACT_AFTER,
) -> ConsumeResult:
    """Append ``source`` to dataset ``name`` batch by batch (see the module doc).

    Runs until ``max_batches`` batches were appended, no record arrived for
    ``idle_seconds``, or ``stop`` is set (checked between polls; a batch being appended is
    finished first); with none of them it runs until interrupted, which is safe at any
    moment. ``on_batch`` is called after each batch is durable and committed at the source.
    ``suite``/``on_fail`` gate each batch as :meth:`DataService.ingest` does. The source is
    started here and closed on return. Raises InvalidInput (bad options; a gated batch whose
    suite failed), Unavailable (broker or database unreachable), NotFound (no such topic).
    """
    check_name(name)
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
    if batch_seconds <= 0:
        raise InvalidInput(f"batch_seconds must be positive, got {batch_seconds}")
    gate = parse_enum(OnFail, on_fail, "on_fail")
    suite_obj = None
    if suite is not None:
        from strata.data.validation import Suite, load_suite

        suite_obj = suite if isinstance(suite, Suite) else load_suite(suite)
    explicit = parse_schema(schema)
    positions = stored_positions(data, name, source.key)
    started = time.monotonic()
    result = ConsumeResult(
        dataset=name,
        stream=source.key,
        source=source.display,
        resumed_from=dict(positions),
        offsets=dict(positions),
    )
    held: list[StreamRecord] = []  # malformed records waiting for a first schema
    source.start(positions or None)
    try:
        last_seen = time.monotonic()
        while True:
            if stop is not None and stop.is_set():
                result.stopped = "stop"
                break
            if max_batches is not None and result.batches >= max_batches:
                result.stopped = "max_batches"
                break
            polled = _poll(source, batch_size, batch_seconds, stop)
            now = time.monotonic()
            if polled:
                last_seen = now
            fresh = [r for r in polled if not source.covers(positions, r)]
            result.skipped += len(polled) - len(fresh)
            records = held + fresh
            end = source.advance(positions, held + polled)
            if not records:
                if end != positions:  # only records stored before: let the broker catch up
                    result.source_commit_failures += _commit(source, end)
                    positions = end
                if idle_seconds is not None and now - last_seen >= idle_seconds:
                    result.stopped = "idle"
                    break
                continue
            t0 = time.monotonic()
            docs, bad = decode(records)
            target = latest_schema(data, name) or explicit
            if target is None:
                target = infer_schema([d for _, d in docs])
            if target is None:  # nothing to infer a schema from: hold, uncommitted
                held = records
                result.uncommitted = len(held)
                if len(held) > MAX_UNSCHEMED:
                    first = bad[0][1] if bad else "no object converts to Arrow"
                    raise InvalidInput(
                        f"{len(held)} records from {source.display} hold no JSON object to "
                        f"infer the schema of {name!r} from (first problem: {first}); pass "
                        "a schema",
                        details={"dataset": name, "stream": source.key},
                    )
                if idle_seconds is not None and now - last_seen >= idle_seconds:
                    result.stopped = "idle"
                    break
                continue
            table, misfits = to_table(docs, target)
            order = {id(r): i for i, r in enumerate(records)}
            bad = sorted(bad + misfits, key=lambda b: order[id(b[0])])
            nbytes = sum(len(r.value or b"") for r in records)
            batch_options = IngestOptions(
                on_fail=gate,
                mode=IngestMode.APPEND,
                source_info={"stream": source.key, "offsets": end, "records": len(records)},
                profile=False,
            )
            ingested = data.committer.ingest(
                _reader(source, table, bad, nbytes), name, batch_options, suite=suite_obj
            )
            assert ingested.version is not None
            held, result.uncommitted = [], 0
            positions = end
            if data.get_version(f"{name}@{ingested.version}").num_files > compact_after:
                ingested = _compact(data, name, ingested.version, source.key, end)
                result.compactions += 1
            faults.point("data.stream.committed")  # durable in the DB, not at the broker
            failed = _commit(source, end)
            result.source_commit_failures += failed
            result.batches += 1
            result.records += len(records)
            # the suite gate (on_fail="quarantine") may set aside rows beyond the malformed
            quarantined = ingested.quarantined_rows
            rows = len(records) - quarantined
            result.rows += rows
            result.quarantined += quarantined
            result.version, result.offsets = ingested.version, dict(end)
            result.seconds = time.monotonic() - started
            if on_batch is not None:
                on_batch(
                    StreamBatch(
                        batch=result.batches,
                        records=len(records),
                        rows=rows,
                        quarantined=quarantined,
                        skipped=len(polled) - len(fresh),
                        version=ingested.version,
                        quarantine=ingested.quarantine,
                        offsets=dict(end),
                        seconds=time.monotonic() - t0,
                        source_committed=not failed,
                    ),
                    result,
                )
    finally:
        source.close()
    result.seconds = time.monotonic() - started
    return result


def _compact(
    data: EmbeddedData, name: str, version: str, stream: str, offsets: Positions
) -> IngestResult:
    """Rewrite a stream-grown version (one small part per batch) into canonical parts.

    Each appended version lists all its parts, so without this a long stream would store a
    quadratic number of file rows. The rewrite holds the same rows in the same order (a new
    version, parent the old one) and carries the same stream offsets, so a restart resumes
    exactly where it did. Cost: one sequential pass over the dataset every ``compact_after``
    batches.
    """
    ref = f"{name}@{version}"
    files = data.files(ref)
    dataset = data.vfiles.arrow_dataset([f.path for f in files])

    def batches() -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(dataset.to_batches(use_threads=False)):  # file = row order
            yield batch
            if i == 0:
                faults.point("data.stream.compaction")  # part of the version rewritten

    ordered = pa.RecordBatchReader.from_batches(dataset.schema, batches())
    options = IngestOptions(
        parents=[ref],
        source_info={"stream": stream, "offsets": dict(offsets), "compacted_from": ref},
        profile=False,
    )
    # suite=None: the rows passed the gate when their batches were appended
    return data.committer.ingest(
        open_reader(ordered, label=f"compaction of {ref}"), name, options, suite=None
    )


def _commit(source: StreamSource, positions: Positions) -> int:
    """Commit at the source; 1 on failure (logged), 0 on success.

    A failed source commit loses nothing: the positions are stored with the data, and the
    next commit (or restart) covers them."""
    try:
        faults.point("data.stream.source_commit")
        source.commit(positions)
    except StrataError as exc:
        log.warning("stream %s: commit at the source failed: %s", source.display, exc.message)
        return 1
    return 0


def consume_uri(
    data: DataService, uri: str, name: str, *, group: str | None = None, **options: Any
) -> ConsumeResult:
    """:func:`consume` from a stream URI (see :mod:`strata.backends.streams`); the consumer
    group defaults to ``strata.<name>``. Needs the embedded data service: the positions are
    committed in the metadata database's transaction, which a remote client cannot join."""
    if not isinstance(data, EmbeddedData):
        raise InvalidInput(
            "Stream consumers run next to the metadata database: unset STRATA_URI (use the "
            "embedded client configured with the server's database and artifact store)",
            details={"field": "uri"},
        )
    source = open_source(uri, group=group or f"strata.{name}")
    return consume(data, source, name, **options)


__all__ = [
    "ConsumeResult",
    "StreamBatch",
    "consume",
    "consume_uri",
    "decode",
    "infer_schema",
    "stored_positions",
    "to_table",
]
