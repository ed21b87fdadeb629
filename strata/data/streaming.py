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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from strata.backends.streams import Positions, StreamRecord, StreamSource
from strata.core import faults
from strata.core.errors import InvalidInput, NotFound, StrataError
from strata.data.commit import Committer
from strata.data.ingest import (
    BATCH_ROWS,
    BadRow,
    BadRowSink,
    Reader,
    normalize_schema,
)
from strata.data.models import (
    ConsumeOptions,
    ConsumeResult,
    IngestMode,
    IngestOptions,
    IngestResult,
    StreamBatch,
    check_name,
)
from strata.data.readers import open_reader
from strata.data.service import DataService, OnBatch

if TYPE_CHECKING:
    import pyarrow.dataset as pads

log = logging.getLogger(__name__)

#: Malformed records held (not committed) while no schema is known, before giving up.
MAX_UNSCHEMED = 100_000


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
@dataclass(frozen=True)
class StreamTarget:
    """What a consumer writes through and reads from, handed over by the embedded service.

    ``data`` answers the public reads (versions, stored positions); ``committer`` publishes
    each batch and each compaction; ``parts(ref)`` opens a version's Parquet parts as one
    Arrow dataset, each part verified against its recorded sha256 first.
    """

    data: DataService
    committer: Committer
    parts: Callable[[str], pads.Dataset]

    def latest_schema(self, name: str) -> pa.Schema | None:
        """The Arrow schema of the dataset's latest version (None: no dataset or version)."""
        return self.committer.read_base(name, [], appending=True)[2]


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
    target: StreamTarget,
    source: StreamSource,
    name: str,
    options: ConsumeOptions,
    *,
    on_batch: OnBatch | None = None,
    stop: threading.Event | None = None,
) -> ConsumeResult:
    """Append ``source`` to dataset ``name`` batch by batch (see the module doc and
    :meth:`DataService.consume`). The source is started here and closed on return."""
    return _Consumer(target, source, name, options, on_batch, stop).run()


