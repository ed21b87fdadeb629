"""How the fluent API writes its buffers: batched service calls with bounded retries.

Failures are handed to a ``record(run, exc, dropped)`` callback (the fluent module counts and
re-raises them); an Unavailable backend is retried after each of :data:`RETRY_DELAYS_S`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from strata.core.errors import Conflict, InvalidInput
from strata.core.errors import Unavailable as _Unavailable
from strata.tracking.models import (
    MAX_BATCH_METRICS,
    MAX_BATCH_PARAMS,
    MAX_BATCH_TAGS,
    Metric,
    Param,
    RunTag,
)
from strata.tracking.service import TrackingService

EMBEDDED_CHUNK = 50_000  # points per transaction: bounds how long the SQLite write lock is held
REMOTE_CHUNK = 10_000  # points per request to a strata server (~0.7 MB of JSON)
RETRY_DELAYS_S = (0.2, 0.5, 1.0)  # Unavailable: retried this many times, then dropped
PARAM, TAG = 0, 1  # kinds of buffered items
Recorder = Callable[[Any, BaseException, int], None]


def is_instance(service: TrackingService, module: str, cls: str) -> bool:
    """isinstance without importing ``module`` (not imported: ``service`` cannot be one)."""
    mod = sys.modules.get(module)
    return mod is not None and isinstance(service, getattr(mod, cls))


def chunk_size(service: TrackingService) -> int:
    """Points per log_batch call: big transactions embedded, big requests to a strata server,
    MLflow's limit for any other implementation."""
    if is_instance(service, "strata.tracking.embedded", "EmbeddedTracking"):
        return EMBEDDED_CHUNK
    if is_instance(service, "strata.tracking.remote", "RemoteTracking"):
        return REMOTE_CHUNK
    return MAX_BATCH_METRICS


def call_with_retries(fn: Any, run_id: str, **batch: Any) -> None:
    """One service call; Unavailable is retried after each of RETRY_DELAYS_S."""
    for delay in (*RETRY_DELAYS_S, None):
        try:
            fn(run_id, **batch)
            return
        except _Unavailable:
            if delay is None:
                raise
            time.sleep(delay)


def write_other(run: Any, items: list[tuple[int, str, str]], record: Recorder) -> None:
    """Write buffered params and tags; a failing item is retried alone and reported."""
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    for kind, key, value in items:
        (params if kind == PARAM else tags)[key] = value
    p = [Param(k, v) for k, v in params.items()]
    t = [RunTag(k, v) for k, v in tags.items()]
    if is_instance(run.tracking, "strata.tracking.embedded", "EmbeddedTracking"):
        pn = tn = max(len(p), len(t), 1)
    else:  # over HTTP: MLflow's per-request limits for params and tags
        pn, tn = MAX_BATCH_PARAMS, MAX_BATCH_TAGS
    for b in range(max(-(-len(p) // pn), -(-len(t) // tn))):
        pc, tc = p[b * pn : (b + 1) * pn], t[b * tn : (b + 1) * tn]
        try:
            call_with_retries(run.tracking.log_batch, run.run_id, params=pc, tags=tc)
        except (Conflict, InvalidInput):
            # One bad item fails the batch: write the others, report each failing one.
            for one in [{"params": [x]} for x in pc] + [{"tags": [x]} for x in tc]:
                try:
                    call_with_retries(run.tracking.log_batch, run.run_id, **one)
                except Exception as exc:
                    record(run, exc, 1)
        except Exception as exc:
            record(run, exc, len(pc) + len(tc))


def write_metrics(run: Any, points: list[tuple[str, float, int, int]], record: Recorder) -> None:
    """Write buffered points in chunks; a failing chunk is reported, the rest still written."""
    size, new = run._chunk, tuple.__new__
    for i in range(0, len(points), size):
        chunk = [new(Metric, p) for p in points[i : i + size]]
        try:
            call_with_retries(run.tracking.log_batch, run.run_id, metrics=chunk)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # SIGTERM/Ctrl-C: keep the rest for later
                run._metrics.extendleft(reversed(points[i:]))
                raise
            record(run, exc, len(chunk))
