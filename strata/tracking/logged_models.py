"""MLflow 3 LoggedModels: models logged by a run (or on their own), with params, tags,
metrics and an artifact root of their own.

MLflow 3's ``log_model`` (and so ``mlflow.autolog()``) creates a LoggedModel, uploads the
model files below its artifact location ``{experiment artifact_location}/models/{model_id}/
artifacts`` and links it to the run as an *output*. A run can also take models as *inputs*.
The store path of a proxied artifact is its URI minus ``mlflow-artifacts:/``, the same rule
as for runs, so both share the artifact store. Times are epoch ms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, BinaryIO

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.orm import Mapped, Session, mapped_column

from strata.backends.artifacts import ArtifactInfo
from strata.backends.context import Backends
from strata.backends.db import Base
from strata.core.clock import now_ms
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.core.ids import new_id
from strata.core.paths import safe_relpath
from strata.core.principal import current
from strata.governance import audit
from strata.governance.audit import audited
from strata.tracking.models import MAX_KEY_LENGTH, LifecycleStage, Metric
from strata.tracking.service import TrackingService

PROXY_SCHEME = "mlflow-artifacts:"
MAX_MODEL_NAME_LENGTH = 500


# -- tables --------------------------------------------------------------------------------
class LoggedModelRow(Base):
    __tablename__ = "trk_logged_models"
    __table_args__ = (sa.Index("ix_trk_logged_models_exp_created", "experiment_id", "created"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_experiments.id"))
    name: Mapped[str] = mapped_column(sa.String(MAX_MODEL_NAME_LENGTH))
    source_run_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    model_type: Mapped[str | None] = mapped_column(sa.String(500))
    status: Mapped[str] = mapped_column(sa.String(16))
    status_message: Mapped[str | None] = mapped_column(sa.Text)
    artifact_location: Mapped[str] = mapped_column(sa.Text)
    creator: Mapped[str] = mapped_column(sa.String(256))
    lifecycle_stage: Mapped[str] = mapped_column(sa.String(16))
    created: Mapped[int] = mapped_column(sa.BigInteger)
    updated: Mapped[int] = mapped_column(sa.BigInteger)


class LoggedModelParamRow(Base):
    __tablename__ = "trk_logged_model_params"

    model_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_logged_models.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class LoggedModelTagRow(Base):
    __tablename__ = "trk_logged_model_tags"

    model_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_logged_models.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class LoggedModelMetricRow(Base):
    __tablename__ = "trk_logged_model_metrics"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_logged_models.id"), index=True)
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH))
    value: Mapped[float] = mapped_column(sa.Float(precision=53))
    is_nan: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    timestamp: Mapped[int] = mapped_column(sa.BigInteger)
    step: Mapped[int] = mapped_column(sa.BigInteger)
    run_id: Mapped[str | None] = mapped_column(sa.String(32))
    dataset_name: Mapped[str | None] = mapped_column(sa.String(500))
    dataset_digest: Mapped[str | None] = mapped_column(sa.String(128))


class RunModelLinkRow(Base):
    """A model a run used (``direction='input'``) or produced (``'output'``, with a step)."""

    __tablename__ = "trk_run_model_links"

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_runs.id"), primary_key=True)
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("trk_logged_models.id"), primary_key=True)
    direction: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    step: Mapped[int] = mapped_column(sa.BigInteger, default=0)


# -- domain objects ------------------------------------------------------------------------
class LoggedModelStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    UPLOAD_FAILED = "UPLOAD_FAILED"


class ModelMetric(BaseModel):
    key: str
    value: float
    timestamp: int
    step: int
    run_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class LoggedModel(BaseModel):
    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    status: LoggedModelStatus
    status_message: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    creator: str
    lifecycle_stage: LifecycleStage
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    metrics: list[ModelMetric] = Field(default_factory=list)


class RunModels(BaseModel):
    """A run's model inputs (ids) and outputs (id, step)."""

    inputs: list[str] = Field(default_factory=list)
    outputs: list[tuple[str, int]] = Field(default_factory=list)


def proxied_store_path(uri: str) -> str | None:
    """The artifact-store path of an ``mlflow-artifacts:`` URI; None for other schemes."""
    if not uri.startswith(PROXY_SCHEME):
        return None
    rest = uri[len(PROXY_SCHEME) :]
    if rest.startswith("//"):  # mlflow-artifacts://host/path: the host is not ours to check
        rest = "/" + rest[2:].partition("/")[2]
    return rest.strip("/")


def _check_key(kind: str, key: object) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"invalid {kind} key {key!r}: a non-empty string of at most {MAX_KEY_LENGTH} "
            "characters is expected",
            details={"field": f"{kind}.key"},
        )
    return key


