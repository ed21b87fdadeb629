"""Logged-model search: MLflow's filter grammar (:mod:`strata.tracking.search`) over a
model's attributes, params, tags and metrics, its ``datasets`` limit, and its order —
attributes or each model's latest point of a metric — compiled to SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from strata.core.errors import InvalidInput
from strata.tracking.models import DatasetRef, ModelOrder
from strata.tracking.search import (
    _ENTITY,
    _check_clause,
    _compare,
    _kv_condition,
    _metric_condition,
    _Parser,
    check_order_count,
)
from strata.tracking.tables import (
    LoggedModelMetricRow,
    LoggedModelParamRow,
    LoggedModelRow,
    LoggedModelTagRow,
)

_MODEL_ENTITIES = {k: v for k, v in _ENTITY.items() if v != "datasets" and k != "run"}
_MODEL_ATTRS: dict[str, Any] = {
    "name": LoggedModelRow.name,
    "model_id": LoggedModelRow.id,
    "model_type": LoggedModelRow.model_type,
    "status": LoggedModelRow.status,
    "source_run_id": LoggedModelRow.source_run_id,
    "creation_timestamp": LoggedModelRow.created,
    "creation_time": LoggedModelRow.created,
    "last_updated_timestamp": LoggedModelRow.updated,
}
_MODEL_NUMERIC = {"creation_timestamp", "creation_time", "last_updated_timestamp"}


def _model_status(value: Any) -> Any:
    """``LOGGED_MODEL_READY`` (MLflow's proto name) or ``READY``, as stored."""
    if isinstance(value, list):
        return [_model_status(v) for v in value]
    return value.removeprefix("LOGGED_MODEL_") if isinstance(value, str) else value


def _on_datasets(datasets: Sequence[DatasetRef]) -> list[ColumnElement[bool]]:
    """The condition on a model metric row that it was logged against one of ``datasets``
    (none: any row)."""
    m = LoggedModelMetricRow
    if not datasets:
        return []
    each = [
        sa.and_(m.dataset_name == d.name, *([m.dataset_digest == d.digest] if d.digest else []))
        for d in datasets
    ]
    return [sa.or_(*each)]


def logged_model_conditions(
    text: str | None, datasets: Sequence[DatasetRef] = ()
) -> list[ColumnElement[bool]]:
    """Filter LoggedModels with the run grammar: ``name = 'x' AND params.lr = '0.1' AND
    metrics.acc > 0.9 AND tags.k LIKE 'v%' AND status = 'READY'``. A metric clause matches
    when any point logged on the model satisfies it — with ``datasets``, any point logged
    against one of them; with ``datasets`` and no metric clause, a model matches when it
    has a point logged against one of them (MLflow's rules)."""
    on_datasets = _on_datasets(datasets)
    out: list[ColumnElement[bool]] = []
    text = text if text and text.strip() else ""
    clauses = _Parser(text, _MODEL_ENTITIES, set(_MODEL_ATTRS)).parse() if text else []
    if on_datasets and not any(c.entity == "metrics" for c in clauses):
        m = LoggedModelMetricRow
        out.append(LoggedModelRow.id.in_(sa.select(m.model_id).where(*on_datasets)))
    for c in clauses:
        _check_clause(text, c, _MODEL_ATTRS, _MODEL_NUMERIC, "logged model")
        if c.entity == "attributes":
            value = c.value
            if c.key in _MODEL_NUMERIC and value is not None:
                value = int(value)
            elif c.key == "status":
                value = _model_status(value)
            out.append(_compare(_MODEL_ATTRS[c.key], c.op, value))
        elif c.entity == "metrics":
            metrics = LoggedModelMetricRow
            out.append(
                _metric_condition(LoggedModelRow.id, metrics.model_id, metrics, c, on_datasets)
            )
        else:
            table: Any = LoggedModelParamRow if c.entity == "params" else LoggedModelTagRow
            out.append(_kv_condition(LoggedModelRow.id, table.model_id, table, c))
    return out


def order_logged_models(stmt: Any, items: Sequence[ModelOrder]) -> Any:
    """``stmt`` (a select of LoggedModelRow) ordered by ``items`` as MLflow orders them:
    each attribute, or ``metrics.<key>`` by each model's latest point of it (by timestamp,
    then step, then run id; on ``dataset_name``/``dataset_digest`` only, when given; outer
    joined), models without a value last; then newest first unless creation time is a key,
    then model id ascending unless it is one."""
    check_order_count(items)
    order: list[Any] = []
    cols = []
    for n, item in enumerate(items):
        field = item.field.strip()
        if field.startswith("metrics."):
            value = _latest_model_metric(field.removeprefix("metrics."), item, n)
            stmt = stmt.outerjoin(value, value.c.model_id == LoggedModelRow.id)
            column: Any = value.c.value
        else:
            name = field.removeprefix("attributes.")
            column = _MODEL_ATTRS.get(name)
            if column is None:
                raise InvalidInput(
                    f"cannot order logged models by {field!r}: use metrics.<key> or one of "
                    f"{sorted(_MODEL_ATTRS)}",
                    details={"field": "order_by"},
                )
            cols.append(column)
        order += [
            sa.case((column.is_(None), 1), else_=0).asc(),  # no value: last, either way
            column.asc() if item.ascending else column.desc(),
        ]
    if not any(c is LoggedModelRow.created for c in cols):
        order.append(LoggedModelRow.created.desc())
    if not any(c is LoggedModelRow.id for c in cols):
        order.append(LoggedModelRow.id.asc())
    return stmt.order_by(*order)


def _latest_model_metric(key: str, item: ModelOrder, n: int) -> Any:
    """Each model's latest point of metric ``key`` (``model_id``, ``value``; NaN as NULL)."""
    m = LoggedModelMetricRow
    rank = sa.func.row_number().over(
        partition_by=m.model_id,
        order_by=(m.timestamp.desc(), m.step.desc(), m.run_id.asc(), m.id.desc()),
    )
    where = [m.key == key]
    if item.dataset_name:
        where.append(m.dataset_name == item.dataset_name)
    if item.dataset_digest:
        where.append(m.dataset_digest == item.dataset_digest)
    value = sa.case((m.is_nan.is_(True), None), else_=m.value)
    ranked = (
        sa.select(m.model_id.label("model_id"), value.label("value"), rank.label("rank"))
        .where(*where)
        .subquery(f"metric_ranked_{n}")
    )
    return (
        sa.select(ranked.c.model_id, ranked.c.value)
        .where(ranked.c.rank == 1)
        .subquery(f"metric_latest_{n}")
    )
