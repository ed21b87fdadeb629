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
(no copy, no Arrow): a request never waits for storage. An adaptive batch's requests are
queued as one entry (:meth:`PredictionLog.record_batch`: the batch's inputs and outputs,
already concatenated for its predict, and small per-request arrays), written as the same rows.
A background thread turns what queued into one Arrow table per model, version and day (numpy
concatenation, no per-row Python; :mod:`strata.serving.predlog_arrow`) and writes each to the
artifact store. When the queue holds ``max_rows`` rows, or the queue and the write in progress
hold ``max_bytes`` bytes (:func:`request_bytes`), new records are dropped and counted
(:attr:`dropped_rows`), never blocking.
"""

from __future__ import annotations

import itertools
import logging
import operator
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import numpy as np

from strata.core.threads import name_os_thread
from strata.serving.models import PredictionLogConfig
from strata.serving.predlog_arrow import (
    F_ARRAYS,
    F_MODEL,
    F_NAMES,
    F_PROBA,
    F_ROWS,
    F_SIZES,
    F_TS,
    F_VERSION,
    Columns,
    same,
    to_parquet,
    to_table,
)

log = logging.getLogger("strata.serving")

PREFIX = "predictions"
SLICE = 1024
"""Requests (or, for larger requests, rows: :data:`SLICE_ROWS`) turned into Arrow at a time
by the writer, which hands the GIL over between slices: one C call over 50,000 queued
requests holds the GIL for 10-20 ms (``zip``, ``np.concatenate``), a slice's ~1 ms of work at
most, so the worker's event loop, sharing that GIL, never waits long."""
SLICE_ROWS = 8192
OBJECT_BYTES = 57
"""What :func:`request_bytes` counts per element of an object array beyond its contents: the
pointer (8) and a Python ``str``'s header (49, ``sys.getsizeof("")``)."""