# -- filter grammar (a small subset of MLflow's for logged models) ---------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")|(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
    r"|(?P<op><=|>=|!=|=|<|>)|(?P<ident>`[^`]+`|[A-Za-z_][\w.]*(?:\.`[^`]+`)?))"
)
_ATTRS = {
    "name": LoggedModelRow.name,
    "model_id": LoggedModelRow.id,
    "model_type": LoggedModelRow.model_type,
    "status": LoggedModelRow.status,
    "source_run_id": LoggedModelRow.source_run_id,
    "creation_timestamp": LoggedModelRow.created,
    "creation_time": LoggedModelRow.created,
    "last_updated_timestamp": LoggedModelRow.updated,
}


def _compare(col: Any, op: str, value: object) -> sa.ColumnElement[bool]:
    ops: dict[str, Any] = {
        "=": col.__eq__,
        "!=": col.__ne__,
        "<": col.__lt__,
        ">": col.__gt__,
        "<=": col.__le__,
        ">=": col.__ge__,
        "LIKE": col.like,
        "ILIKE": col.ilike,
    }
    result: sa.ColumnElement[bool] = ops[op](value)
    return result


def _filter_error(text: str, pos: int, expected: str) -> InvalidInput:
    return InvalidInput(
        f"invalid logged-model filter {text!r} at position {pos}: expected {expected}",
        details={"position": pos},
    )


def _next_token(text: str, pos: int) -> tuple[str, str, int, int]:
    """(kind, token, start, end) of the token at ``pos``; kind '' at the end of the text."""
    m = _TOKEN.match(text, pos)
    if not m or not m.lastgroup:
        rest = text[pos:]
        if not rest.strip():
            return "", "", len(text), len(text)
        return "bad", "", pos + len(rest) - len(rest.lstrip()), pos
    kind, tok = m.lastgroup, m.group(m.lastgroup)
    if kind == "ident" and tok.upper() in ("LIKE", "ILIKE"):
        kind, tok = "op", tok.upper()
    return kind, tok, m.start(m.lastgroup), m.end()


def _clause(ident: str, op: str, value: object, text: str, at: int) -> sa.ColumnElement[bool]:
    entity, _, key = ident.partition(".")
    key = key.strip("`")
    if entity in ("params", "param", "tags", "tag") and key:
        table: Any = LoggedModelParamRow if entity.startswith("param") else LoggedModelTagRow
        return sa.exists().where(
            table.model_id == LoggedModelRow.id,
            table.key == key,
            _compare(table.value, op, str(value)),
        )
    if entity in ("metrics", "metric") and key:
        if not isinstance(value, float) or "LIKE" in op:
            raise _filter_error(text, at, f"a numeric comparison for metrics.{key}")
        return sa.exists().where(
            LoggedModelMetricRow.model_id == LoggedModelRow.id,
            LoggedModelMetricRow.key == key,
            _compare(LoggedModelMetricRow.value, op, value),
        )
    attr = ident.removeprefix("attributes.")
    if attr not in _ATTRS:
        raise _filter_error(
            text, at, f"one of {sorted(_ATTRS)}, params.<k>, tags.<k>, metrics.<k>; got {ident!r}"
        )
    if attr == "status" and isinstance(value, str):
        value = value.removeprefix("LOGGED_MODEL_")
    return _compare(_ATTRS[attr], op, value)


def compile_model_filter(text: str) -> list[sa.ColumnElement[bool]]:
    """``name = 'x' AND params.lr = '0.1' AND metrics.acc > 0.9 AND tags.k LIKE 'v%'`` to SQL
    conditions. Metric clauses match when any logged point satisfies them. InvalidInput names
    the offending token and its position."""
    pos, conds = 0, []
    while True:
        kind, ident, at, pos = _next_token(text, pos)
        if kind != "ident":
            raise _filter_error(text, at, "an attribute, params.<k>, tags.<k> or metrics.<k>")
        kind, op, op_at, pos = _next_token(text, pos)
        if kind != "op":
            raise _filter_error(text, op_at, "a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE)")
        kind, raw, val_at, pos = _next_token(text, pos)
        if kind not in ("str", "num"):
            raise _filter_error(text, val_at, "a quoted string or a number")
        value: object = raw[1:-1] if kind == "str" else float(raw)
        conds.append(_clause(ident, op, value, text, at))
        kind, word, and_at, pos = _next_token(text, pos)
        if kind == "":
            return conds
        if kind != "ident" or word.upper() != "AND":
            raise _filter_error(text, and_at, "AND or the end of the filter")


