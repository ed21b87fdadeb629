"""The embedded feature store: definitions in the metadata DB, point-in-time joins in DuckDB
over the data layer's verified Parquet parts, values in the online store."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from strata.backends.context import Backends
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.core.principal import current
from strata.data.service import DataService
from strata.features import online, registry
from strata.features.frames import as_arrow
from strata.features.models import (
    Definitions,
    Entity,
    FeatureService,
    FeatureView,
    MaterializeResult,
    OnlineResponse,
    Plan,
    Registered,
    ValueType,
    parse_feature_ref,
)
from strata.features.offline import (
    OFFSET_RE,
    ViewJoin,
    historical_sql,
    q,
    string_offsets_sql,
    timestamp_expr,
)
from strata.features.service import (
    DefinitionsLike,
    EntitySource,
    FeaturesService,
    MaterializeProgress,
)
from strata.governance.audit import audited

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from strata.backends.online.base import OnlineStore
    from strata.data.models import IngestResult

CACHE_SECONDS = 2.0
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


class EmbeddedFeatures(FeaturesService):
    """:class:`FeaturesService` in this process."""

    def __init__(self, backends: Backends, data: DataService) -> None:
        self.backends = backends
        self.db = backends.db
        self.data = data
        self._view_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    @cached_property
    def online_store(self) -> OnlineStore:
        from strata.backends.online.base import open_online_store

        settings = self.backends.settings
        return open_online_store(settings.online_uri, str(settings.home))

    def close(self) -> None:
        if "online_store" in self.__dict__:
            self.online_store.close()

    # -- definitions ---------------------------------------------------------------------------
    def plan(self, definitions: DefinitionsLike) -> Plan:
        defs = registry.load_definitions(definitions)
        with self.db.read() as s:
            return registry.plan(s, defs)

    def apply(self, definitions: DefinitionsLike, *, force: bool = False) -> Plan:
        defs = registry.load_definitions(definitions)
        self._check(defs)
        with audited(self.db, "features.apply", "feature_repo", "default") as scope:
            result = registry.plan(scope.session, defs)
            breaking = result.breaking
            if breaking and not force:
                names = ", ".join(f"{c.kind} {c.name} ({c.action})" for c in breaking)
                raise Conflict(
                    f"Breaking changes: {names}. Readers of these features would break; "
                    "apply with force=True (CLI: --force) if that is intended",
                    details={"breaking": [c.model_dump() for c in breaking]},
                )
            registry.write(scope.session, defs, result, current().principal.name)
            scope.details = {
                c.action: sorted(
                    f"{x.kind}:{x.name}" for x in result.changes if x.action == c.action
                )
                for c in result.changes
                if c.action != "unchanged"
            }
        self._cache.clear()
        return result.model_copy(update={"applied": True})

    def _check(self, defs: Definitions) -> None:
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
            self._check_view(view, entities)
        for service in defs.feature_services:
            for ref in service.features:
                view_name, feature = parse_feature_ref(ref)
                named = views.get(view_name)
                if named is None or (
                    feature != "*" and feature not in {f.name for f in named.features}
                ):
                    raise InvalidInput(
                        f"Feature service {service.name!r} names {ref!r}, which the "
                        "definitions do not define",
                        details={"field": f"feature_services.{service.name}.features"},
                    )

    def _check_view(self, view: FeatureView, entities: dict[str, Entity]) -> None:
        where = f"Feature view {view.name!r}"
        unknown = [e for e in view.entities if e not in entities]
        if unknown:
            raise InvalidInput(
                f"{where} names entity {unknown[0]!r}, which the definitions do not define "
                f"(defined: {', '.join(entities) or 'none'})",
                details={"field": f"feature_views.{view.name}.entities"},
            )
        try:
            version = self.data.get_version(view.source)
        except NotFound as exc:
            raise InvalidInput(
                f"{where}: source {view.source!r} does not exist ({exc.message})",
                details={"field": f"feature_views.{view.name}.source"},
            ) from None
        types = {c.name: c.type for c in version.columns}

        def need(column: str, what: str, field: str) -> str:
            if column not in types:
                raise InvalidInput(
                    f"{where}: {what} {column!r} is not a column of {version.ref} "
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
                self._check_offsets(version.ref, col, where)
        for feature in view.features:
            kind = need(feature.name, "feature", "features")
            if kind not in _ACCEPTS[feature.dtype]:
                raise InvalidInput(
                    f"{where}: feature {feature.name!r} is declared {feature.dtype} but the "
                    f"column is {types[feature.name]}",
                    details={"field": f"feature_views.{view.name}.features"},
                )

    def _check_offsets(self, ref: str, column: str, where: str) -> None:
        con = self._connect()
        try:
            self.data.duckdb(ref, con=con, view="src")
            row = con.execute(string_offsets_sql("src", column)).fetchall()[0]
        finally:
            con.close()
        if row and row[0]:
            raise InvalidInput(
                f"{where}: {row[0]} values of timestamp column {column!r} carry no UTC offset "
                f"(expected e.g. 2013-01-01T05:00:00Z, matching {OFFSET_RE})",
                details={"field": column},
            )

    def _list(self, kind: str) -> list[Registered]:
        with self.db.read() as s:
            return [registry.to_registered(r) for r in registry.registered(s, kind).values()]

    def list_entities(self) -> list[Registered]:
        return self._list("entity")

    def list_feature_views(self) -> list[Registered]:
        return self._list("feature_view")

    def list_feature_services(self) -> list[Registered]:
        return self._list("feature_service")

    def get_entity(self, name: str) -> Entity:
        with self.db.read() as s:
            return registry.get(s, "entity", name)  # type: ignore[return-value]

    def get_feature_view(self, name: str) -> FeatureView:
        with self.db.read() as s:
            return registry.get(s, "feature_view", name)  # type: ignore[return-value]

    def get_feature_service(self, name: str) -> FeatureService:
        with self.db.read() as s:
            return registry.get(s, "feature_service", name)  # type: ignore[return-value]

    def search_features(
        self,
        query: str = "",
        *,
        entity: str | None = None,
        tag: str | None = None,
        owner: str | None = None,
    ) -> list[dict[str, Any]]:
        needle = query.lower()
        key, _, value = (tag or "").partition("=")
        out = []
        for reg in self.list_feature_views():
            view = FeatureView.model_validate(reg.spec)
            if entity and entity not in view.entities:
                continue
            if owner and view.owner != owner:
                continue
            if key and (key not in view.tags or (value and view.tags[key] != value)):
                continue
            for f in view.features:
                text = f"{f.name} {f.description} {view.description}".lower()
                if needle and needle not in text:
                    continue
                out.append(
                    {
                        "ref": f"{view.name}:{f.name}",
                        "view": view.name,
                        "feature": f.name,
                        "dtype": f.dtype.value,
                        "entities": view.entities,
                        "owner": view.owner,
                        "tags": view.tags,
                        "description": f.description or view.description,
                    }
                )
        return out

    # -- resolving feature lists ---------------------------------------------------------------
    def resolve(self, features: Sequence[str] | str) -> list[tuple[FeatureView, list[str]]]:
        """Views with the wanted feature names, in first-mention order."""
        if isinstance(features, str):
            features = self._cached("feature_service", features).features
        if not features:
            raise InvalidInput("Name at least one feature", details={"field": "features"})
        views: dict[str, tuple[FeatureView, list[str]]] = {}
        for ref in features:
            view_name, feature = parse_feature_ref(ref)
            if view_name not in views:
                views[view_name] = (self._cached("feature_view", view_name), [])
            view, wanted = views[view_name]
            names = [f.name for f in view.features]
            if feature == "*":
                wanted += [n for n in names if n not in wanted]
            elif feature not in names:
                close = [
                    n for n in names if feature.lower() in n.lower() or n.lower() in feature.lower()
                ]
                raise NotFound(
                    f"Feature view {view_name!r} has no feature {feature!r}; "
                    + (
                        f"close names: {', '.join(close)}"
                        if close
                        else f"features: {', '.join(names)}"
                    ),
                    details={"feature": ref, "close": close},
                )
            elif feature not in wanted:
                wanted.append(feature)
        return list(views.values())

    def join_keys(self, view: FeatureView) -> list[str]:
        keys: list[str] = []
        for name in view.entities:
            keys += [k for k in self._cached("entity", name).join_keys if k not in keys]
        return keys

    def _cached(self, kind: str, name: str) -> Any:
        """A definition for the read paths (online lookups must not pay a database read):
        kept for CACHE_SECONDS; an apply in this process clears it at once, one in another
        process is seen within CACHE_SECONDS."""
        now = time.monotonic()
        hit = self._cache.get((kind, name))
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.db.read() as s:
            obj = registry.get(s, kind, name)
        self._cache[(kind, name)] = (now + CACHE_SECONDS, obj)
        return obj

    # -- offline -------------------------------------------------------------------------------
    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _historical(
        self,
        con: duckdb.DuckDBPyConnection,
        entities: EntitySource,
        features: Sequence[str] | str,
        timestamp_column: str,
        assume_utc: bool,
        full_feature_names: bool,
    ) -> str:
        """Register everything in ``con`` and return the retrieval's SQL."""
        resolved = self.resolve(features)
        if isinstance(entities, str):
            self.data.duckdb(entities, con=con, view="__entities")
        else:
            con.register("__entities", as_arrow(entities))
        described = con.execute("DESCRIBE __entities").fetchall()
        types = {row[0]: row[1] for row in described}
        columns = [row[0] for row in described]
        joins: list[ViewJoin] = []
        ts_sqls: list[str | None] = []
        outputs = set(columns)
        for i, (view, wanted) in enumerate(resolved):
            keys = self.join_keys(view)
            for key in keys:
                if key not in types:
                    raise InvalidInput(
                        f"The entity rows have no column {key!r}, the join key of feature view "
                        f"{view.name!r} (columns: {', '.join(columns)})",
                        details={"field": key},
                    )
            names = [f"{view.name}__{f}" if full_feature_names else f for f in wanted]
            clash = [n for n in names if n in outputs]
            if clash:
                raise InvalidInput(
                    f"Column {clash[0]!r} would appear twice in the result; pass "
                    "full_feature_names=True to name features VIEW__FEATURE",
                    details={"field": "features"},
                )
            outputs.update(names)
            relation = f"__src{i}"
            self.data.duckdb(view.source, con=con, view=relation)
            joins.append(ViewJoin(view, relation, keys, wanted, names))
            if view.timestamp is None:
                ts_sqls.append(None)
            else:
                src_types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {q(relation)}").fetchall()}
                ts_sqls.append(
                    timestamp_expr(
                        view.timestamp,
                        src_types[view.timestamp],
                        assume_utc=False,
                        what=f"Feature view {view.name!r}: timestamp",
                    )
                )
        if any(t is not None for t in ts_sqls):
            if timestamp_column not in types:
                raise InvalidInput(
                    f"The entity rows have no timestamp column {timestamp_column!r} "
                    f"(columns: {', '.join(columns)}); name it with timestamp_column=",
                    details={"field": timestamp_column},
                )
            entity_ts = timestamp_expr(
                timestamp_column,
                types[timestamp_column],
                assume_utc=assume_utc,
                what="The entity rows' timestamp",
            )
            if types[timestamp_column].upper() == "VARCHAR" and not assume_utc:
                bad = con.execute(string_offsets_sql("__entities", timestamp_column)).fetchall()[0]
                if bad and bad[0]:
                    raise InvalidInput(
                        f"{bad[0]} entity timestamps in {timestamp_column!r} carry no UTC offset; "
                        "write them like 2013-01-01T05:00:00Z or pass assume_utc=True",
                        details={"field": timestamp_column},
                    )
            if types[timestamp_column].upper() == "VARCHAR" and assume_utc:
                entity_ts = f"CAST({q(timestamp_column)} AS TIMESTAMPTZ)"
        else:
            entity_ts = "NULL::TIMESTAMPTZ"
        return historical_sql("__entities", columns, entity_ts, joins, ts_sqls)

    def get_historical_features(
        self,
        entities: EntitySource,
        features: Sequence[str] | str,
        *,
        timestamp_column: str = "event_timestamp",
        assume_utc: bool = False,
        full_feature_names: bool = False,
    ) -> pa.Table:
        con = self._connect()
        try:
            sql = self._historical(
                con, entities, features, timestamp_column, assume_utc, full_feature_names
            )
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()

    def create_training_set(
        self,
        entities: EntitySource,
        features: Sequence[str] | str,
        name: str,
        *,
        timestamp_column: str = "event_timestamp",
        assume_utc: bool = False,
        full_feature_names: bool = False,
        description: str = "",
    ) -> IngestResult:
        resolved = self.resolve(features)
        parents = [self.data.get_version(v.source).ref for v, _ in resolved]
        if isinstance(entities, str):
            parents.insert(0, self.data.get_version(entities).ref)
        con = self._connect()
        try:
            sql = self._historical(
                con, entities, features, timestamp_column, assume_utc, full_feature_names
            )
            reader = con.sql(sql).to_arrow_reader(online.BATCH_ROWS)
            feature_list = [f"{v.name}:{f}" for v, wanted in resolved for f in wanted]
            return self.data.ingest(
                reader,
                name,
                parents=parents,
                description=description,
                transform={
                    "kind": "features",
                    "name": features if isinstance(features, str) else "features",
                    "code": json.dumps(
                        {"features": feature_list, "timestamp_column": timestamp_column}
                    ),
                },
            )
        finally:
            con.close()

    # -- online --------------------------------------------------------------------------------
    def _lock(self, view: str) -> threading.Lock:
        with self._locks_guard:
            return self._view_locks.setdefault(view, threading.Lock())

    def materialize(
        self,
        start: datetime | None,
        end: datetime,
        views: Sequence[str] | None = None,
        *,
        progress: MaterializeProgress | None = None,
    ) -> list[MaterializeResult]:
        return online.materialize(self, start, end, views, incremental=False, progress=progress)

    def materialize_incremental(
        self,
        end: datetime,
        views: Sequence[str] | None = None,
        *,
        progress: MaterializeProgress | None = None,
    ) -> list[MaterializeResult]:
        return online.materialize(self, None, end, views, incremental=True, progress=progress)

    def push(self, view: str, rows: Sequence[dict[str, Any]]) -> int:
        return online.push(self, view, rows)

    def get_online_features(
        self, features: Sequence[str] | str, entity_rows: Sequence[dict[str, Any]]
    ) -> OnlineResponse:
        return online.get_online(self, features, entity_rows)