class _Store(Protocol):
    def put_bytes(self, path: str, data: bytes) -> Any: ...


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
        self._queued_bytes = 0
        self._writing_bytes = 0
        """The bytes of the requests the writer holds (from taking them to their write's end):
        counted against ``max_bytes`` too, so a slow store cannot double what is held."""
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
        body_bytes: int | None = None,
        matrix: np.ndarray | None = None,
    ) -> bool:
        """Queue one request's rows; False (and counted) when the queue is full (rows or
        bytes). ``body_bytes``: the request body's length, when known (it bounds the inputs'
        strings, see :func:`request_bytes`). ``matrix``: an ``[n, k]`` array whose columns
        are ``inputs``' arrays, in order (an OIP ``[n, k]`` tensor): queued in their place,
        one array instead of ``k`` (cheaper to size, to concatenate and to free). The arrays
        are kept as they are: do not change them afterwards."""
        rows = len(prediction)
        if matrix is not None:
            arrays: Any = matrix
            if "O" in (matrix.dtype.kind, prediction.dtype.kind) or (
                proba is not None and proba.dtype.kind == "O"
            ):
                size = request_bytes((matrix, prediction, proba), body_bytes)
            else:  # numbers, the usual OIP tensor: request_bytes inlined (0.3 us less)
                size = matrix.nbytes + prediction.nbytes + (0 if proba is None else proba.nbytes)
        else:
            arrays = tuple(inputs.values())
            size = request_bytes((*inputs.values(), prediction, proba), body_bytes)
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
            arrays,
            prediction,
            proba,
            rows,
            size,
            None,  # one request (record_batch queues its requests' rows here)
        )
        return self._queue_entry(entry, rows, size)

    def record_batch(
        self,
        *,
        model: str,
        version: str,
        request_ids: tuple[str, ...],
        endpoints: tuple[str, ...],
        paths: tuple[str, ...],
        keys: tuple[str | None, ...],
        latency_ms: np.ndarray,
        sizes: np.ndarray,
        inputs: dict[str, np.ndarray],
        prediction: np.ndarray,
        proba: np.ndarray | None = None,
        body_bytes: int | None = None,
    ) -> bool:
        """Queue the rows of several requests answered by one predict (an adaptive batch) as
        one entry: ``inputs``, ``prediction`` and ``proba`` hold their rows in order, request
        ``i`` owning ``sizes[i]`` of them; ``request_ids``, ``endpoints``, ``paths``, ``keys``
        and ``latency_ms`` (float64) have one value per request. Written as the rows
        :meth:`record` would write for each request (one ``ts`` for the batch). Dropped (all
        its rows, counted) when it does not fit, like a request. ``latency_ms`` is read when
        the writer takes the entry: a value set in it before then is what is written."""
        rows = len(prediction)
        size = (
            request_bytes((*inputs.values(), prediction, proba), body_bytes)
            + latency_ms.nbytes
            + sizes.nbytes
        )
        entry = (
            request_ids,
            time.time_ns() // 1000,
            model,
            version,
            endpoints,
            paths,
            latency_ms,
            keys,
            tuple(inputs),
            tuple(inputs.values()),
            prediction,
            proba,
            rows,
            size,
            sizes,
        )
        return self._queue_entry(entry, rows, size)

    def _queue_entry(self, entry: tuple[Any, ...], rows: int, size: int) -> bool:
        config = self.config
        with self._lock:
            if (
                self._queued_rows + rows > config.max_rows
                or self._queued_bytes + self._writing_bytes + size > config.max_bytes
            ):
                self.dropped_rows += rows
                dropped = True
            else:
                dropped = False
                self._queue.append(entry)
                self._queued_rows += rows
                self._queued_bytes += size
            full = self._queued_rows >= config.flush_rows
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

    @property
    def queued_bytes(self) -> int:
        """The estimated bytes held: queued, plus those of the write in progress."""
        return self._queued_bytes + self._writing_bytes

    # -- the writer --------------------------------------------------------------------
    def start(self) -> PredictionLog:
        """Start the writer thread (a daemon; :meth:`close` flushes and stops it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="strata-predlog", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        name_os_thread()  # its CPU is told apart in /proc (benchmarks/serving.py reads it)
        _warm()
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
            queued, self._queue = self._queue, deque()
            self._queued_rows = 0
            self._writing_bytes, self._queued_bytes = self._queued_bytes, 0
            self._writing = True
        try:
            return self._write(queued)
        finally:
            with self._lock:
                self._writing_bytes = 0  # written (or failed and counted): released
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

    def _write(self, queued: deque[tuple[Any, ...]]) -> int:
        """Turn the queued requests into Arrow :data:`SLICE` at a time, handing the GIL to
        the event loop between steps, then write one Parquet file per model, version and
        day (pyarrow encodes and compresses with the GIL released)."""
        if not queued:
            return 0
        files: dict[tuple[str, str, str], list[Any]] = {}
        failed: dict[str, int] = {}
        items: list[tuple[Any, ...] | None] = list(queued)
        queued.clear()
        ends = _slices(items)
        for lo, hi in zip([0, *ends[:-1]], ends, strict=True):
            # Each slice's requests are freed when the next slice replaces them (freeing
            # 50,000 requests at once would hold the GIL for tens of milliseconds too).
            part = cast(list[tuple[Any, ...]], items[lo:hi])
            items[lo:hi] = [None] * (hi - lo)
            try:
                groups = _groups(part)
            except Exception:
                log.exception("prediction log: could not group %d requests", len(part))
                groups = []
                failed["?"] = failed.get("?", 0) + sum(map(operator.itemgetter(F_ROWS), part))
            for key, cols in groups:
                time.sleep(0)  # the event loop shares this GIL: let it run between steps
                try:
                    files.setdefault(key, []).append(to_table(cols))
                except Exception:
                    log.exception("prediction log: could not convert rows of %s", key[0])
                    failed[key[0]] = failed.get(key[0], 0) + sum(cols[F_ROWS])
        written = 0
        for (model, _version, day), tables in files.items():
            rows = sum(t.num_rows for t in tables)
            try:
                data = to_parquet(tables)
                name = f"{PREFIX}/model={model}/date={day}/{uuid.uuid4().hex}.parquet"
                self.store.put_bytes(name, data)
            except Exception:
                log.exception("prediction log: could not write %d rows of %s", rows, model)
                failed[model] = failed.get(model, 0) + rows
                continue
            written += rows
            self.files_written += 1
        for rows in failed.values():
            self.failed_writes += 1
            self.dropped_rows += rows
            if self._on_drop is not None:
                self._on_drop(rows)
        self.written_rows += written
        if written and self._on_write is not None:
            self._on_write(written)
        return written


_US_PER_DAY = 86_400_000_000


def request_bytes(arrays: tuple[np.ndarray | None, ...], body_bytes: int | None) -> int:
    """A queued request's size, cheaply: its arrays' buffers (``nbytes``: exact for numbers
    and fixed-width strings), and for object arrays (strings, bytes) :data:`OBJECT_BYTES`
    per element plus their contents — bounded by the request body's length when the protocol
    layer knows it (O(columns) per request), else summed in C (``sys.getsizeof`` per
    element). A body with numbers only is not counted: its arrays are."""
    size = 0
    objects = False
    for arr in arrays:
        if arr is None:
            continue
        size += arr.nbytes
        if arr.dtype.kind == "O":
            objects = True
            if body_bytes is None:
                size += sum(map(sys.getsizeof, arr.ravel().tolist()))
            else:
                size += arr.size * OBJECT_BYTES
    if objects and body_bytes is not None:
        size += body_bytes
    return size


def _slices(items: list[Any]) -> list[int]:
    """Where the writer's slices end: at most :data:`SLICE` requests and about
    :data:`SLICE_ROWS` rows each (a request is never split)."""
    rows = np.fromiter(map(operator.itemgetter(F_ROWS), items), dtype=np.int64, count=len(items))
    by_rows = np.searchsorted(
        np.cumsum(rows), np.arange(1, rows.sum() // SLICE_ROWS + 1) * SLICE_ROWS
    )
    ends = np.union1d(np.arange(SLICE, len(items), SLICE), by_rows + 1)
    return [int(e) for e in ends if 0 < e < len(items)] + [len(items)]


def _groups(queued: list[tuple[Any, ...]]) -> list[tuple[tuple[str, str, str], Columns]]:
    """The queued requests by model, version, day (UTC), input names and whether they have
    probabilities — each group transposed to columns. All in C (``zip``, ``tuple.count``,
    ``itemgetter``, numpy): no Python code runs per request."""
    cols: Columns = list(zip(*queued, strict=True))
    days = np.asarray(cols[F_TS], dtype=np.int64) // _US_PER_DAY
    nones = sum(map(operator.is_, cols[F_PROBA], itertools.repeat(None)))
    matrices = sum(map(isinstance, cols[F_ARRAYS], itertools.repeat(np.ndarray)))
    singles = sum(map(operator.is_, cols[F_SIZES], itertools.repeat(None)))
    if (
        same(cols[F_MODEL])
        and same(cols[F_VERSION])
        and days.min() == days.max()
        and same(cols[F_NAMES])
        and nones in (0, len(queued))
        and matrices in (0, len(queued))
        and singles in (0, len(queued))
    ):  # the usual case: one model version, one day, one form of inputs
        return [((cols[F_MODEL][0], cols[F_VERSION][0], _date(int(days[0]))), cols)]
    keys = zip(
        cols[F_MODEL],
        cols[F_VERSION],
        days.tolist(),
        cols[F_NAMES],
        map(operator.is_, cols[F_PROBA], itertools.repeat(None)),
        map(isinstance, cols[F_ARRAYS], itertools.repeat(np.ndarray)),
        map(operator.is_, cols[F_SIZES], itertools.repeat(None)),
        strict=True,
    )
    first: dict[tuple[Any, ...], int] = {}
    # Each request's group: the position of the first request with its key (dict.setdefault
    # mapped in C over the keys).
    ids = np.fromiter(
        map(first.setdefault, keys, itertools.count()), dtype=np.int64, count=len(queued)
    )
    order = np.argsort(ids, kind="stable")
    starts = np.flatnonzero(np.diff(ids[order], prepend=-1))
    groups = []
    for lo, hi in zip(starts, [*starts[1:], len(order)], strict=True):
        idx = order[lo:hi].tolist()
        pick = operator.itemgetter(*idx)
        if len(idx) == 1:
            part: Columns = [(c[idx[0]],) for c in cols]
        else:
            part = [pick(c) for c in cols]
        groups.append(((part[F_MODEL][0], part[F_VERSION][0], _date(int(days[idx[0]]))), part))
    return groups


def _warm() -> None:
    """Encode one made-up request, so the writer's first real flush does not pay pyarrow's
    first-use costs (~0.1 s holding the GIL, at the server's start rather than mid-traffic)."""
    one = np.zeros(1)
    request = (
        "warm",
        0,
        "m",
        "1",
        "m",
        "primary",
        0.0,
        None,
        ("x",),
        (one,),
        one,
        None,
        1,
        8,
        None,
    )
    try:
        to_parquet([to_table(list(zip(request, strict=True)))])
    except Exception as exc:  # the real flushes report their own failures
        log.debug("prediction log: warm-up failed: %s", exc)


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")
