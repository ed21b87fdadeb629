"""Apply-time checks: everything a query would trip on, found when definitions are applied.

Entities exist with join keys of a joinable type; each view's source exists with the keys,
the timestamps and the features, in types that cast; on-demand views read known features and
their expressions bind; feature services name what the definitions define.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strata.core.errors import InvalidInput, NotFound
from strata.features import ondemand, sources
from strata.features.models import Definitions, Entity, FeatureView, ValueType, parse_feature_ref
from strata.features.offline import OFFSET_RE, string_offsets_sql

if TYPE_CHECKING:
    from strata.features.embedded import EmbeddedFeatures

_KEY_TYPES = (ValueType.INT64, ValueType.INT32, ValueType.STRING)


def family(arrow_type: str) -> str:
    """The kind of an Arrow type name as the data layer records it (``int64``,
    ``timestamp[us, tz=UTC]``...)."""
    t = arrow_type.lower()
    if t.startswith(("int", "uint")):
        return "int"
    if t.startswith(("float", "double", "halffloat", "decimal")):
        return "float"
    if t in ("string", "large_string", "utf8", "large_utf8"):
        return "string"
    if t.startswith("bool"):
        return "bool"
    if t.startswith("timestamp"):
        return "timestamptz" if "tz=" in t else "timestamp"
    if t.startswith("date"):
        return "timestamp"
    return t


_ACCEPTS = {
    ValueType.INT64: {"int"},
    ValueType.INT32: {"int"},
    ValueType.FLOAT64: {"int", "float"},
    ValueType.FLOAT32: {"int", "float"},
    ValueType.STRING: {"string"},
    ValueType.BOOL: {"bool"},
    ValueType.TIMESTAMP: {"timestamptz", "timestamp", "string"},
}


def check_definitions(svc: EmbeddedFeatures, defs: Definitions) -> None:
    """Everything a query would trip on, found now: entities exist, sources exist with
    the keys, the timestamps and the features, in types that cast."""
    entities = {e.name: e for e in defs.entities}
    for entity in defs.entities:
        for key in entity.join_keys:
            if entity.key_type(key) not in _KEY_TYPES:
                raise InvalidInput(
                    f"Entity {entity.name!r}: join key {key!r} has type "
                    f"{entity.key_type(key)}; join keys are int64, int32 or string",
                    details={"field": f"entities.{entity.name}.value_types"},
                )
    views = {v.name: v for v in defs.feature_views}
    for view in defs.feature_views:
        _check_view(svc, view, entities)
    on_demand = {v.name: v for v in defs.on_demand_views}
    clash = sorted(set(views) & set(on_demand))
    if clash:
        raise InvalidInput(
            f"{clash[0]!r} names both a feature view and an on-demand view; feature "
            "references VIEW:FEATURE need one meaning",
            details={"field": "on_demand_views"},
        )

    def lookup(kind: str, name: str) -> Any:
        found = (views if kind == "feature_view" else on_demand).get(name)
        if found is None:
            raise NotFound(f"No {kind.replace('_', ' ')} named {name!r}")
        return found

    for odv in defs.on_demand_views:
        ondemand.check(odv, lookup, svc.trusted_modules)
    for service in defs.feature_services:
        for ref in service.features:
            view_name, feature = parse_feature_ref(ref)
            named = views.get(view_name) or on_demand.get(view_name)
            if named is None or (
                feature != "*" and feature not in {f.name for f in named.features}
            ):
                raise InvalidInput(
                    f"Feature service {service.name!r} names {ref!r}, which the "
                    "definitions do not define",
                    details={"field": f"feature_services.{service.name}.features"},
                )


def _check_view(svc: EmbeddedFeatures, view: FeatureView, entities: dict[str, Entity]) -> None:
    where = f"Feature view {view.name!r}"
    unknown = [e for e in view.entities if e not in entities]
    if unknown:
        raise InvalidInput(
            f"{where} names entity {unknown[0]!r}, which the definitions do not define "
            f"(defined: {', '.join(entities) or 'none'})",
            details={"field": f"feature_views.{view.name}.entities"},
        )
    try:
        source = sources.pin(svc.data, view)
        types = source.column_types(svc.data)
    except NotFound as exc:
        raise InvalidInput(
            f"{where}: source {view.source!r} does not exist ({exc.message})",
            details={"field": f"feature_views.{view.name}.source"},
        ) from None
    except InvalidInput as exc:  # the SQL of a SQL source
        raise InvalidInput(
            f"{where}: source SQL: {exc.message}",
            details={"field": f"feature_views.{view.name}.source.sql"},
        ) from None

    def need(column: str, what: str, field: str) -> str:
        if column not in types:
            raise InvalidInput(
                f"{where}: {what} {column!r} is not a column of {source.label} "
                f"(columns: {', '.join(types)})",
                details={"field": f"feature_views.{view.name}.{field}"},
            )
        return family(types[column])

    for name in view.entities:
        for key in entities[name].join_keys:
            need(key, "join key", "entities")
    for col, field in (
        (view.timestamp, "timestamp"),
        (view.created_timestamp, "created_timestamp"),
    ):
        if col is None:
            continue
        kind = need(col, f"{field} column", field)
        if kind not in ("timestamptz", "timestamp", "string"):
            raise InvalidInput(
                f"{where}: {field} column {col!r} is {types[col]}, not a timestamp",
                details={"field": f"feature_views.{view.name}.{field}"},
            )
        if field == "timestamp" and kind == "timestamp":
            raise InvalidInput(
                f"{where}: timestamp column {col!r} holds naive timestamps "
                f"({types[col]}); store them timezone-aware (UTC)",
                details={"field": f"feature_views.{view.name}.timestamp"},
            )
        if field == "timestamp" and kind == "string":
            _check_offsets(svc, source, col, where)
    for feature in view.features:
        kind = need(feature.name, "feature", "features")
        if kind not in _ACCEPTS[feature.dtype]:
            raise InvalidInput(
                f"{where}: feature {feature.name!r} is declared {feature.dtype} but the "
                f"column is {types[feature.name]}",
                details={"field": f"feature_views.{view.name}.features"},
            )


def _check_offsets(
    svc: EmbeddedFeatures, source: sources.PinnedSource, column: str, where: str
) -> None:
    con = svc._connect()
    try:
        source.register(svc.data, con, "src")
        row = con.execute(string_offsets_sql("src", column)).fetchall()[0]
    finally:
        con.close()
    if row and row[0]:
        raise InvalidInput(
            f"{where}: {row[0]} values of timestamp column {column!r} carry no UTC offset "
            f"(expected e.g. 2013-01-01T05:00:00Z, matching {OFFSET_RE})",
            details={"field": column},
        )
