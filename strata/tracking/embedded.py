"""The embedded tracking service: the metadata DB for records, the artifact store for files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strata.backends.artifacts import ArtifactStore
from strata.backends.context import Backends
from strata.backends.db import Database
from strata.core.clock import now_ms
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.core.ids import new_id
from strata.core.principal import current
from strata.governance.audit import audited
from strata.tracking import run_records, search
from strata.tracking.embedded_artifacts import ArtifactsMixin
from strata.tracking.embedded_experiments import ExperimentsMixin
from strata.tracking.embedded_models import LoggedModelsMixin
from strata.tracking.models import (
    ARTIFACT_SCHEME,
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    DatasetInput,
    InputUse,
    LifecycleStage,
    Metric,
    MetricPoint,
    Page,
    Param,
    Run,
    RunInfo,
    RunRecords,
    RunStatus,
    RunTag,
    ViewType,
)
from strata.tracking.service import TrackingService
from strata.tracking.tables import (
    ExperimentRow,
    InputRow,
    MetricBlockRow,
    RunRow,
    TagRow,
)
from strata.tracking.validation import (
    check_max_results,
    generate_run_name,
    parse_status,
    validate_key,
    view_condition,
)

MAX_INPUT_PAIRS = 1000


def _info(row: RunRow | sa.Row[Any]) -> RunInfo:
    return RunInfo.model_construct(
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


if TYPE_CHECKING:
    from strata.tracking.metric_blocks import MetricBlock


class EmbeddedTracking(ExperimentsMixin, LoggedModelsMixin, ArtifactsMixin, TrackingService):
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
                details={"run_id": run_id, "lifecycle_stage": row.lifecycle_stage},
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
            return run_records.to_runs(run_records.read(self.db, s, [run_records.as_tuple(row)]))[0]

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        new_status = parse_status(status) if status is not None else None
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
        from strata.tracking import batch_write

        batch = batch_write.prepare(metrics, params, tags)
        # The logging hot path: plain SQL on the session's connection (no ORM objects, no
        # statement compilation), so one call costs a few hundred microseconds.
        with audited(self.db, "run.log_batch", "run", str(run_id), batch.details) as sc:
            batch_write.write(self.db, sc.session.connection(), str(run_id), batch)

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

    def list_input_uses(self, datasets: Sequence[tuple[str, str]]) -> list[InputUse]:
        pairs = {(str(n), str(d)) for n, d in datasets}
        if len(pairs) > MAX_INPUT_PAIRS:
            raise InvalidInput(
                f"list_input_uses takes at most {MAX_INPUT_PAIRS} (name, digest) pairs, "
                f"got {len(pairs)}",
                details={"field": "datasets"},
            )
        if not pairs:
            return []
        stmt = (
            sa.select(InputRow.name, InputRow.digest, InputRow.context, RunRow)
            .join(RunRow, RunRow.id == InputRow.run_id)
            .where(InputRow.digest.in_(sorted({d for _, d in pairs})))
            .order_by(RunRow.start_time, RunRow.id, InputRow.context)
        )
        with self.db.read() as s:
            rows = s.execute(stmt).all()
            return [
                InputUse(name=name, digest=digest, context=context, run=_info(run))
                for name, digest, context, run in rows
                if (name, digest) in pairs
            ]

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

    def _history_arrays(
        self, s: Session, run_ids: Sequence[str], key: str
    ) -> dict[str, MetricBlock]:
        import numpy as np

        from strata.tracking.metric_blocks import MetricBlock

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
        out: dict[str, MetricBlock] = {}
        for rid, chunks in parts.items():
            steps = np.concatenate([np.frombuffer(c[0], dtype="<i8") for c in chunks])
            stamps = np.concatenate([np.frombuffer(c[1], dtype="<i8") for c in chunks])
            values = np.concatenate([np.frombuffer(c[2], dtype="<f8") for c in chunks])
            order = np.lexsort((stamps, steps))  # stable: by step, then timestamp, then logged
            out[rid] = MetricBlock(steps[order], stamps[order], values[order])
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
        records = self.search_run_records(
            experiment_ids,
            filter,
            view=view,
            max_results=max_results,
            order_by=order_by,
            page_token=page_token,
        )
        return Page[Run](
            items=run_records.to_runs(records), next_page_token=records.next_page_token
        )

    def search_run_records(
        self,
        experiment_ids: Sequence[str] | str,
        filter: str | None = None,
        *,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        params_json: bool = False,
    ) -> RunRecords:
        check_max_results(max_results, 50_000)
        refs = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        clauses = search.parse_run_filter(filter)
        keys = search.parse_order_by(order_by)
        offset = search.decode_page_token(page_token)
        with self.db.read() as s:
            ids = self._resolve_experiments(s, refs)
            # The run columns as plain rows, not ORM objects (a page holds up to 50,000).
            stmt = sa.select(*run_records.RUN_COLUMNS).where(RunRow.experiment_id.in_(ids))
            stmt = stmt.where(*view_condition(RunRow.lifecycle_stage, view))
            stmt = stmt.where(*search.run_conditions(clauses))
            stmt = search.apply_run_order(stmt, keys).offset(offset).limit(max_results + 1)
            rows = s.connection().execute(stmt).all()  # Core: no ORM result machinery
            token = (
                search.encode_page_token(offset + max_results) if len(rows) > max_results else None
            )
            return run_records.read(self.db, s, rows[:max_results], token, params_json=params_json)