# -- service -------------------------------------------------------------------------------
class LoggedModels:
    """LoggedModels on the metadata DB and artifact store; every change is audited."""

    def __init__(self, backends: Backends, tracking: TrackingService) -> None:
        self._backends = backends
        self._tracking = tracking

    @property
    def _db(self) -> Any:
        return self._backends.db

    def create(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        model_type: str | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> LoggedModel:
        """A PENDING model; its artifact location is below the experiment's. NotFound for an
        unknown experiment or source run, InvalidInput for a deleted experiment."""
        experiment = self._tracking.get_experiment(experiment_id)
        if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidInput(
                f"experiment {experiment_id!r} is deleted: restore it before logging models to it"
            )
        if source_run_id:
            self._tracking.get_run(source_run_id)
        if name is not None and (not name or len(name) > MAX_MODEL_NAME_LENGTH or "/" in name):
            raise InvalidInput(
                f"invalid model name {name!r}: 1 to {MAX_MODEL_NAME_LENGTH} characters, no '/'",
                details={"field": "name"},
            )
        for key in params or {}:
            _check_key("param", key)
        for key in tags or {}:
            _check_key("tag", key)
        model_id = f"m-{new_id()}"
        ts = now_ms()
        location = f"{experiment.artifact_location.rstrip('/')}/models/{model_id}/artifacts"
        with audited(self._db, "logged_model.create", "logged_model", model_id) as s:
            s.session.add(
                LoggedModelRow(
                    id=model_id,
                    experiment_id=experiment_id,
                    name=name or f"model-{model_id[-8:]}",
                    source_run_id=source_run_id or None,
                    model_type=model_type or None,
                    status=LoggedModelStatus.PENDING.value,
                    artifact_location=location,
                    creator=current().principal.name,
                    lifecycle_stage=LifecycleStage.ACTIVE.value,
                    created=ts,
                    updated=ts,
                )
            )
            s.session.flush()
            s.session.add_all(
                LoggedModelParamRow(model_id=model_id, key=k, value=v)
                for k, v in (params or {}).items()
            )
            s.session.add_all(
                LoggedModelTagRow(model_id=model_id, key=k, value=v)
                for k, v in (tags or {}).items()
            )
        return self.get(model_id)

    def _row(self, session: Session, model_id: str, allow_deleted: bool = False) -> LoggedModelRow:
        row = session.get(LoggedModelRow, model_id)
        if row is None or (not allow_deleted and row.lifecycle_stage != LifecycleStage.ACTIVE):
            raise NotFound(f"logged model {model_id!r} does not exist", details={"id": model_id})
        return row

    def _load(self, session: Session, rows: Sequence[LoggedModelRow]) -> list[LoggedModel]:
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

    def get(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        """NotFound naming the id if unknown (or deleted, unless ``allow_deleted``)."""
        with self._db.read() as session:
            return self._load(session, [self._row(session, model_id, allow_deleted)])[0]

    def finalize(
        self, model_id: str, status: LoggedModelStatus, message: str | None = None
    ) -> LoggedModel:
        with audited(
            self._db,
            "logged_model.finalize",
            "logged_model",
            model_id,
            {"status": status.value},
        ) as s:
            row = self._row(s.session, model_id)
            row.status, row.status_message, row.updated = status.value, message, now_ms()
        return self.get(model_id)

    def delete(self, model_id: str) -> None:
        with audited(self._db, "logged_model.delete", "logged_model", model_id) as s:
            row = self._row(s.session, model_id)
            row.lifecycle_stage, row.updated = LifecycleStage.DELETED.value, now_ms()

    def set_tags(self, model_id: str, tags: dict[str, str]) -> None:
        for key in tags:
            _check_key("tag", key)
        with audited(self._db, "logged_model.set_tags", "logged_model", model_id) as s:
            self._row(s.session, model_id).updated = now_ms()
            self._db.upsert(
                s.session,
                LoggedModelTagRow.__table__,
                [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()],
                ["model_id", "key"],
                ["value"],
            )

    def delete_tag(self, model_id: str, key: str) -> None:
        with audited(self._db, "logged_model.delete_tag", "logged_model", model_id) as s:
            self._row(s.session, model_id)
            tag = s.session.get(LoggedModelTagRow, (model_id, key))
            if tag is None:
                raise NotFound(
                    f"logged model {model_id!r} has no tag {key!r}", details={"key": key}
                )
            s.session.delete(tag)

    def log_params(self, model_id: str, params: dict[str, str]) -> None:
        """Params are immutable: the same value again is fine, another one is a Conflict."""
        for key in params:
            _check_key("param", key)
        with audited(self._db, "logged_model.log_params", "logged_model", model_id) as s:
            self._row(s.session, model_id)
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

    def log_metrics(
        self, run_id: str | None, metrics: Iterable[tuple[str, Metric, str, str]]
    ) -> None:
        """Record ``(model_id, metric, dataset_name, dataset_digest)`` points on their models
        (NotFound for an unknown model; nothing is written then)."""
        items = list(metrics)
        if not items:
            return
        with self._db.write() as session:
            for model_id in {m[0] for m in items}:
                self._row(session, model_id)
            session.add_all(
                LoggedModelMetricRow(
                    model_id=model_id,
                    key=m.key,
                    value=0.0 if math.isnan(m.value) else m.value,
                    is_nan=math.isnan(m.value),
                    timestamp=m.timestamp,
                    step=m.step,
                    run_id=run_id,
                    dataset_name=ds_name or None,
                    dataset_digest=ds_digest or None,
                )
                for model_id, m, ds_name, ds_digest in items
            )

    def search(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str | None = None,
        order_by: Sequence[tuple[str, bool]] = (),
        max_results: int = 100,
        page_token: str | None = None,
    ) -> tuple[list[LoggedModel], str | None]:
        """Active models of the experiments, newest first unless ``order_by`` (attribute name,
        ascending) says otherwise; the token is the offset of the next page."""
        if not 1 <= max_results <= 1000:
            raise InvalidInput(f"max_results must be between 1 and 1000, got {max_results}")
        try:
            offset = int(page_token) if page_token else 0
        except ValueError:
            raise InvalidInput(f"invalid page_token {page_token!r}") from None
        stmt = sa.select(LoggedModelRow).where(
            LoggedModelRow.experiment_id.in_(list(experiment_ids)),
            LoggedModelRow.lifecycle_stage == LifecycleStage.ACTIVE.value,
        )
        if filter and filter.strip():
            stmt = stmt.where(*compile_model_filter(filter))
        order: list[Any] = []
        for field, ascending in order_by:
            col = _ATTRS.get(field.removeprefix("attributes."))
            if col is None:
                raise InvalidInput(
                    f"cannot order logged models by {field!r}: use one of {sorted(_ATTRS)}"
                )
            order.append(col.asc() if ascending else col.desc())
        stmt = stmt.order_by(*order, LoggedModelRow.created.desc(), LoggedModelRow.id.desc())
        with self._db.read() as session:
            rows = list(session.scalars(stmt.offset(offset).limit(max_results + 1)))
            more = len(rows) > max_results
            models = self._load(session, rows[:max_results])
        return models, str(offset + max_results) if more else None

    # -- runs <-> models -------------------------------------------------------------------
    def link(self, run_id: str, direction: str, models: Sequence[tuple[str, int]]) -> None:
        """Record models a run used (``input``) or produced (``output``); idempotent."""
        self._tracking.get_run(run_id)
        with audited(
            self._db,
            f"run.log_model_{direction}s",
            "run",
            run_id,
            {"models": [m for m, _ in models]},
        ) as s:
            for model_id, _ in models:
                self._row(s.session, model_id)
            self._db.upsert(
                s.session,
                RunModelLinkRow.__table__,
                [
                    {"run_id": run_id, "model_id": m, "direction": direction, "step": step}
                    for m, step in models
                ],
                ["run_id", "model_id", "direction"],
                ["step"],
            )

    def run_models(self, run_ids: Sequence[str]) -> dict[str, RunModels]:
        """Model inputs and outputs of each run (runs without links are absent)."""
        out: dict[str, RunModels] = {}
        if not run_ids:
            return out
        with self._db.read() as session:
            for link in session.scalars(
                sa.select(RunModelLinkRow)
                .where(RunModelLinkRow.run_id.in_(list(run_ids)))
                .order_by(RunModelLinkRow.model_id)
            ):
                entry = out.setdefault(link.run_id, RunModels())
                if link.direction == "input":
                    entry.inputs.append(link.model_id)
                else:
                    entry.outputs.append((link.model_id, link.step))
        return out

    # -- artifacts -------------------------------------------------------------------------
    def put_artifact(self, model_id: str, path: str, fileobj: BinaryIO) -> ArtifactInfo:
        """Stream one file below the model's artifact root. The model must exist and its
        artifact location be proxied (``mlflow-artifacts:``); the upload is audited."""
        rel = safe_relpath(path)
        model = self.get(model_id)
        root = proxied_store_path(model.artifact_location)
        if root is None:
            raise InvalidInput(
                f"logged model {model_id!r} stores artifacts at {model.artifact_location!r}, "
                "not behind this server's artifact proxy"
            )
        info = self._backends.artifacts.put_stream(f"{root}/{rel}", fileobj)
        with self._db.write() as session:
            audit.append(
                self._db,
                session,
                action="logged_model.log_artifact",
                resource_type="logged_model",
                resource_id=model_id,
                details={"path": rel, "size": info.size, "sha256": info.sha256},
            )
        return info
