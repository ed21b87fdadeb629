"""Ground-truth labels: stored in ``mon_feedback``, matched to the prediction log by request
id (and row) or by entity key + time (the entity's latest prediction at or before it)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from strata.core.clock import utcnow
from strata.governance.audit import audited
from strata.monitoring import predlog
from strata.monitoring.models import FeedbackItem, FeedbackResult
from strata.monitoring.tables import MonFeedbackRow

MAX_ITEMS = 100_000
UNKNOWN_LISTED = 100


def _table(items: list[FeedbackItem]) -> pa.Table:
    return pa.table(
        {
            "request_id": pa.array([i.request_id for i in items], pa.string()),
            "row": pa.array([i.row for i in items], pa.int32()),
            "entity_key": pa.array([i.entity_key for i in items], pa.string()),
            "ts": pa.array([i.ts for i in items], pa.timestamp("us", tz="UTC")),
        }
    )


def unmatched(con: Any, store: Any, model: str, items: list[FeedbackItem]) -> np.ndarray:
    """A boolean per item: no logged prediction matches it (yet)."""
    if not predlog.has_log(store, model):
        return np.ones(len(items), dtype=bool)
    con.register("fb", _table(items))
    log = predlog.scan(store, model)
    sql = f"""
        SELECT fb_idx FROM (SELECT row_number() OVER () - 1 AS fb_idx, * FROM fb) f
        WHERE NOT (
            (f.request_id IS NOT NULL AND EXISTS (
                SELECT 1 FROM {log} l WHERE l.request_id = f.request_id AND l.row = f.row))
            OR (f.request_id IS NULL AND EXISTS (
                SELECT 1 FROM {log} l WHERE l.entity_key = f.entity_key AND l.ts <= f.ts)))
    """
    idx = con.execute(sql).fetchnumpy()["fb_idx"]
    con.unregister("fb")
    mask = np.zeros(len(items), dtype=bool)
    mask[np.asarray(idx, dtype=np.int64)] = True
    return mask


def submit(db: Any, con: Any, store: Any, model: str, items: list[FeedbackItem]) -> FeedbackResult:
    """Store every item (audited, one transaction) and report which match no prediction."""
    now = utcnow()
    rows = [
        {
            "model": model,
            "request_id": i.request_id,
            "row": i.row,
            "entity_key": i.entity_key,
            "ts": i.ts,
            "label": json.dumps(i.label),
            "received_at": now,
        }
        for i in items
    ]
    missing = unmatched(con, store, model, items) if items else np.zeros(0, dtype=bool)
    lost = [items[k] for k in np.flatnonzero(missing)]
    result = FeedbackResult(
        model=model,
        received=len(items),
        matched=len(items) - len(lost),
        unknown=len(lost),
        unknown_request_ids=[i.request_id for i in lost if i.request_id][:UNKNOWN_LISTED],
        unknown_entity_keys=[i.entity_key for i in lost if i.entity_key][:UNKNOWN_LISTED],
    )
    details = {"received": result.received, "unknown": result.unknown}
    if rows:
        with audited(db, "monitoring.feedback", "model", model, details) as scope:
            scope.session.execute(sa.insert(MonFeedbackRow), rows)
    return result


def labels_table(db: Any, model: str) -> pa.Table:
    """Every stored label of ``model`` (the latest per request/row or entity/time wins), as
    Arrow: request_id, row, entity_key, ts, label (JSON text), received_at."""
    q = sa.select(
        MonFeedbackRow.request_id,
        MonFeedbackRow.row,
        MonFeedbackRow.entity_key,
        MonFeedbackRow.ts,
        MonFeedbackRow.label,
        MonFeedbackRow.id,
    ).where(MonFeedbackRow.model == model)
    with db.read() as session:
        rows = session.execute(q).all()
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [()] * 6
    return pa.table(
        {
            "request_id": pa.array(cols[0], pa.string()),
            "row": pa.array(cols[1], pa.int32()),
            "entity_key": pa.array(cols[2], pa.string()),
            "ts": pa.array(cols[3], pa.timestamp("us", tz="UTC")),
            "label": pa.array(cols[4], pa.string()),
            "id": pa.array(cols[5], pa.int64()),
        }
    )
