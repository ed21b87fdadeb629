"""MLflow 3 LoggedModels of the embedded tracking service (a mixin of EmbeddedTracking).

MLflow 3's ``log_model`` (and so ``mlflow.autolog()``) creates a LoggedModel, uploads the
model files below its artifact location ``{experiment artifact_location}/models/{model_id}/
artifacts`` and links it to the run as an *output*; a run can also take models as *inputs*.
The store path of a proxied artifact is its URI minus ``mlflow-artifacts:/``, the same rule
as for runs, so both share the artifact store. Filters are compiled by :mod:`.search`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.backends.artifacts import ArtifactStore
from strata.backends.db import Database
from strata.core.clock import now_ms
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.core.ids import new_id
from strata.core.parse import parse_enum
from strata.core.principal import current
from strata.governance.audit import audited
from strata.tracking import search, search_models
from strata.tracking.models import (
    MAX_KEY_LENGTH,
    MAX_MODEL_NAME_LENGTH,
    DatasetRef,
    LifecycleStage,
    LoggedModel,
    LoggedModelStatus,
    ModelDirection,
    ModelMetric,
    ModelOrder,
    Page,
    RunModels,
)
from strata.tracking.tables import (
    ExperimentRow,
    LoggedModelMetricRow,
    LoggedModelParamRow,
    LoggedModelRow,
    LoggedModelTagRow,
    RunModelLinkRow,
    RunRow,
)
from strata.tracking.validation import check_max_results


def _check_key(kind: str, key: object) -> str:
    """A model's keys: any non-empty string up to 250 characters (MLflow's model rule)."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"invalid {kind} key {key!r}: a non-empty string of at most {MAX_KEY_LENGTH} "
            "characters is expected",
            details={"field": f"{kind}.key"},
        )
    return key


def _keys(kind: str, values: dict[str, str] | None) -> dict[str, str]:
    """``values`` with every key checked (InvalidInput names the kind and the key)."""
    for key in values or {}:
        _check_key(kind, key)
    return dict(values or {})


