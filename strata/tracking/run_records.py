"""A page of runs read as plain tuples (:class:`RunRecords`), and :class:`Run` built from them.

One read serves both the SDK's ``search_runs``/``get_run`` (which build :class:`Run` models)
and the MLflow search route (which writes its JSON straight from the tuples,
``mlflow_api/search_json.py``): the same rows in the same order either way.

Plain SQL on the driver's own cursor, tuples straight from it: a search page loads thousands
of these rows, and SQLAlchemy's result rows cost as much as the query. Each list is ordered
by run id, then by key (the primary-key index's order on SQLite, so no sort there), which
makes a run's params, tags and metrics come out in the same order on every backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from strata.backends.db import Database
from strata.tracking.models import (
    DatasetInput,
    LifecycleStage,
    Run,
    RunInfo,
    RunRecords,
    RunStatus,
)
from strata.tracking.tables import RunRow

#: The run columns in the order of :attr:`RunRecords.runs`.
RUN_COLUMNS = tuple(RunRow.__table__.columns)
#: Run ids per ``IN (...)`` list.
CHUNK = 500

_QUERIES = {
    "params": "SELECT run_id, key, value FROM trk_params WHERE run_id IN ({}) ORDER BY run_id, key",
    "tags": "SELECT run_id, key, value FROM trk_tags WHERE run_id IN ({}) ORDER BY run_id, key",
    "metrics": (
        "SELECT run_id, key, value, is_nan, step, timestamp FROM trk_latest_metrics "
        "WHERE run_id IN ({}) ORDER BY run_id, key"
    ),
    "inputs": (
        "SELECT run_id, name, digest, context, source_type, source, schema_json, profile, "
        "tags_json FROM trk_inputs WHERE run_id IN ({}) ORDER BY run_id, id"
    ),
    "models": (
        "SELECT run_id, model_id, direction, step FROM trk_run_model_links "
        "WHERE run_id IN ({}) ORDER BY run_id, model_id, direction"
    ),
}


#: Each run's params as MLflow's JSON list, written by SQLite (3.38+ has the JSON functions
#: built in): a search page's params were its largest part, ~3,400 rows for 343 runs, each
#: fetched as a tuple, made a dict, then serialized (~3 ms of a ~13 ms search; ~1 ms this
#: way). ``json_group_array`` adds rows in the order they reach it (SQLite before 3.44 has no
#: ORDER BY inside an aggregate), so each run's list is aggregated, without GROUP BY, from a
#: subquery ordered by key: SQLite never flattens a subquery with ORDER BY into an aggregate
#: (its optimizer's flattening rule 16) and the primary key (run_id, key) yields it in order
#: without a sort. A GROUP BY over the whole page gave the same order only because the
#: planner happened to read the primary key in order (~1 ms cheaper per 343 runs, and no
#: promise). Runs without params are left out. SQLite writes strings as orjson does (the
#: search parity test compares the bytes, control characters and non-ASCII included).
PARAMS_JSON = (
    "SELECT r.id, (SELECT json_group_array(json_object('key', key, 'value', value)) "
    "FROM (SELECT key, value FROM trk_params WHERE run_id = r.id ORDER BY key)) "
    "FROM trk_runs AS r WHERE r.id IN ({}) "
    "AND EXISTS (SELECT 1 FROM trk_params AS p WHERE p.run_id = r.id)"
)


def as_tuple(row: RunRow) -> tuple[Any, ...]:
    """An ORM run row as a :attr:`RunRecords.runs` tuple."""
    return tuple(getattr(row, c.key) for c in RUN_COLUMNS)


def read(
    db: Database,
    s: Session,
    runs: Sequence[Sequence[Any]],
    next_page_token: str | None = None,
    *,
    params_json: bool = False,
) -> RunRecords:
    """The params, tags, latest metrics, dataset inputs and model links of ``runs`` (tuples
    in :data:`RUN_COLUMNS` order), in the session's transaction. ``params_json`` (SQLite
    only; ignored elsewhere): the params as :attr:`RunRecords.params_json`."""
    as_json = params_json and db.dialect == "sqlite"
    queries = {k: v for k, v in _QUERIES.items() if not (as_json and k == "params")}
    found: dict[str, list[Any]] = {name: [] for name in queries}
    by_run: dict[str, str] = {}
    ids = [r[0] for r in runs]
    cursor = s.connection().connection.cursor()  # closed with the session's connection
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        for name, query in queries.items():
            cursor.execute(db.sql(query.format(marks)), chunk)
            found[name] += cursor.fetchall()
        if as_json:
            cursor.execute(PARAMS_JSON.format(marks), chunk)
            by_run.update(cursor.fetchall())
    return RunRecords(
        runs,
        next_page_token=next_page_token,
        params_json=by_run if as_json else None,
        **found,
    )


def run_info(r: Sequence[Any]) -> RunInfo:
    # model_construct: these values come from our own tables, already validated on write.
    return RunInfo.model_construct(
        run_id=r[0],
        experiment_id=r[1],
        run_name=r[2],
        user_id=r[3],
        status=RunStatus(r[4]),
        start_time=r[5],
        end_time=r[6],
        lifecycle_stage=LifecycleStage(r[7]),
        artifact_uri=r[8],
        parent_run_id=r[9],
    )


def to_runs(rec: RunRecords) -> list[Run]:
    """:class:`Run` models of the records, in the order of ``rec.runs``."""
    ids = [r[0] for r in rec.runs]
    params: dict[str, dict[str, str]] = {i: {} for i in ids}
    tags: dict[str, dict[str, str]] = {i: {} for i in ids}
    metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
    steps: dict[str, dict[str, int]] = {i: {} for i in ids}
    stamps: dict[str, dict[str, int]] = {i: {} for i in ids}
    inputs: dict[str, list[DatasetInput]] = {i: [] for i in ids}
    for rid, k, v in rec.params:
        params[rid][k] = v
    for rid, k, v in rec.tags:
        tags[rid][k] = v
    for rid, k, val, nan, step, ts in rec.metrics:
        metrics[rid][k] = math.nan if nan else val
        steps[rid][k] = step
        stamps[rid][k] = ts
    for rid, name, digest, context, source_type, source, schema, profile, tags_json in rec.inputs:
        inputs[rid].append(
            DatasetInput(
                name=name,
                digest=digest,
                source_type=source_type,
                source=source,
                schema=schema,
                profile=profile,
                context=context or None,
                tags=json.loads(tags_json or "{}"),
            )
        )
    return [
        Run.model_construct(
            info=run_info(r),
            params=params[r[0]],
            metrics=metrics[r[0]],
            metric_steps=steps[r[0]],
            metric_timestamps=stamps[r[0]],
            tags=tags[r[0]],
            inputs=inputs[r[0]],
        )
        for r in rec.runs
    ]
