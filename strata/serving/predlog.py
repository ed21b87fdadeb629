"""The prediction log: every predicted row, written as Parquet off the hot path.

Layout (the format agreed with monitoring in the coordination protocol)::

    predictions/model=<name>/date=<YYYY-MM-DD>/<uuid>.parquet

one row per predicted row with ``request_id``, ``row`` (int32), ``ts`` (timestamp[us, UTC]),
``model``, ``version``, ``endpoint``, ``path`` (primary | canary | fallback | shadow |
cache), ``latency_ms``, ``entity_key`` (nullable), ``inputs`` (a struct, one field per
signature input) and ``outputs`` (a struct: ``prediction``, plus ``proba`` list<float64>
for classifiers). Read it with DuckDB::

    read_parquet('.../predictions/model=X/*/*.parquet', hive_partitioning=true,
                 union_by_name=true)

:meth:`PredictionLog.record` only appends the request's arrays to a bounded in-memory queue
(no copy, no Arrow): a request never waits for storage. A background thread turns what
queued into one Arrow table per model, version and day (numpy concatenation, no per-row
Python) and writes each to the artifact store. When the queue holds ``max_rows`` rows, new
records are dropped and counted (:attr:`dropped_rows`), never blocking.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from strata.serving.models import PredictionLogConfig

log = logging.getLogger("strata.serving")

PREFIX = "predictions"
SLICE = 2048
"""Requests turned into Arrow at a time by the writer; between slices it sleeps
:data:`PAUSE_S`, so a flush of tens of thousands of requests never holds the GIL the
worker's event loop needs for more than a few milliseconds at a stretch (a whole flush at
once put 100-500 ms on the serving p99)."""
PAUSE_S = 0.002


class _Store(Protocol):
    def put_bytes(self, path: str, data: bytes) -> Any: ...


@dataclass(slots=True)
class _Entry:
    request_id: str
    ts_us: int
    model: str
    version: str
    endpoint: str
    path: str
    latency_ms: float
    entity_key: str | None
    inputs: dict[str, np.ndarray]
    prediction: np.ndarray
    proba: np.ndarray | None
    rows: int


def _entry(t: tuple[Any, ...]) -> _Entry:
    """A queued tuple (see :attr:`PredictionLog._queue`) as an entry."""
    inputs = dict(zip(t[8], t[9], strict=True))
    return _Entry(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], inputs, t[10], t[11], t[12])


class PredictionLog:
    """A bounded queue of predictions and the thread that writes them (see module doc)."""

    def __init__(
        self,
        store: _Store,
        config: PredictionLogConfig | None = None,
        *,
        on_drop: Callable[[int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self._on_drop = on_drop
        self._on_write = on_write
        self.config = config or PredictionLogConfig()
        self._queue: deque[tuple[Any, ...]] = deque()
        """Plain tuples of strings, numbers and arrays: Python's cyclic GC untracks them, so
        a queue of tens of thousands of requests adds nothing to its full collections (an
        object per request would: 100+ ms pauses on the serving p99, docs/serving.md)."""
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._writing = False
        self.dropped_rows = 0
        self.written_rows = 0
        self.failed_writes = 0
        self.files_written = 0
        self._thread: threading.Thread | None = None

    # -- the hot path ------------------------------------------------------------------
    def record(
        self,
        *,
        request_id: str,
        model: str,
        version: str,
        endpoint: str,
        path: str,
        latency_ms: float,
        inputs: dict[str, np.ndarray],
        prediction: np.ndarray,
        proba: np.ndarray | None = None,
        entity_key: str | None = None,
    ) -> bool:
        """Queue one request's rows; False (and counted) when the queue is full. The arrays
        are kept as they are: do not change them afterwards."""
        rows = len(prediction)
        entry = (
            request_id,
            time.time_ns() // 1000,
            model,
            version,
            endpoint,
            path,
            latency_ms,
            entity_key,
            tuple(inputs),  # names and arrays, not the dict: a dict keeps a tuple tracked
            tuple(inputs.values()),
            prediction,
            proba,
            rows,
        )
        with self._lock:
            if self._queued_rows + rows > self.config.max_rows:
                self.dropped_rows += rows
                dropped = True
            else:
                dropped = False
                self._queue.append(entry)
                self._queued_rows += rows
            full = self._queued_rows >= self.config.flush_rows
        if dropped:
            if self._on_drop is not None:
                self._on_drop(rows)
            return False
        if full:
            self._wake.set()
        return True

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    # -- the writer --------------------------------------------------------------------
    def start(self) -> PredictionLog:
        """Start the writer thread (a daemon; :meth:`close` flushes and stops it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="strata-predlog", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything queued now (one file per model, version and day); the rows
        written. A failed write is logged and counted, its rows counted as dropped."""
        with self._lock:
            while self._writing:
                self._idle.wait()
            entries = [_entry(t) for t in self._queue]
            self._queue.clear()
            self._queued_rows = 0
            self._writing = True
        try:
            return self._write(entries)
        finally:
            with self._lock:
                self._writing = False
                self._idle.notify_all()

    def close(self) -> None:
        """Flush what is queued and stop the writer."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _write(self, entries: list[_Entry]) -> int:
        groups: dict[tuple[str, str, str], list[_Entry]] = {}
        for e in entries:
            day = datetime.fromtimestamp(e.ts_us / 1e6, UTC).strftime("%Y-%m-%d")
            groups.setdefault((e.model, e.version, day), []).append(e)
        written = 0
        for (model, _version, day), group in groups.items():
            rows = sum(e.rows for e in group)
            try:
                data = to_parquet(group)
                name = f"{PREFIX}/model={model}/date={day}/{uuid.uuid4().hex}.parquet"
                self.store.put_bytes(name, data)
            except Exception:
                log.exception("prediction log: could not write %d rows of %s", rows, model)
                self.failed_writes += 1
                self.dropped_rows += rows
                if self._on_drop is not None:
                    self._on_drop(rows)
                continue
            written += rows
            self.files_written += 1
        self.written_rows += written
        if written and self._on_write is not None:
            self._on_write(written)
        return written


def _column(arrays: list[np.ndarray]) -> Any:
    import pyarrow as pa

    merged = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    if merged.ndim > 1:
        width = int(np.prod(merged.shape[1:]))
        flat = pa.array(np.ascontiguousarray(merged).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, width).cast(pa.list_(flat.type))
    if merged.dtype.kind == "O":
        return pa.array(merged.tolist())
    return pa.array(merged)


def to_table(entries: list[_Entry]) -> Any:
    """The Arrow table of some entries of one model version (columns as documented)."""
    import pyarrow as pa

    sizes = np.fromiter((e.rows for e in entries), dtype=np.int64, count=len(entries))
    total = int(sizes.sum())
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    row = (np.arange(total, dtype=np.int64) - starts).astype(np.int32)

    def repeat(values: list[Any], type_: Any) -> Any:
        return pa.array(np.repeat(np.asarray(values, dtype=object), sizes), type=type_)

    names = list(entries[0].inputs)
    inputs = pa.StructArray.from_arrays(
        [_column([e.inputs[n] for e in entries]) for n in names], names=names
    )
    out_arrays = [_column([np.asarray(e.prediction) for e in entries])]
    out_names = ["prediction"]
    if all(e.proba is not None for e in entries):
        probas = [np.asarray(e.proba, dtype=np.float64) for e in entries]
        out_arrays.append(_column(probas).cast(pa.list_(pa.float64())))
        out_names.append("proba")
    outputs = pa.StructArray.from_arrays(out_arrays, names=out_names)
    ts = pa.array(
        np.repeat(np.array([e.ts_us for e in entries], dtype="datetime64[us]"), sizes),
        type=pa.timestamp("us", tz="UTC"),
    )
    return pa.table(
        {
            "request_id": repeat([e.request_id for e in entries], pa.string()),
            "row": pa.array(row, type=pa.int32()),
            "ts": ts,
            "model": repeat([e.model for e in entries], pa.string()),
            "version": repeat([e.version for e in entries], pa.string()),
            "endpoint": repeat([e.endpoint for e in entries], pa.string()),
            "path": repeat([e.path for e in entries], pa.string()),
            "latency_ms": pa.array(
                np.repeat(np.array([e.latency_ms for e in entries], dtype=np.float64), sizes)
            ),
            "entity_key": repeat([e.entity_key for e in entries], pa.string()),
            "inputs": inputs,
            "outputs": outputs,
        }
    )


def to_parquet(entries: list[_Entry]) -> bytes:
    """Entries of one model version as a Parquet file's bytes (zstd)."""
    import pyarrow.parquet as pq

    table = _unify(entries)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _unify(entries: list[_Entry]) -> Any:
    """One table from entries whose input columns may differ (a version's signature is
    fixed, but a canary path of another version can log beside it): grouped by input
    names, concatenated with the union of the fields."""
    import pyarrow as pa

    by_inputs: dict[tuple[tuple[str, ...], bool], list[_Entry]] = {}
    for e in entries:
        by_inputs.setdefault((tuple(e.inputs), e.proba is not None), []).append(e)
    tables = []
    for group in by_inputs.values():
        for start in range(0, len(group), SLICE):
            if start:  # let the event loop run between slices (it shares this GIL)
                time.sleep(PAUSE_S)
            tables.append(to_table(group[start : start + SLICE]))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")
