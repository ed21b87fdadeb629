"""One logging call's rows (metrics, params, tags) written into a run: the statements both the
embedded service and the server's lean SQLite path (``mlflow_api/hot.py``) run.

Plain SQL on a connection offering ``exec_driver_sql`` (SQLAlchemy's, or the lean path's
adapter over ``sqlite3``), so one call costs a few statements and no ORM objects. The caller
owns the transaction and its audit record.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from strata.backends.db import Database
from strata.core.errors import Conflict, NotFound
from strata.tracking.models import LifecycleStage, Metric, Param, RunTag
from strata.tracking.validation import param_map, tag_map, validate_key

RUN_STAGE = "SELECT lifecycle_stage FROM trk_runs WHERE id = ?"
_INSERT_PARAM = "INSERT INTO trk_params (run_id, key, value) VALUES (?, ?, ?)"
_UPSERT_TAG = (
    "INSERT INTO trk_tags (run_id, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"
)
_INSERT_BLOCK = (
    "INSERT INTO trk_metric_blocks (run_id, key, count, min_step, max_step, steps, timestamps,"
    " vals) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# Latest point = greatest (step, timestamp, value); NaN ranks below every number.
_UPSERT_LATEST = (
    "INSERT INTO trk_latest_metrics (run_id, key, value, is_nan, timestamp, step) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, key) DO UPDATE SET "
    "value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, "
    "step = excluded.step WHERE excluded.step > trk_latest_metrics.step OR "
    "(excluded.step = trk_latest_metrics.step AND (excluded.timestamp > "
    "trk_latest_metrics.timestamp OR (excluded.timestamp = trk_latest_metrics.timestamp AND "
    "(CASE WHEN excluded.is_nan THEN -1e308 ELSE excluded.value END) > "
    "(CASE WHEN trk_latest_metrics.is_nan THEN -1e308 ELSE trk_latest_metrics.value END))))"
)


class Result(Protocol):
    def scalar(self) -> Any: ...
    def all(self) -> Sequence[Any]: ...


class Connection(Protocol):
    def exec_driver_sql(self, statement: str, parameters: Any = ..., /) -> Result: ...


_STEP = struct.Struct("<q")
_VALUE = struct.Struct("<d")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class Batch:
    """A logging call checked and packed, before any transaction: one metric block row per
    key (``key, count, min_step, max_step, steps, timestamps, values``) and its latest point
    (``key, value, is_nan, timestamp, step``), params and tags by key (keys and values
    validated), and the audit record's details."""

    blocks: list[tuple[Any, ...]]
    latest: list[tuple[Any, ...]]
    params: dict[str, str]
    tags: dict[str, str]
    details: dict[str, int]


def _single_points(metrics: Sequence[Metric]) -> tuple[list[Any], list[Any]] | None:
    """The rows of a call logging at most one point per key, with a float value and 64-bit
    integer step and timestamp (a single ``log_metric``): packed with ``struct``, which costs
    a fraction of numpy's per-call overhead. None for any other call (numpy packs it)."""
    blocks: list[Any] = []
    latest: list[Any] = []
    seen: set[str] = set()
    lo, hi = _INT64
    for key, value, ts, step in metrics:
        if (
            key in seen
            or type(value) is not float
            or type(ts) is not int
            or type(step) is not int
            or not (lo <= ts <= hi and lo <= step <= hi)
        ):
            return None
        seen.add(key)
        validate_key(key, "metric")
        blocks.append((key, 1, step, step, _STEP.pack(step), _STEP.pack(ts), _VALUE.pack(value)))
        nan = math.isnan(value)
        latest.append((key, 0.0 if nan else value, nan, ts, step))
    return blocks, latest


def _packed(metrics: Sequence[Metric]) -> tuple[list[Any], list[Any]]:
    single = _single_points(metrics)
    if single is not None:
        return single
    from strata.tracking.metric_blocks import metric_blocks  # numpy: not on `runs list`

    packed = metric_blocks(metrics)
    blocks: list[Any] = []
    latest: list[Any] = []
    for key, b in packed.items():
        blocks.append(
            (
                key,
                len(b.steps),
                int(b.steps.min()),
                int(b.steps.max()),
                b.steps.tobytes(),
                b.timestamps.tobytes(),
                b.values.tobytes(),
            )
        )
        i = b.latest_index()
        value = float(b.values[i])
        nan = math.isnan(value)
        latest.append((key, 0.0 if nan else value, nan, int(b.timestamps[i]), int(b.steps[i])))
    return blocks, latest


def prepare(
    metrics: Sequence[Metric] = (), params: Sequence[Param] = (), tags: Sequence[RunTag] = ()
) -> Batch:
    """Validate and pack (InvalidInput names the first bad key or value)."""
    blocks, latest = _packed(metrics) if metrics else ([], [])
    params_ = param_map(params) if params else {}
    tags_ = tag_map(tags) if tags else {}
    details = {"metrics": len(metrics), "params": len(params_), "tags": len(tags_)}
    return Batch(blocks, latest, params_, tags_, details)


def write(
    db: Database, conn: Connection, run_id: str, batch: Batch, *, active: bool = False
) -> None:
    """Write ``batch`` into the active run ``run_id`` inside the caller's transaction.

    NotFound for an unknown run, Conflict for a deleted run or a changed param (params are
    immutable; the same value again is accepted). ``active``: the caller has read the run's
    stage in this transaction already (the lean path, with the token's row)."""
    stage = (
        LifecycleStage.ACTIVE.value
        if active
        else conn.exec_driver_sql(db.sql(RUN_STAGE), (run_id,)).scalar()
    )
    if stage is None:
        raise NotFound(f"Run with id {run_id!r} does not exist", details={"run_id": run_id})
    if stage != LifecycleStage.ACTIVE.value:
        raise Conflict(
            f"Run {run_id!r} is deleted; restore it before logging to it",
            details={"run_id": run_id, "lifecycle_stage": stage},
        )
    params_, tags_ = batch.params, batch.tags
    if params_:
        keys = list(params_)
        marks = ", ".join("?" * len(keys))
        existing: dict[str, str] = dict(
            conn.exec_driver_sql(
                db.sql(f"SELECT key, value FROM trk_params WHERE run_id = ? AND key IN ({marks})"),
                (run_id, *keys),
            ).all()
        )
        changed = [
            {"key": k, "old_value": existing[k], "new_value": v}
            for k, v in params_.items()
            if k in existing and existing[k] != v
        ]
        if changed:
            first = changed[0]
            raise Conflict(
                f"Param {first['key']!r} of run {run_id} was logged as "
                f"{first['old_value']!r}; it cannot change to {first['new_value']!r} "
                "(params are immutable)",
                details={**first, "run_id": str(run_id), "changed": changed},
            )
        new = [(run_id, k, v) for k, v in params_.items() if k not in existing]
        if new:
            conn.exec_driver_sql(db.sql(_INSERT_PARAM), new)
    if tags_:
        conn.exec_driver_sql(db.sql(_UPSERT_TAG), [(run_id, k, v) for k, v in tags_.items()])
        if "mlflow.runName" in tags_:
            conn.exec_driver_sql(
                db.sql("UPDATE trk_runs SET name = ? WHERE id = ?"),
                (tags_["mlflow.runName"][:250], run_id),
            )
    if batch.blocks:
        conn.exec_driver_sql(db.sql(_INSERT_BLOCK), [(run_id, *row) for row in batch.blocks])
        conn.exec_driver_sql(db.sql(_UPSERT_LATEST), [(run_id, *row) for row in batch.latest])