class _Consumer:
    """One run of the loop; its state is the positions stored so far and the held records."""

    def __init__(
        self,
        target: StreamTarget,
        source: StreamSource,
        name: str,
        options: ConsumeOptions,
        on_batch: OnBatch | None,
        stop: threading.Event | None,
    ) -> None:
        check_name(name)
        self.target, self.source, self.name, self.options = target, source, name, options
        self.on_batch, self.stop = on_batch, stop
        self.suite = None
        if options.suite is not None:
            from strata.data.validation import Suite, load_suite

            self.suite = (
                options.suite if isinstance(options.suite, Suite) else load_suite(options.suite)
            )
        self.explicit = parse_schema(options.schema_)
        self.positions = stored_positions(target.data, name, source.key)
        self.started = time.monotonic()
        self.last_seen = self.started
        self.held: list[StreamRecord] = []  # malformed records waiting for a first schema
        self.result = ConsumeResult(
            dataset=name,
            stream=source.key,
            source=source.display,
            resumed_from=dict(self.positions),
            offsets=dict(self.positions),
        )

    def run(self) -> ConsumeResult:
        self.source.start(self.positions or None)
        self.last_seen = time.monotonic()  # idle counts from the start of reading
        try:
            while not self.result.stopped:
                self.result.stopped = self._stopped()
                if not self.result.stopped:
                    self._step()
        finally:
            self.source.close()
        self.result.seconds = time.monotonic() - self.started
        return self.result

    def _stopped(self) -> str:
        """Why the loop ends before the next poll ("": it goes on; "idle" is decided after
        a poll that brought nothing new, see :meth:`_idle`)."""
        if self.stop is not None and self.stop.is_set():
            return "stop"
        max_batches = self.options.max_batches
        if max_batches is not None and self.result.batches >= max_batches:
            return "max_batches"
        return ""

    def _idle(self, now: float) -> None:
        idle = self.options.idle_seconds
        if idle is not None and now - self.last_seen >= idle:
            self.result.stopped = "idle"

    def _step(self) -> None:
        """Poll one batch and append it (or hold it, or only let the broker catch up)."""
        o, source, result = self.options, self.source, self.result
        polled = _poll(source, o.batch_size, o.batch_seconds, self.stop)
        now = time.monotonic()
        if polled:
            self.last_seen = now
        fresh = [r for r in polled if not source.covers(self.positions, r)]
        skipped = len(polled) - len(fresh)
        result.skipped += skipped
        records = self.held + fresh
        end = source.advance(self.positions, self.held + polled)
        if not records:
            if end != self.positions:  # only records stored before: let the broker catch up
                result.source_commit_failures += _commit(source, end)
                self.positions = end
            self._idle(now)
            return
        t0 = time.monotonic()
        docs, bad = decode(records)
        schema = self.target.latest_schema(self.name) or self.explicit
        if schema is None:
            schema = infer_schema([d for _, d in docs])
        if schema is None:  # nothing to infer a schema from: hold, uncommitted
            self._hold(records, bad)
            self._idle(now)
            return
        table, misfits = to_table(docs, schema)
        order = {id(r): i for i, r in enumerate(records)}
        bad = sorted(bad + misfits, key=lambda b: order[id(b[0])])
        ingested = self._append(records, table, bad, end)
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
        assert ingested.version is not None
        result.version, result.offsets = ingested.version, dict(end)
        result.seconds = time.monotonic() - self.started
        if self.on_batch is not None:
            batch = StreamBatch(
                batch=result.batches,
                records=len(records),
                rows=rows,
                quarantined=quarantined,
                skipped=skipped,
                version=ingested.version,
                quarantine=ingested.quarantine,
                offsets=dict(end),
                seconds=time.monotonic() - t0,
                source_committed=not failed,
            )
            self.on_batch(batch, result)

    def _hold(self, records: list[StreamRecord], bad: list[tuple[StreamRecord, str]]) -> None:
        self.held = records
        self.result.uncommitted = len(records)
        if len(records) > MAX_UNSCHEMED:
            first = bad[0][1] if bad else "no object converts to Arrow"
            raise InvalidInput(
                f"{len(records)} records from {self.source.display} hold no JSON object to "
                f"infer the schema of {self.name!r} from (first problem: {first}); pass "
                "a schema",
                details={"dataset": self.name, "stream": self.source.key},
            )

    def _append(
        self,
        records: list[StreamRecord],
        table: pa.Table,
        bad: list[tuple[StreamRecord, str]],
        end: Positions,
    ) -> IngestResult:
        """Publish the batch with its end positions (one transaction), then compact the
        version when it has grown past ``compact_after`` parts."""
        source = self.source
        nbytes = sum(len(r.value or b"") for r in records)
        options = IngestOptions(
            on_fail=self.options.on_fail,
            mode=IngestMode.APPEND,
            source_info={"stream": source.key, "offsets": end, "records": len(records)},
            profile=False,
        )
        reader = _reader(source, table, bad, nbytes)
        ingested = self.target.committer.ingest(reader, self.name, options, suite=self.suite)
        assert ingested.version is not None
        self.held, self.result.uncommitted = [], 0
        self.positions = end
        ref = f"{self.name}@{ingested.version}"
        if self.target.data.get_version(ref).num_files > self.options.compact_after:
            ingested = compact(self.target, ref, source.key, end)
            self.result.compactions += 1
        return ingested


def compact(target: StreamTarget, ref: str, stream: str, offsets: Positions) -> IngestResult:
    """Rewrite a stream-grown version (one small part per batch) into canonical parts.

    Each appended version lists all its parts, so without this a long stream would store a
    quadratic number of file rows. The rewrite holds the same rows in the same order (a new
    version, parent the old one) and carries the same stream offsets, so a restart resumes
    exactly where it did. Every part is checked against its recorded sha256 before it is
    read (DigestMismatch names a changed one): a rewrite never launders a corrupted part
    into a new version. Cost: one sequential pass over the dataset every ``compact_after``
    batches.
    """
    dataset = target.parts(ref)

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
    name = ref.split("@", 1)[0]
    reader = open_reader(ordered, label=f"compaction of {ref}")
    return target.committer.ingest(reader, name, options, suite=None)


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
    """``data.consume(uri, name, group=group, **options)`` (kept for existing callers)."""
    return data.consume(uri, name, group=group, **options)


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
