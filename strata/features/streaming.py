"""Pushing a stream into the online store: records from a Kafka topic or a Redis stream,
each a JSON object (join keys, the event time, features), written in micro-batches.

Positions are committed at the broker after the batch is written, so a crash delivers the
batch again rather than losing it (at least once). Writing again is harmless: the online
store keeps the newest event time per entity, so a replayed record never replaces a newer
value. A record that is not a JSON object or does not fit the view is counted, its reason
kept (the first few), and its position committed with the rest: one bad record never
blocks the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from strata.core.errors import InvalidInput
from strata.features import online
from strata.features.models import PushStreamResult

if TYPE_CHECKING:
    from strata.backends.streams.base import StreamRecord
    from strata.features.embedded import EmbeddedFeatures

log = logging.getLogger(__name__)

#: ``progress(result so far)`` after each batch.
PushProgress = Callable[[PushStreamResult], None]
MAX_ERRORS = 10


def consume_push(
    svc: EmbeddedFeatures,
    view: str,
    source: str,
    *,
    group: str | None = None,
    batch_size: int = 1000,
    max_records: int | None = None,
    idle_seconds: float | None = None,
    poll_seconds: float = 1.0,
    progress: PushProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PushStreamResult:
    from strata.backends.streams import open_source

    svc.get_feature_view(view)  # NotFound before connecting
    if batch_size < 1:
        raise InvalidInput("batch_size must be at least 1", details={"field": "batch_size"})
    stream = open_source(source, group=group or f"strata-features-{view}")
    result = PushStreamResult(view=view, source=stream.display)
    idle_since = time.monotonic()
    with stream:
        stream.start(None)  # the group's committed positions: pushes are idempotent
        positions: dict[str, Any] = {}
        while True:
            if should_stop is not None and should_stop():
                result.stopped = "stop"
                break
            want = batch_size
            if max_records is not None:
                want = min(want, max_records - result.records)
                if want <= 0:
                    result.stopped = "max_records"
                    break
            records = stream.poll(want, poll_seconds)
            if not records:
                if idle_seconds is not None and time.monotonic() - idle_since >= idle_seconds:
                    result.stopped = "idle"
                    break
                continue
            idle_since = time.monotonic()
            _write(svc, view, records, result)
            positions = stream.advance(positions, records)
            stream.commit(positions)
            result.records += len(records)
            result.batches += 1
            result.positions = dict(positions)
            if progress is not None:
                progress(result)
    return result


def _write(
    svc: EmbeddedFeatures, view: str, records: list[StreamRecord], result: PushStreamResult
) -> None:
    """Push the batch's rows; when the batch is refused, push record by record so only the
    bad ones are rejected."""
    rows: list[dict[str, Any]] = []
    origins: list[StreamRecord] = []
    for record in records:
        row, problem = _row(record)
        if problem is not None:
            _reject(result, record, problem)
            continue
        assert row is not None
        rows.append(row)
        origins.append(record)
    if not rows:
        return
    try:
        result.pushed += online.push(svc, view, rows)
        return
    except InvalidInput as refused:  # the batch is all or nothing: find the bad records
        log.debug("push to %s refused a batch (%s); pushing record by record", view, refused)
    for row, record in zip(rows, origins, strict=True):
        try:
            result.pushed += online.push(svc, view, [row])
        except InvalidInput as exc:
            _reject(result, record, exc.message.replace("rows[0]", "the record"))


def _row(record: StreamRecord) -> tuple[dict[str, Any] | None, str | None]:
    if record.problem is not None:
        return None, record.problem
    if record.value is None:
        return None, "the record has no value (a tombstone)"
    try:
        row = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None, "the record is not JSON"
    if not isinstance(row, dict):
        return None, f"the record is JSON {type(row).__name__}, not an object"
    return row, None


def _reject(result: PushStreamResult, record: StreamRecord, why: str) -> None:
    result.rejected += 1
    if len(result.errors) < MAX_ERRORS:
        result.errors.append(f"{record.label}: {why}")