class LoggedModelsMixin(ABC):
    """LoggedModel records, params, tags, metrics, run links and artifacts; audited writes."""

    @property
    @abstractmethod
    def db(self) -> Database:
        """The (migrated) metadata database."""

    @property
    @abstractmethod
    def store(self) -> ArtifactStore:
        """The artifact store."""

    @abstractmethod
    def _exp_row(self, session: Session, experiment_id: str) -> ExperimentRow: ...

    @abstractmethod
    def _run_row(self, session: Session, run_id: str) -> RunRow: ...

    def _model_row(
        self, session: Session, model_id: str, allow_deleted: bool = False
    ) -> LoggedModelRow:
        row = session.get(LoggedModelRow, str(model_id))
        if row is None or (not allow_deleted and row.lifecycle_stage != LifecycleStage.ACTIVE):
            raise NotFound(
                f"Logged model {model_id!r} does not exist", details={"model_id": model_id}
            )
        return row

    def create_logged_model(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        model_type: str | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> LoggedModel:
        if name is not None and (not name or len(name) > MAX_MODEL_NAME_LENGTH or "/" in name):
            raise InvalidInput(
                f"invalid model name {name!r}: 1 to {MAX_MODEL_NAME_LENGTH} characters, no '/'",
                details={"field": "name"},
            )
        params, tags = _keys("param", params), _keys("tag", tags)
        model_id = f"m-{new_id()}"
        ts = now_ms()
        with audited(self.db, "logged_model.create", "logged_model", model_id) as s:
            experiment = self._exp_row(s.session, experiment_id)
            if experiment.lifecycle_stage != LifecycleStage.ACTIVE.value:
                raise InvalidInput(
                    f"experiment {experiment_id!r} is deleted: restore it before logging "
                    "models to it",
                    details={"experiment_id": experiment_id},
                )
            if source_run_id:
                self._run_row(s.session, source_run_id)
            root = experiment.artifact_location.rstrip("/")
            s.session.add(
                LoggedModelRow(
                    id=model_id,
                    experiment_id=experiment.id,
                    name=name or f"model-{model_id[-8:]}",
                    source_run_id=source_run_id or None,
                    model_type=model_type or None,
                    status=LoggedModelStatus.PENDING.value,
                    artifact_location=f"{root}/models/{model_id}/artifacts",
                    creator=current().principal.name,
                    lifecycle_stage=LifecycleStage.ACTIVE.value,
                    created=ts,
                    updated=ts,
                )
            )
            s.session.flush()
            s.session.add_all(
                LoggedModelParamRow(model_id=model_id, key=k, value=v) for k, v in params.items()
            )
            s.session.add_all(
                LoggedModelTagRow(model_id=model_id, key=k, value=v) for k, v in tags.items()
            )
        return self.get_logged_model(model_id)

    def _load_models(self, session: Session, rows: Sequence[LoggedModelRow]) -> list[LoggedModel]:
        ids = [r.id for r in rows]
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, list[ModelMetric]] = {i: [] for i in ids}
        if ids:
            for p in session.scalars(
                sa.select(LoggedModelParamRow).where(LoggedModelParamRow.model_id.in_(ids))
            ):
                params[p.model_id][p.key] = p.value
            for t in session.scalars(
                sa.select(LoggedModelTagRow).where(LoggedModelTagRow.model_id.in_(ids))
            ):
                tags[t.model_id][t.key] = t.value
            for m in session.scalars(
                sa.select(LoggedModelMetricRow)
                .where(LoggedModelMetricRow.model_id.in_(ids))
                .order_by(LoggedModelMetricRow.id)
            ):
                metrics[m.model_id].append(
                    ModelMetric(
                        model_id=m.model_id,
                        key=m.key,
                        value=math.nan if m.is_nan else m.value,
                        timestamp=m.timestamp,
                        step=m.step,
                        run_id=m.run_id,
                        dataset_name=m.dataset_name,
                        dataset_digest=m.dataset_digest,
                    )
                )
        return [
            LoggedModel(
                model_id=r.id,
                experiment_id=r.experiment_id,
                name=r.name,
                artifact_location=r.artifact_location,
                status=LoggedModelStatus(r.status),
                status_message=r.status_message,
                model_type=r.model_type,
                source_run_id=r.source_run_id,
                creator=r.creator,
                lifecycle_stage=LifecycleStage(r.lifecycle_stage),
                creation_time=r.created,
                last_update_time=r.updated,
                tags=tags[r.id],
                params=params[r.id],
                metrics=metrics[r.id],
            )
            for r in rows
        ]

    def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        with self.db.read() as session:
            row = self._model_row(session, model_id, allow_deleted)
            return self._load_models(session, [row])[0]

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str | None = None,
        order_by: Sequence[ModelOrder | tuple[str, bool]] = (),
        max_results: int = 100,
        page_token: str | None = None,
        datasets: Sequence[DatasetRef | tuple[str, str | None]] = (),
    ) -> Page[LoggedModel]:
        check_max_results(max_results, 1000)
        offset = search.decode_page_token(page_token)
        refs = [DatasetRef(*d) for d in datasets]
        stmt = sa.select(LoggedModelRow).where(
            LoggedModelRow.experiment_id.in_([str(e) for e in experiment_ids]),
            LoggedModelRow.lifecycle_stage == LifecycleStage.ACTIVE.value,
            *search_models.logged_model_conditions(filter, refs),
        )
        stmt = search_models.order_logged_models(stmt, [ModelOrder(*o) for o in order_by])
        with self.db.read() as session:
            rows = list(session.scalars(stmt.offset(offset).limit(max_results + 1)))
            models = self._load_models(session, rows[:max_results])
        more = len(rows) > max_results
        token = search.encode_page_token(offset + max_results) if more else None
        return Page[LoggedModel](items=models, next_page_token=token)

    def update_logged_model(
        self,
        model_id: str,
        *,
        status: LoggedModelStatus | str,
        status_message: str | None = None,
    ) -> LoggedModel:
        value = parse_enum(
            LoggedModelStatus,
            str(status).upper().removeprefix("LOGGED_MODEL_"),
            "status",
            what="logged model status",
        )
        with audited(
            self.db, "logged_model.finalize", "logged_model", model_id, {"status": value.value}
        ) as s:
            row = self._model_row(s.session, model_id)
            row.status, row.status_message, row.updated = value.value, status_message, now_ms()
        return self.get_logged_model(model_id)

    def delete_logged_model(self, model_id: str) -> None:
        with audited(self.db, "logged_model.delete", "logged_model", model_id) as s:
            row = self._model_row(s.session, model_id)
            row.lifecycle_stage, row.updated = LifecycleStage.DELETED.value, now_ms()

    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None:
        tags = _keys("tag", tags)
        with audited(self.db, "logged_model.set_tags", "logged_model", model_id) as s:
            self._model_row(s.session, model_id).updated = now_ms()
            if tags:
                self.db.upsert(
                    s.session,
                    LoggedModelTagRow.__table__,
                    [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()],
                    ["model_id", "key"],
                    ["value"],
                )

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        with audited(self.db, "logged_model.delete_tag", "logged_model", model_id) as s:
            self._model_row(s.session, model_id)
            tag = s.session.get(LoggedModelTagRow, (model_id, key))
            if tag is None:
                raise NotFound(
                    f"logged model {model_id!r} has no tag {key!r}",
                    details={"model_id": model_id, "key": key},
                )
            s.session.delete(tag)

    def log_model_params(self, model_id: str, params: dict[str, str]) -> None:
        params = _keys("param", params)
        with audited(self.db, "logged_model.log_params", "logged_model", model_id) as s:
            self._model_row(s.session, model_id)
            existing = {
                p.key: p.value
                for p in s.session.scalars(
                    sa.select(LoggedModelParamRow).where(
                        LoggedModelParamRow.model_id == model_id,
                        LoggedModelParamRow.key.in_(list(params)),
                    )
                )
            }
            for key, value in params.items():
                if key in existing and existing[key] != value:
                    raise Conflict(
                        f"param {key!r} of logged model {model_id!r} is {existing[key]!r}; "
                        f"it cannot be changed to {value!r}",
                        details={"key": key, "old": existing[key], "new": value},
                    )
            s.session.add_all(
                LoggedModelParamRow(model_id=model_id, key=k, value=v)
                for k, v in params.items()
                if k not in existing
            )

    def log_model_metrics(self, metrics: Sequence[ModelMetric]) -> None:
        if not metrics:
            return
        ids = sorted({m.model_id for m in metrics})
        for m in metrics:
            _check_key("metric", m.key)
        details = {"models": ids, "points": len(metrics)}
        with audited(self.db, "logged_model.log_metrics", "logged_model", ids[0], details) as s:
            for model_id in ids:
                self._model_row(s.session, model_id)
            s.session.add_all(
                LoggedModelMetricRow(
                    model_id=m.model_id,
                    key=m.key,
                    value=0.0 if math.isnan(m.value) else m.value,
                    is_nan=math.isnan(m.value),
                    timestamp=m.timestamp,
                    step=m.step,
                    run_id=m.run_id or None,
                    dataset_name=m.dataset_name or None,
                    dataset_digest=m.dataset_digest or None,
                )
                for m in metrics
            )

    # -- runs <-> models ---------------------------------------------------------------------
    def log_run_models(
        self,
        run_id: str,
        direction: ModelDirection | str,
        models: Sequence[tuple[str, int]],
    ) -> None:
        way = parse_enum(ModelDirection, str(direction).lower(), "direction")
        ids = [m for m, _ in models]
        with audited(self.db, f"run.log_model_{way.value}s", "run", run_id, {"models": ids}) as s:
            self._run_row(s.session, run_id)
            for model_id in ids:
                self._model_row(s.session, model_id)
            if models:
                self.db.upsert(
                    s.session,
                    RunModelLinkRow.__table__,
                    [
                        {"run_id": run_id, "model_id": m, "direction": way.value, "step": step}
                        for m, step in models
                    ],
                    ["run_id", "model_id", "direction"],
                    ["step"],
                )

    def list_run_models(self, run_ids: Sequence[str]) -> dict[str, RunModels]:
        out: dict[str, RunModels] = {}
        if not run_ids:
            return out
        with self.db.read() as session:
            for link in session.scalars(
                sa.select(RunModelLinkRow)
                .where(RunModelLinkRow.run_id.in_([str(r) for r in run_ids]))
                .order_by(RunModelLinkRow.model_id)
            ):
                entry = out.setdefault(link.run_id, RunModels())
                if link.direction == ModelDirection.INPUT.value:
                    entry.inputs.append(link.model_id)
                else:
                    entry.outputs.append((link.model_id, link.step))
        return out
