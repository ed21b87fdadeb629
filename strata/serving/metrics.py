"""Prometheus metrics of the inference server, per endpoint, model and version.

With several workers (``PROMETHEUS_MULTIPROC_DIR`` set by the runner) every worker writes its
own files and ``/metrics`` merges them; the in-flight gauge is summed across workers.

Each worker's own CPU time, resident memory and start time are gauges labelled with the
worker (``host:pid``), sampled (psutil) when that worker answers ``/metrics`` and each time
it publishes its endpoint statuses (at least every 30 s), so a merged scrape shows every
live worker (what monitoring's health series read as ``cpu_percent`` / ``memory_mb``).

The request path does not write the Prometheus values itself: ``add`` and ``observe`` tally
on the event loop (a dict update each) and :meth:`ServingMetrics.flush` writes the totals,
one write per label set and bucket, every :data:`FLUSH_SECONDS` and before every scrape this
worker answers. A multiprocess value costs a lock, a pid check and an mmap write per
``inc``; a 1-row request made ~9 of them (docs/serving.md, "Speed").
"""

from __future__ import annotations

import asyncio
import os
import socket
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)

FLUSH_SECONDS = 0.5
"""How often a worker writes its tallied metrics (a scrape of another worker sees this
worker's counts at most this late; the worker answering a scrape flushes first)."""


class ServingMetrics:
    """The serving metrics of one app (its own registry; merged across workers)."""

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: ``labels()`` costs a few µs per call."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}
        self._ticking = False
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "strata_serving_requests_total",
            "Prediction requests by endpoint, model, version, protocol, path and status code.",
            ["endpoint", "model", "version", "protocol", "path", "code"],
            registry=r,
        )
        self.rows = Counter(
            "strata_serving_rows_total",
            "Rows predicted by endpoint, model, version and path.",
            ["endpoint", "model", "version", "path"],
            registry=r,
        )
        self.latency = Histogram(
            "strata_serving_request_duration_seconds",
            "Prediction latency (decode, checks, predict, encode) by endpoint, model, version.",
            ["endpoint", "model", "version"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "strata_serving_batch_rows",
            "Rows per model call (a request, or an adaptive batch of requests).",
            ["model", "version"],
            buckets=_SIZES,
            registry=r,
        )
        self.queue_time = Histogram(
            "strata_serving_queue_seconds",
            "Time a request waited in the adaptive batching queue.",
            ["model", "version"],
            buckets=_LATENCY,
            registry=r,
        )
        gauge_mode = {"multiprocess_mode": "livesum"} if _multiprocess() else {}
        self.in_flight = Gauge(
            "strata_serving_in_flight",
            "Prediction requests being handled now.",
            ["endpoint"],
            registry=r,
            **gauge_mode,  # type: ignore[arg-type]
        )
        self.queue_depth = Gauge(
            "strata_serving_queue_depth",
            "Requests waiting in adaptive batching queues.",
            ["model", "version"],
            registry=r,
            **gauge_mode,  # type: ignore[arg-type]
        )
        self.shadow_errors = Counter(
            "strata_serving_shadow_errors_total",
            "Shadow predictions that failed (never seen by callers).",
            ["endpoint", "model", "version"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "strata_serving_shadow_dropped_total",
            "Shadow predictions not run: the worker already ran its limit of them at once.",
            ["endpoint"],
            registry=r,
        )
        self.fallbacks = Counter(
            "strata_serving_fallbacks_total",
            "Requests answered by the fallback model, by reason.",
            ["endpoint", "reason"],
            registry=r,
        )
        self.predlog_dropped = Counter(
            "strata_serving_prediction_log_dropped_rows_total",
            "Rows the prediction log dropped (queue full or write failed).",
            registry=r,
        )
        self.predlog_written = Counter(
            "strata_serving_prediction_log_written_rows_total",
            "Rows the prediction log wrote to the artifact store.",
            registry=r,
        )
        self.swaps = Counter(
            "strata_serving_swaps_total",
            "Model versions swapped in after an alias moved.",
            ["endpoint"],
            registry=r,
        )
        worker_mode = {"multiprocess_mode": "liveall"} if _multiprocess() else {}
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.worker_cpu = Gauge(
            "strata_serving_worker_cpu_seconds",
            "CPU time (user + system) this worker process has used.",
            ["worker"],
            registry=r,
            **worker_mode,  # type: ignore[arg-type]
        )
        self.worker_memory = Gauge(
            "strata_serving_worker_resident_memory_bytes",
            "Resident memory of this worker process.",
            ["worker"],
            registry=r,
            **worker_mode,  # type: ignore[arg-type]
        )
        self.worker_start = Gauge(
            "strata_serving_worker_start_time_seconds",
            "When this worker process started (Unix time).",
            ["worker"],
            registry=r,
            **worker_mode,  # type: ignore[arg-type]
        )

    # -- the tally (event loop only) ---------------------------------------------------
    def add(self, child: Any, amount: float = 1.0) -> None:
        """``child.inc(amount)`` (a counter's or a gauge's child; negative for a gauge's
        ``dec``), written at the next flush."""
        counts = self._counts
        counts[child] = counts.get(child, 0.0) + amount

    def observe(self, child: Any, value: float) -> None:
        """``child.observe(value)`` (a histogram's child), written at the next flush."""
        seen = self._observed.get(child)
        if seen is None:
            self._observed[child] = [value]
        else:
            seen.append(value)

    def flush(self) -> None:
        """Write what was tallied since the last flush: one ``inc`` per label set, one per
        histogram bucket hit and one for the histogram's sum. Call it on the event loop
        that tallies (the timer of :meth:`start` does; so do the scrapes)."""
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        for child, amount in counts.items():
            if amount:
                child.inc(amount)
        for child, values in observed.items():
            _observe_many(child, values)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush every :data:`FLUSH_SECONDS` on ``loop`` from now on (idempotent)."""
        if self._ticking:
            return
        self._ticking = True

        def tick() -> None:
            try:
                self.flush()
            finally:
                loop.call_later(FLUSH_SECONDS, tick)

        loop.call_later(FLUSH_SECONDS, tick)

    def sample_process(self) -> None:
        """Set this worker's CPU, memory and start-time gauges from the OS (psutil)."""
        import psutil

        proc = psutil.Process()
        with proc.oneshot():
            cpu = proc.cpu_times()
            self.child(self.worker_cpu, self.worker).set(cpu.user + cpu.system)
            self.child(self.worker_memory, self.worker).set(proc.memory_info().rss)
            self.child(self.worker_start, self.worker).set(proc.create_time())


def _observe_many(child: Any, values: list[float]) -> None:
    """``child.observe(v)`` for each value, with one write per bucket hit and one for the
    sum (prometheus_client's histogram child keeps its bounds, buckets and sum as
    ``_upper_bounds``, ``_buckets``, ``_sum``; without them, one ``observe`` each)."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            child.observe(value)
        return
    hits = [0] * len(bounds)
    for value in values:
        hits[bisect_left(bounds, value)] += 1  # the first bound >= value; +Inf is last
    for bucket, count in zip(buckets, hits, strict=True):
        if count:
            bucket.inc(count)
    total.inc(sum(values))


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
