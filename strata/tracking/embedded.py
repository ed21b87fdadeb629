"""The embedded tracking service: the metadata DB for records, the artifact store for files."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strata.backends.artifacts import ArtifactStore, safe_relpath
from strata.backends.context import Backends
from strata.backends.db import Database
from strata.core.clock import now_ms
from strata.core.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from strata.core.ids import new_id
from strata.core.principal import current
from strata.governance.audit import audited
from strata.tracking import search
from strata.tracking.models import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    DatasetInput,
    Experiment,
    FileInfo,
    LifecycleStage,
    Metric,
    MetricPoint,
    Page,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from strata.tracking.service import TrackingService
from strata.tracking.tables import (
    ExperimentRow,
    ExperimentTagRow,
    InputRow,
    LatestMetricRow,
    MetricBlockRow,
    ParamRow,
    RunRow,
    TagRow,
)

ARTIFACT_SCHEME = "mlflow-artifacts:/"
_RUN_STAGE = "SELECT lifecycle_stage FROM trk_runs WHERE id = ?"
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
_KEY_RE = re.compile(r"^[\w\-. /:]+$")
_ADJ = (
    "amber",
    "bold",
    "brave",
    "bright",
    "calm",
    "clever",
    "crisp",
    "eager",
    "fair",
    "gentle",
    "glad",
    "keen",
    "lively",
    "lucid",
    "merry",
    "nimble",
    "proud",
    "quick",
    "sharp",
    "sunny",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "wise",
    "zesty",
)
_NOUN = (
    "ant",
    "bat",
    "bee",
    "cod",
    "crow",
    "deer",
    "dove",
    "eel",
    "elk",
    "finch",
    "fox",
    "gnu",
    "hare",
    "hawk",
    "ibis",
    "jay",
    "koi",
    "lark",
    "lynx",
    "mole",
    "newt",
    "owl",
    "puma",
    "ram",
    "seal",
    "stork",
    "trout",
    "wolf",
    "wren",
    "yak",
)


def generate_run_name() -> str:
    return f"{random.choice(_ADJ)}-{random.choice(_NOUN)}-{random.randint(1, 999)}"


_valid_keys: set[str] = set()


def validate_key(key: object, kind: str) -> str:
    """Metric/param/tag keys: 1-250 of letters, digits, ``_ - . / :`` and space; no ``..``."""
    if isinstance(key, str) and key in _valid_keys:
        return key
    if not isinstance(key, str) or not key:
        raise InvalidInput(
            f"{kind} key must be a non-empty string, got {key!r}", details={"field": f"{kind}.key"}
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{kind} key {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}",
            details={"field": f"{kind}.key"},
        )
    if (
        not _KEY_RE.match(key)
        or any(part == ".." for part in key.split("/"))
        or key.startswith("/")
    ):
        raise InvalidInput(
            f"Invalid {kind} key {key!r}: use letters, digits, underscores, dashes, periods, "
            "spaces, slashes and colons, without '..' path segments or a leading '/'",
            details={"field": f"{kind}.key"},
        )
    if len(_valid_keys) < 100_000:
        _valid_keys.add(key)
    return key


def _experiment(row: ExperimentRow, tags: dict[str, str]) -> Experiment:
    return Experiment(
        experiment_id=row.id,
        name=row.name,
        artifact_location=row.artifact_location,
        lifecycle_stage=LifecycleStage(row.lifecycle_stage),
        description=row.description,
        tags=tags,
        creation_time=row.creation_time,
        last_update_time=row.last_update_time,
    )


def _info(row: RunRow) -> RunInfo:
    return RunInfo(
        run_id=row.id,
        run_name=row.name,
        experiment_id=row.experiment_id,
        user_id=row.user_id,
        status=RunStatus(row.status),
        start_time=row.start_time,
        end_time=row.end_time,
        lifecycle_stage=LifecycleStage(row.lifecycle_stage),
        artifact_uri=row.artifact_uri,
        parent_run_id=row.parent_run_id,
    )


def _status(value: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(str(value).upper())
    except ValueError:
        raise InvalidInput(
            f"Unknown run status {value!r}; expected one of "
            f"{', '.join(s.value for s in RunStatus)}",
            details={"field": "status"},
        ) from None


class EmbeddedTracking(TrackingService):
    """Tracking on this process's metadata database and artifact store."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self._default_checked = False

    @property
    def db(self) -> Database:
        db = self.backends.db
        if not self._default_checked:
            self._ensure_default(db)
        return db

    @property
    def store(self) -> ArtifactStore:
        return self.backends.artifacts

    def _ensure_default(self, db: Database) -> None:
        with db.read() as session:
            exists = session.get(ExperimentRow, DEFAULT_EXPERIMENT_ID) is not None
        if not exists:
            try:
                with db.write() as session:
                    if session.get(ExperimentRow, DEFAULT_EXPERIMENT_ID) is None:
                        now = now_ms()
                        session.add(
                            ExperimentRow(
                                id=DEFAULT_EXPERIMENT_ID,
                                name=DEFAULT_EXPERIMENT_NAME,
                                artifact_location=f"{ARTIFACT_SCHEME}{DEFAULT_EXPERIMENT_ID}",
                                lifecycle_stage="active",
                                description=None,
                                creation_time=now,
                                last_update_time=now,
                            )
                        )
            except IntegrityError:
                pass  # another process created it first
        self._default_checked = True

    # -- experiments -------------------------------------------------------------------------
    def _exp_row(self, session: Session, experiment_id: str) -> ExperimentRow:
        row = session.get(ExperimentRow, str(experiment_id))
        if row is None:
            raise NotFound(
                f"Experiment with id {experiment_id!r} does not exist",
                details={"experiment_id": experiment_id},
            )
        return row

    def _exp_tags(self, session: Session, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {i: {} for i in ids}
        if ids:
            for r in session.scalars(
                sa.select(ExperimentTagRow).where(ExperimentTagRow.experiment_id.in_(ids))
            ):
                out[r.experiment_id][r.key] = r.value
        return out

    @staticmethod
    def _check_exp_name(name: object) -> str:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(
                "Experiment name must be a non-empty string", details={"field": "name"}
            )
        if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
            raise InvalidInput(
                f"Experiment name is longer than {MAX_EXPERIMENT_NAME_LENGTH} characters",
                details={"field": "name"},
            )
        return name

    def create_experiment(
        self,
        name: str,
        *,
        artifact_location: str | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
    ) -> Experiment:
        name = self._check_exp_name(name)
        tags = {validate_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        if description is None and "mlflow.note.content" in tags:
            description = tags["mlflow.note.content"]
        db = self.db
        try:
            with audited(db, "experiment.create", "experiment", details={"name": name}) as sc:
                s = sc.session
                if s.scalar(sa.select(ExperimentRow.id).where(ExperimentRow.name == name)):
                    raise AlreadyExists(
                        f"Experiment {name!r} already exists (it may be deleted: restore it or "
                        "choose another name)",
                        details={"name": name},
                    )
                exp_id = new_id()
                now = now_ms()
                row = ExperimentRow(
                    id=exp_id,
                    name=name,
                    artifact_location=artifact_location or f"{ARTIFACT_SCHEME}{exp_id}",
                    lifecycle_stage="active",
                    description=description,
                    creation_time=now,
                    last_update_time=now,
                )
                s.add(row)
                s.flush()
                for k, v in tags.items():
                    s.add(ExperimentTagRow(experiment_id=exp_id, key=k, value=v))
                sc.resource_id = exp_id
                return _experiment(row, tags)
        except IntegrityError as exc:
            raise AlreadyExists(
                f"Experiment {name!r} already exists", details={"name": name}
            ) from exc

    def get_experiment(self, experiment_id: str) -> Experiment:
        with self.db.read() as s:
            row = self._exp_row(s, experiment_id)
            return _experiment(row, self._exp_tags(s, [row.id])[row.id])

    def get_experiment_by_name(self, name: str) -> Experiment:
        with self.db.read() as s:
            row = s.scalar(sa.select(ExperimentRow).where(ExperimentRow.name == name))
            if row is None:
                raise NotFound(
                    f"Experiment with name {name!r} does not exist", details={"name": name}
                )
            return _experiment(row, self._exp_tags(s, [row.id])[row.id])

    def search_experiments(
        self,
        *,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        page_token: str | None = None,
    ) -> Page[Experiment]:
        _check_max_results(max_results, 50_000)
        offset = search.decode_page_token(page_token)
        stmt = sa.select(ExperimentRow).where(*search.experiment_conditions(filter))
        stmt = stmt.where(*_view_condition(ExperimentRow.lifecycle_stage, view))
        stmt = stmt.order_by(*search.experiment_order(order_by))
        with self.db.read() as s:
            rows = list(s.scalars(stmt.offset(offset).limit(max_results + 1)))
            more = len(rows) > max_results
            rows = rows[:max_results]
            tags = self._exp_tags(s, [r.id for r in rows])
            items = [_experiment(r, tags[r.id]) for r in rows]
        token = search.encode_page_token(offset + max_results) if more else None
        return Page[Experiment](items=items, next_page_token=token)

    def update_experiment(
        self, experiment_id: str, *, name: str | None = None, description: str | None = None
    ) -> Experiment:
        if name is not None:
            self._check_exp_name(name)
        try:
            with audited(
                self.db, "experiment.update", "experiment", str(experiment_id), {"name": name}
            ) as sc:
                row = self._exp_row(sc.session, experiment_id)
                if name is not None and name != row.name:
                    if sc.session.scalar(
                        sa.select(ExperimentRow.id).where(ExperimentRow.name == name)
                    ):
                        raise AlreadyExists(
                            f"Experiment {name!r} already exists", details={"name": name}
                        )
                    row.name = name
                if description is not None:
                    row.description = description
                row.last_update_time = now_ms()
                sc.session.flush()
                return _experiment(row, self._exp_tags(sc.session, [row.id])[row.id])
        except IntegrityError as exc:
            raise AlreadyExists(
                f"Experiment {name!r} already exists", details={"name": name}
            ) from exc

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        validate_key(key, "tag")
        value = str(value)
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise InvalidInput(
                f"Tag {key!r} value is longer than {MAX_TAG_VALUE_LENGTH}",
                details={"field": "value"},
            )
        with audited(
            self.db, "experiment.set_tag", "experiment", str(experiment_id), {"key": key}
        ) as sc:
            row = self._exp_row(sc.session, experiment_id)
            self.db.upsert(
                sc.session,
                ExperimentTagRow.__table__,
                [{"experiment_id": row.id, "key": key, "value": value}],
                ["experiment_id", "key"],
                ["value"],
            )
            if key == "mlflow.note.content":
                row.description = value
            row.last_update_time = now_ms()

    def _set_exp_stage(self, experiment_id: str, stage: LifecycleStage) -> None:
        action = "experiment.delete" if stage is LifecycleStage.DELETED else "experiment.restore"
        with audited(self.db, action, "experiment", str(experiment_id)) as sc:
            row = self._exp_row(sc.session, experiment_id)
            if row.id == DEFAULT_EXPERIMENT_ID and stage is LifecycleStage.DELETED:
                raise InvalidInput(
                    "The Default experiment (id 0) cannot be deleted",
                    details={"experiment_id": row.id},
                )
            row.lifecycle_stage = stage.value
            row.last_update_time = now_ms()
            # As in MLflow: an experiment's runs are deleted and restored with it.
            sc.session.execute(
                sa.update(RunRow)
                .where(RunRow.experiment_id == row.id)
                .values(lifecycle_stage=stage.value)
            )

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_exp_stage(experiment_id, LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_exp_stage(experiment_id, LifecycleStage.ACTIVE)

    # -- runs --------------------------------------------------------------------------------
    def _run_row(self, session: Session, run_id: str) -> RunRow:
        row = session.get(RunRow, str(run_id))
        if row is None:
            raise NotFound(f"Run with id {run_id!r} does not exist", details={"run_id": run_id})
        return row

    def _active_run(self, session: Session, run_id: str) -> RunRow:
        row = self._run_row(session, run_id)
        if row.lifecycle_stage != LifecycleStage.ACTIVE.value:
            raise Conflict(
                f"Run {run_id!r} is deleted; restore it before logging to it",
                details={"run_id": run_id},
            )
        return row

    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        user: str | None = None,
    ) -> Run:
        tags = {validate_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        parent_run_id = parent_run_id or tags.get("mlflow.parentRunId") or None
        run_name = run_name or tags.get("mlflow.runName") or generate_run_name()
        if len(run_name) > 250:
            raise InvalidInput(
                "Run name is longer than 250 characters", details={"field": "run_name"}
            )
        with audited(self.db, "run.create", "run", details={"experiment_id": experiment_id}) as sc:
            s = sc.session
            exp = self._exp_row(s, experiment_id or DEFAULT_EXPERIMENT_ID)
            if exp.lifecycle_stage != LifecycleStage.ACTIVE.value:
                raise Conflict(
                    f"Experiment {exp.id!r} ({exp.name}) is deleted; restore it "
                    "before creating runs in it",
                    details={"experiment_id": exp.id},
                )
            if parent_run_id is not None:
                self._run_row(s, parent_run_id)
            run_id = new_id()
            row = RunRow(
                id=run_id,
                experiment_id=exp.id,
                name=run_name,
                user_id=user or current().principal.name,
                status=RunStatus.RUNNING.value,
                start_time=start_time or now_ms(),
                end_time=None,
                lifecycle_stage="active",
                artifact_uri=f"{exp.artifact_location.rstrip('/')}/{run_id}/artifacts",
                parent_run_id=parent_run_id,
            )
            s.add(row)
            s.flush()
            if tags:
                s.execute(
                    sa.insert(TagRow),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()],
                )
            sc.resource_id = run_id
            return Run(info=_info(row), tags=tags)

    def get_run(self, run_id: str) -> Run:
        with self.db.read() as s:
            row = self._run_row(s, run_id)
            return self._load_runs(s, [row])[0]

    def _load_runs(self, s: Session, rows: Sequence[RunRow]) -> list[Run]:
        ids = [r.id for r in rows]
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
        steps: dict[str, dict[str, int]] = {i: {} for i in ids}
        stamps: dict[str, dict[str, int]] = {i: {} for i in ids}
        inputs: dict[str, list[DatasetInput]] = {i: [] for i in ids}
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            for rid, k, v in s.execute(
                sa.select(ParamRow.run_id, ParamRow.key, ParamRow.value).where(
                    ParamRow.run_id.in_(chunk)
                )
            ):
                params[rid][k] = v
            for rid, k, v in s.execute(
                sa.select(TagRow.run_id, TagRow.key, TagRow.value).where(TagRow.run_id.in_(chunk))
            ):
                tags[rid][k] = v
            for rid, k, val, nan, step, ts in s.execute(
                sa.select(
                    LatestMetricRow.run_id,
                    LatestMetricRow.key,
                    LatestMetricRow.value,
                    LatestMetricRow.is_nan,
                    LatestMetricRow.step,
                    LatestMetricRow.timestamp,
                ).where(LatestMetricRow.run_id.in_(chunk))
            ):
                metrics[rid][k] = math.nan if nan else val
                steps[rid][k] = step
                stamps[rid][k] = ts
            for inp in s.scalars(
                sa.select(InputRow).where(InputRow.run_id.in_(chunk)).order_by(InputRow.id)
            ):
                inputs[inp.run_id].append(
                    DatasetInput(
                        name=inp.name,
                        digest=inp.digest,
                        source_type=inp.source_type,
                        source=inp.source,
                        schema=inp.schema_json,
                        profile=inp.profile,
                        context=inp.context or None,
                        tags=json.loads(inp.tags_json or "{}"),
                    )
                )
        return [
            Run(
                info=_info(r),
                params=params[r.id],
                metrics=metrics[r.id],
                metric_steps=steps[r.id],
                metric_timestamps=stamps[r.id],
                tags=tags[r.id],
                inputs=inputs[r.id],
            )
            for r in rows
        ]

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        new_status = _status(status) if status is not None else None
        with audited(
            self.db,
            "run.update",
            "run",
            str(run_id),
            {"status": new_status.value if new_status else None},
        ) as sc:
            row = self._run_row(sc.session, run_id)
            if new_status is not None:
                row.status = new_status.value
                if (
                    new_status not in (RunStatus.RUNNING, RunStatus.SCHEDULED)
                    and end_time is None
                    and row.end_time is None
                ):
                    row.end_time = now_ms()
            if end_time is not None:
                row.end_time = int(end_time)
            if run_name:
                if len(run_name) > 250:
                    raise InvalidInput(
                        "Run name is longer than 250 characters", details={"field": "run_name"}
                    )
                row.name = run_name
            sc.session.flush()
            return _info(row)

    def _set_run_stage(self, run_id: str, stage: LifecycleStage) -> None:
        action = "run.delete" if stage is LifecycleStage.DELETED else "run.restore"
        with audited(self.db, action, "run", str(run_id)) as sc:
            self._run_row(sc.session, run_id).lifecycle_stage = stage.value

    def delete_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        blocks = metric_blocks(metrics)
        param_map = _param_map(params)
        tag_map: dict[str, str] = {}
        for k, v in tags:
            validate_key(k, "tag")
            v = str(v)
            if len(v) > MAX_TAG_VALUE_LENGTH:
                raise InvalidInput(
                    f"Tag {k!r} value is {len(v)} characters; the limit is {MAX_TAG_VALUE_LENGTH}",
                    details={"field": "tag.value"},
                )
            tag_map[k] = v
        details = {"metrics": len(metrics), "params": len(param_map), "tags": len(tag_map)}
        db = self.db
        # The logging hot path: plain SQL on the session's connection (no ORM objects, no
        # statement compilation), so one call costs a few hundred microseconds.
        with audited(db, "run.log_batch", "run", str(run_id), details) as sc:
            conn = sc.session.connection()
            run_id = str(run_id)
            stage = conn.exec_driver_sql(db.sql(_RUN_STAGE), (run_id,)).scalar()
            if stage is None:
                raise NotFound(f"Run with id {run_id!r} does not exist", details={"run_id": run_id})
            if stage != LifecycleStage.ACTIVE.value:
                raise Conflict(
                    f"Run {run_id!r} is deleted; restore it before logging to it",
                    details={"run_id": run_id},
                )
            if param_map:
                keys = list(param_map)
                marks = ", ".join("?" * len(keys))
                existing: dict[str, str] = dict(
                    conn.exec_driver_sql(
                        db.sql(
                            f"SELECT key, value FROM trk_params WHERE run_id = ? AND key IN "
                            f"({marks})"
                        ),
                        (run_id, *keys),
                    ).all()
                )
                for k, v in param_map.items():
                    if k in existing and existing[k] != v:
                        raise Conflict(
                            f"Param {k!r} of run {run_id} was logged as {existing[k]!r}; it "
                            f"cannot change to {v!r} (params are immutable)",
                            details={"key": k, "old_value": existing[k], "new_value": v},
                        )
                new = [(run_id, k, v) for k, v in param_map.items() if k not in existing]
                if new:
                    conn.exec_driver_sql(db.sql(_INSERT_PARAM), new)
            if tag_map:
                conn.exec_driver_sql(
                    db.sql(_UPSERT_TAG), [(run_id, k, v) for k, v in tag_map.items()]
                )
                if "mlflow.runName" in tag_map:
                    conn.exec_driver_sql(
                        db.sql("UPDATE trk_runs SET name = ? WHERE id = ?"),
                        (tag_map["mlflow.runName"][:250], run_id),
                    )
            if blocks:
                conn.exec_driver_sql(
                    db.sql(_INSERT_BLOCK),
                    [
                        (
                            run_id,
                            key,
                            len(b.steps),
                            int(b.steps.min()),
                            int(b.steps.max()),
                            b.steps.tobytes(),
                            b.timestamps.tobytes(),
                            b.values.tobytes(),
                        )
                        for key, b in blocks.items()
                    ],
                )
                latest = []
                for key, b in blocks.items():
                    i = b.latest_index()
                    value = float(b.values[i])
                    nan = math.isnan(value)
                    latest.append(
                        (
                            run_id,
                            key,
                            0.0 if nan else value,
                            nan,
                            int(b.timestamps[i]),
                            int(b.steps[i]),
                        )
                    )
                conn.exec_driver_sql(db.sql(_UPSERT_LATEST), latest)

    def delete_tag(self, run_id: str, key: str) -> None:
        with audited(self.db, "run.delete_tag", "run", str(run_id), {"key": key}) as sc:
            self._active_run(sc.session, run_id)
            deleted = sc.session.execute(
                sa.delete(TagRow).where(TagRow.run_id == str(run_id), TagRow.key == key)
            )
            if deleted.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(
                    f"No tag with key {key!r} in run {run_id}",
                    details={"run_id": run_id, "key": key},
                )

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        for d in datasets:
            if not d.name or not d.digest:
                raise InvalidInput(
                    "Each dataset input needs a name and a digest", details={"field": "datasets"}
                )
        with audited(
            self.db, "run.log_inputs", "run", str(run_id), {"datasets": [d.name for d in datasets]}
        ) as sc:
            s = sc.session
            self._active_run(s, run_id)
            for d in datasets:
                ctx = d.context or d.tags.get("mlflow.data.context", "") or ""
                exists = s.scalar(
                    sa.select(InputRow.id).where(
                        InputRow.run_id == run_id,
                        InputRow.name == d.name,
                        InputRow.digest == d.digest,
                        InputRow.context == ctx,
                    )
                )
                if exists:
                    continue
                s.add(
                    InputRow(
                        id=new_id(),
                        run_id=run_id,
                        name=d.name,
                        digest=d.digest,
                        context=ctx,
                        source_type=d.source_type,
                        source=d.source,
                        schema_json=d.schema_,
                        profile=d.profile,
                        tags_json=json.dumps(d.tags, sort_keys=True),
                    )
                )

    def _history_arrays(self, s: Session, run_ids: Sequence[str], key: str) -> dict[str, _Block]:
        rows = (
            s.execute(
                sa.select(
                    MetricBlockRow.run_id,
                    MetricBlockRow.steps,
                    MetricBlockRow.timestamps,
                    MetricBlockRow.vals,
                )
                .where(MetricBlockRow.run_id.in_(list(run_ids)), MetricBlockRow.key == key)
                .order_by(MetricBlockRow.run_id, MetricBlockRow.id)
            )
            .tuples()
            .all()
        )
        parts: dict[str, list[tuple[bytes, bytes, bytes]]] = {}
        for rid, st, ts, vals in rows:
            parts.setdefault(rid, []).append((st, ts, vals))
        out: dict[str, _Block] = {}
        for rid, chunks in parts.items():
            steps = np.concatenate([np.frombuffer(c[0], dtype="<i8") for c in chunks])
            stamps = np.concatenate([np.frombuffer(c[1], dtype="<i8") for c in chunks])
            values = np.concatenate([np.frombuffer(c[2], dtype="<f8") for c in chunks])
            order = np.lexsort((stamps, steps))  # stable: by step, then timestamp, then logged
            out[rid] = _Block(steps[order], stamps[order], values[order])
        return out

    def get_metric_history(
        self, run_id: str, key: str, *, max_results: int | None = None
    ) -> list[MetricPoint]:
        with self.db.read() as s:
            self._run_row(s, run_id)
            block = self._history_arrays(s, [str(run_id)], key).get(str(run_id))
        if block is None:
            return []
        return block.points(key, None, max_results)

    def get_metric_history_bulk(
        self, run_ids: Sequence[str], key: str, *, max_results: int = 25_000
    ) -> list[MetricPoint]:
        ids = [str(r) for r in run_ids]
        if not ids:
            return []
        with self.db.read() as s:
            found = set(s.scalars(sa.select(RunRow.id).where(RunRow.id.in_(ids))))
            missing = [r for r in ids if r not in found]
            if missing:
                raise NotFound(
                    f"Run with id {missing[0]!r} does not exist", details={"run_id": missing[0]}
                )
            blocks = self._history_arrays(s, ids, key)
        out: list[MetricPoint] = []
        for rid in sorted(blocks):
            if len(out) >= max_results:
                break
            out.extend(blocks[rid].points(key, rid, max_results - len(out)))
        return out

    def search_runs(
        self,
        experiment_ids: Sequence[str] | str,
        filter: str | None = None,
        *,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> Page[Run]:
        _check_max_results(max_results, 50_000)
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        clauses = search.parse_run_filter(filter)
        keys = search.parse_order_by(order_by)
        offset = search.decode_page_token(page_token)
        stmt = sa.select(RunRow).where(RunRow.experiment_id.in_([str(i) for i in ids]))
        stmt = stmt.where(*_view_condition(RunRow.lifecycle_stage, view))
        stmt = stmt.where(*search.run_conditions(clauses))
        stmt = search.apply_run_order(stmt, keys).offset(offset).limit(max_results + 1)
        with self.db.read() as s:
            rows = list(s.scalars(stmt))
            more = len(rows) > max_results
            runs = self._load_runs(s, rows[:max_results])
        token = search.encode_page_token(offset + max_results) if more else None
        return Page[Run](items=runs, next_page_token=token)

    # -- artifacts ---------------------------------------------------------------------------
    def _artifact_root(self, run: RunRow | RunInfo) -> str:
        uri = run.artifact_uri
        if not uri.startswith(ARTIFACT_SCHEME):
            raise InvalidInput(
                f"Run artifacts live at {uri!r}, outside Strata's artifact store; "
                "only mlflow-artifacts:/ locations are served",
                details={"artifact_uri": uri},
            )
        return uri[len(ARTIFACT_SCHEME) :].strip("/")

    def run_artifact_path(self, run_id: str, path: str = "") -> str:
        """The artifact-store path of ``path`` inside a run's artifacts (validated)."""
        with self.db.read() as s:
            root = self._artifact_root(self._run_row(s, run_id))
        rel = safe_relpath(path) if path.strip("/") else ""
        return f"{root}/{rel}" if rel else root

    def log_artifact_stream(self, run_id: str, path: str, fileobj: BinaryIO) -> FileInfo:
        rel = safe_relpath(path)
        with self.db.read() as s:
            root = self._artifact_root(self._active_run(s, run_id))
        with audited(self.db, "run.log_artifact", "run", str(run_id), {"path": rel}) as sc:
            info = self.store.put_stream(f"{root}/{rel}", fileobj)
            sc.details.update({"size": info.size, "sha256": info.sha256})
        return FileInfo(path=rel, is_dir=False, file_size=info.size)

    def list_artifacts(self, run_id: str, path: str = "") -> list[FileInfo]:
        prefix = self.run_artifact_path(run_id, path)
        root = self.run_artifact_path(run_id)
        try:
            items = self.store.list(prefix)
        except NotFound:
            if prefix == root:
                return []  # nothing logged yet
            raise NotFound(
                f"Run {run_id} has no artifact directory {path!r}",
                details={"run_id": run_id, "path": path},
            ) from None
        out = []
        for item in items:
            rel = item.path[len(root) :].strip("/")
            out.append(
                FileInfo(path=rel, is_dir=item.is_dir, file_size=None if item.is_dir else item.size)
            )
        return out

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | Path = ".") -> Path:
        src = self.run_artifact_path(run_id, path)
        rel = path.strip("/")
        dst_root = Path(dst_path)
        target = dst_root / rel if rel else dst_root
        if rel and self.store.exists(src) and not self._is_dir(src):
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(src, target)
            return target
        try:
            entries = self.store.list(src)
        except NotFound:
            entries = []  # a run with no artifacts yet has no directory in the store
        if not entries and rel:
            raise NotFound(
                f"No artifact {rel!r} in run {run_id}", details={"run_id": run_id, "path": rel}
            )
        target.mkdir(parents=True, exist_ok=True)
        if entries:
            self.store.download_dir(src, target)
        return target

    def _is_dir(self, store_path: str) -> bool:
        try:
            return self.store.info(store_path).is_dir
        except NotFound:
            return False


def _view_condition(col: Any, view: ViewType | str) -> list[Any]:
    try:
        v = ViewType(str(view).upper())
    except ValueError:
        raise InvalidInput(
            f"Unknown view type {view!r}; expected ACTIVE_ONLY, DELETED_ONLY or ALL",
            details={"field": "view"},
        ) from None
    if v is ViewType.ACTIVE_ONLY:
        return [col == LifecycleStage.ACTIVE.value]
    if v is ViewType.DELETED_ONLY:
        return [col == LifecycleStage.DELETED.value]
    return []


def _check_max_results(n: int, limit: int) -> None:
    if not isinstance(n, int) or not 1 <= n <= limit:
        raise InvalidInput(
            f"max_results must be between 1 and {limit}, got {n!r}",
            details={"field": "max_results"},
        )


class _Block:
    """Points of one metric as parallel numpy arrays (steps, timestamps, values)."""

    __slots__ = ("steps", "timestamps", "values")

    def __init__(self, steps: np.ndarray, timestamps: np.ndarray, values: np.ndarray) -> None:
        self.steps = steps
        self.timestamps = timestamps
        self.values = values

    def latest_index(self) -> int:
        vals = np.where(np.isnan(self.values), -np.inf, self.values)
        return int(np.lexsort((vals, self.timestamps, self.steps))[-1])

    def points(self, key: str, run_id: str | None, limit: int | None) -> list[MetricPoint]:
        n = len(self.steps) if limit is None else min(limit, len(self.steps))
        keys = [key] * n
        rids = [run_id] * n
        return list(
            map(
                MetricPoint,
                keys,
                self.values[:n].tolist(),
                self.timestamps[:n].tolist(),
                self.steps[:n].tolist(),
                rids,
            )
        )


def metric_blocks(metrics: Sequence[Metric]) -> dict[str, _Block]:
    """Validate metric points and pack them per key (the logging hot path).

    Raises InvalidInput naming the key when a value is not a number or a step/timestamp is
    not an integer.
    """
    cols: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
    for key, value, ts, step in metrics:
        c = cols.get(key)
        if c is None:
            validate_key(key, "metric")
            c = cols[key] = ([], [], [])
        c[0].append(value)
        c[1].append(ts)
        c[2].append(step)
    out: dict[str, _Block] = {}
    for key, (values, stamps, steps) in cols.items():
        try:
            v = np.asarray(values, dtype="<f8")
        except (TypeError, ValueError):
            raise InvalidInput(
                f"Metric {key!r} values must be numbers",
                details={"field": "metric.value", "key": key},
            ) from None
        try:
            t = np.asarray(stamps, dtype="<i8")
            st = np.asarray(steps, dtype="<i8")
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput(
                f"Metric {key!r} timestamps and steps must be integers",
                details={"field": "metric.step", "key": key},
            ) from None
        if v.ndim != 1 or t.ndim != 1 or st.ndim != 1:
            raise InvalidInput(
                f"Metric {key!r} values must be scalars",
                details={"field": "metric.value", "key": key},
            )
        out[key] = _Block(st, t, v)
    return out


def _param_map(params: Sequence[Param]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params:
        validate_key(k, "param")
        v = str(v)
        if len(v) > MAX_PARAM_VALUE_LENGTH:
            raise InvalidInput(
                f"Param {k!r} value is {len(v)} characters; the limit is {MAX_PARAM_VALUE_LENGTH}",
                details={"field": "param.value", "key": k},
            )
        if k in out and out[k] != v:
            raise Conflict(
                f"Param {k!r} appears twice in one batch with different values "
                f"{out[k]!r} and {v!r}",
                details={"key": k},
            )
        out[k] = v
    return out
