"""The embedded feature store: definitions in the metadata DB, point-in-time joins in DuckDB
over the data layer's verified Parquet parts, values in the online store."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from strata.backends.context import Backends
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.core.principal import current
from strata.data.service import DataService
from strata.features import checks, ondemand, online, registry, sources
from strata.features.frames import as_arrow
from strata.features.models import (
    Entity,
    FeatureService,
    FeatureStatistics,
    FeatureView,
    MaterializeResult,
    OnDemandFeatureView,
    OnlineResponse,
    Plan,
    PushStreamResult,
    Registered,
    SqlSource,
    parse_feature_ref,
)
from strata.features.offline import (
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
    PushProgress,
)
from strata.governance.audit import audited

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from strata.backends.online.base import OnlineStore
    from strata.data.models import IngestResult

CACHE_SECONDS = 2.0


class EmbeddedFeatures(FeaturesService):
    """:class:`FeaturesService` in this process."""

    def __init__(self, backends: Backends, data: DataService) -> None:
        self.backends = backends
        self.db = backends.db
        self.data = data
        self._view_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._local = threading.local()  # this thread's retrieval connection
        self._connections: list[duckdb.DuckDBPyConnection] = []

    @cached_property
    def online_store(self) -> OnlineStore:
        from strata.backends.online.base import open_online_store

        settings = self.backends.settings
        return open_online_store(settings.online_uri, str(settings.home))

    def close(self) -> None:
        if "online_store" in self.__dict__:
            self.online_store.close()
        with self._locks_guard:
            connections, self._connections = self._connections, []
        for con in connections:
            con.close()

    # -- definitions ---------------------------------------------------------------------------
    def plan(self, definitions: DefinitionsLike) -> Plan:
        defs = registry.load_definitions(definitions)
        with self.db.read() as s:
            return registry.plan(s, defs)

    def apply(self, definitions: DefinitionsLike, *, force: bool = False) -> Plan:
        defs = registry.load_definitions(definitions)
        checks.check_definitions(self, defs)
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

    def _list(self, kind: str) -> list[Registered]:
        with self.db.read() as s:
            return [registry.to_registered(r) for r in registry.registered(s, kind).values()]

    def list_entities(self) -> list[Registered]:
        return self._list("entity")

    def list_feature_views(self) -> list[Registered]:
        return self._list("feature_view")

    def list_feature_services(self) -> list[Registered]:
        return self._list("feature_service")

    def list_on_demand_views(self) -> list[Registered]:
        return self._list("on_demand_view")

    def get_entity(self, name: str) -> Entity:
        with self.db.read() as s:
            return registry.get(s, "entity", name)  # type: ignore[return-value]

    def get_feature_view(self, name: str) -> FeatureView:
        with self.db.read() as s:
            return registry.get(s, "feature_view", name)  # type: ignore[return-value]

    def get_feature_service(self, name: str) -> FeatureService:
        with self.db.read() as s:
            return registry.get(s, "feature_service", name)  # type: ignore[return-value]

    def get_on_demand_view(self, name: str) -> OnDemandFeatureView:
        with self.db.read() as s:
            return registry.get(s, "on_demand_view", name)  # type: ignore[return-value]

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
        views = [FeatureView.model_validate(r.spec) for r in self.list_feature_views()]
        entities_of = {v.name: v.entities for v in views}
        described: list[tuple[Any, list[str], str]] = [
            (v, v.entities, "feature_view") for v in views
        ]
        for reg in self.list_on_demand_views():
            odv = OnDemandFeatureView.model_validate(reg.spec)
            names: list[str] = []
            for ref in odv.sources:
                names += [e for e in entities_of.get(ref.partition(":")[0], []) if e not in names]
            described.append((odv, names, "on_demand_view"))
        out = []
        for view, view_entities, kind in described:
            if entity and entity not in view_entities:
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
                        "kind": kind,
                        "feature": f.name,
                        "dtype": f.dtype.value,
                        "entities": view_entities,
                        "owner": view.owner,
                        "tags": view.tags,
                        "description": f.description or view.description,
                    }
                )
        return out

    def get_feature_statistics(self, view: str) -> FeatureStatistics:
        spec = self.get_feature_view(view)
        if isinstance(spec.source, SqlSource):
            raise InvalidInput(
                f"Feature view {view!r} reads SQL over datasets; its statistics are its inputs' "
                f"({', '.join(spec.source.inputs.values())}): see their dataset profiles",
                details={"field": "view"},
            )
        version = self.data.get_version(spec.source)
        profile = self.data.profile(version.ref)
        wanted = [*self.join_keys(spec), *(c for c in (spec.timestamp,) if c)]
        wanted += [f.name for f in spec.features if f.name not in wanted]
        by_name = {c.name: c.model_dump(mode="json") for c in profile.columns}
        return FeatureStatistics(
            view=spec.name,
            source_version=version.ref,
            rows=profile.row_count,
            columns=[by_name[c] for c in wanted if c in by_name],
        )

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
        kept for CACHE_SECONDS, and so is its absence (an on-demand reference is first
        looked up as a stored view); an apply in this process clears it at once, one in
        another process is seen within CACHE_SECONDS."""
        now = time.monotonic()
        hit = self._cache.get((kind, name))
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], NotFound):
                raise hit[1]
            return hit[1]
        try:
            with self.db.read() as s:
                obj = registry.get(s, kind, name)
        except NotFound as exc:
            self._cache[(kind, name)] = (now + CACHE_SECONDS, exc)
            raise
        self._cache[(kind, name)] = (now + CACHE_SECONDS, obj)
        return obj

    def retrieval(self, features: Sequence[str] | str) -> ondemand.Retrieval:
        """Stored and on-demand references of a retrieval (a feature service's, by name)."""
        if isinstance(features, str):
            features = self._cached("feature_service", features).features
        if not features:
            raise InvalidInput("Name at least one feature", details={"field": "features"})
        return ondemand.split(list(features), self._cached)

    @property
    def trusted_modules(self) -> str:
        return self.backends.settings.trusted_modules

    # -- offline -------------------------------------------------------------------------------
    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _retrieval_connection(self) -> tuple[duckdb.DuckDBPyConnection, bool]:
        """This thread's connection for retrievals, kept between calls, and whether it is
        (a new DuckDB database costs ~10 ms and starts with no Parquet metadata cached: a third
        of a retrieval of all flights). Parts are immutable, so what it caches stays true. A
        remote store's filesystem is registered per call, so there each call gets its own."""
        if self.backends.artifacts.is_remote:
            return self._connect(), False
        con: duckdb.DuckDBPyConnection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
            with self._locks_guard:
                self._connections.append(con)
        return con, True

    def _historical(
        self,
        con: duckdb.DuckDBPyConnection,
        entities: EntitySource,
        features: Sequence[str] | str,
        timestamp_column: str,
        assume_utc: bool,
        full_feature_names: bool,
    ) -> tuple[str, list[sources.PinnedSource]]:
        """Register everything in ``con``; the retrieval's SQL (stored features only:
        ``features`` comes from :meth:`retrieval`) and the sources it reads, pinned."""
        resolved = self.resolve(features) if features else []
        read: list[sources.PinnedSource] = []
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
            pinned = sources.pin(self.data, view)
            pinned.register(self.data, con, relation)
            read.append(pinned)
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
        return historical_sql("__entities", columns, entity_ts, joins, ts_sqls), read

    def get_historical_features(
        self,
        entities: EntitySource,
        features: Sequence[str] | str,
        *,
        timestamp_column: str = "event_timestamp",
        assume_utc: bool = False,
        full_feature_names: bool = False,
    ) -> pa.Table:
        plan = self.retrieval(features)
        con, kept = self._retrieval_connection()
        try:
            sql, _ = self._historical(
                con, entities, plan.stored, timestamp_column, assume_utc, full_feature_names
            )
            table = con.sql(sql).to_arrow_table()
        finally:
            if not kept:
                con.close()
            else:  # the caller's entity rows are not held between calls
                with contextlib.suppress(Exception):
                    con.unregister("__entities")
        if not plan.on_demand:
            return table
        return ondemand.attach_offline(
            table, plan, full_feature_names=full_feature_names, trusted=self.trusted_modules
        )

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

        plan = self.retrieval(features)
        resolved = self.resolve(plan.stored) if plan.stored else []
        con = self._connect()
        try:
            sql, read = self._historical(
                con, entities, plan.stored, timestamp_column, assume_utc, full_feature_names
            )
            # the versions this retrieval read (each view's source pinned once)
            parents = list(dict.fromkeys(r for p in read for r in p.versions.values()))
            if isinstance(entities, str):
                parents.insert(0, self.data.get_version(entities).ref)
            reader = con.sql(sql).to_arrow_reader(online.BATCH_ROWS)
            if plan.on_demand:
                reader = self._on_demand_reader(reader, plan, full_feature_names)
            feature_list = [
                f"{v.name}:{f}"
                for v, wanted in resolved
                for f in wanted
                if f"{v.name}:{f}" not in plan.hidden
            ] + [f"{p.view.name}:{f}" for p in plan.on_demand for f in p.wanted]
            code: dict[str, Any] = {"features": feature_list, "timestamp_column": timestamp_column}
            if isinstance(features, str):  # lineage: training set -> the service's exact version
                service = next(r for r in self.list_feature_services() if r.name == features)
                code["feature_service"] = {"name": service.name, "version": service.version}
            return self.data.ingest(
                reader,
                name,
                parents=parents,
                description=description,
                transform={
                    "kind": "features",
                    "name": features if isinstance(features, str) else "features",
                    "code": json.dumps(code),
                },
            )
        finally:
            con.close()

    def _on_demand_reader(
        self, reader: pa.RecordBatchReader, plan: ondemand.Retrieval, full_feature_names: bool
    ) -> pa.RecordBatchReader:
        """``reader``'s batches with the on-demand features computed batch by batch on one
        sandboxed connection (the training set streams; nothing is held whole)."""
        import pyarrow as pa

        from strata.data.expressions import sandbox

        sandboxed = sandbox()
        trusted = self.trusted_modules
        schema = ondemand.attach_offline(
            reader.schema.empty_table(),
            plan,
            full_feature_names=full_feature_names,
            trusted=trusted,
            con=sandboxed,
        ).schema

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for batch in reader:
                    out = ondemand.attach_offline(
                        batch,
                        plan,
                        full_feature_names=full_feature_names,
                        trusted=trusted,
                        con=sandboxed,
                    )
                    yield from out.cast(schema).to_batches()
            finally:
                sandboxed.close()

        return pa.RecordBatchReader.from_batches(schema, batches())

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

    def consume_push(
        self,
        view: str,
        source: str,
        *,
        group: str | None = None,
        batch_size: int = 1000,
        max_records: int | None = None,
        idle_seconds: float | None = None,
        progress: PushProgress | None = None,
    ) -> PushStreamResult:
        from strata.features.streaming import consume_push

        return consume_push(
            self,
            view,
            source,
            group=group,
            batch_size=batch_size,
            max_records=max_records,
            idle_seconds=idle_seconds,
            progress=progress,
        )

    def get_online_features(
        self, features: Sequence[str] | str, entity_rows: Sequence[dict[str, Any]]
    ) -> OnlineResponse:
        return online.get_online(self, features, entity_rows)
