"""The feature-store interface over HTTP (``strata.Client("http://...").features``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from strata.core.arrow import table_of
from strata.core.transport import HttpTransport
from strata.features.models import (
    Definitions,
    Entity,
    FeatureService,
    FeatureStatistics,
    FeatureView,
    MaterializeResult,
    OnDemandFeatureView,
    OnlineResponse,
    Plan,
    Registered,
    entity_rows_error,
)
from strata.features.service import (
    DefinitionsLike,
    EntitySource,
    FeaturesService,
    MaterializeProgress,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from strata.data.models import IngestResult

P = "/api/v1/features"


def _q(name: str) -> str:
    return quote(name, safe="")


def _definitions(obj: DefinitionsLike) -> dict[str, Any] | str:
    """What the server takes: a dict, or YAML text (a local path is read here, on the
    caller's machine)."""
    if isinstance(obj, Definitions):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path) or (
        isinstance(obj, str) and "\n" not in obj and obj.endswith((".yaml", ".yml", ".json"))
    ):
        return Path(obj).read_text()
    return obj


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _entities(entities: EntitySource) -> str | list[dict[str, Any]]:
    if isinstance(entities, str):
        return entities
    table = table_of(entities)
    if table is None:
        raise entity_rows_error(entities)
    rows = table.to_pylist()
    return [{k: _jsonable(v) for k, v in row.items()} for row in rows]


class RemoteFeatures(FeaturesService):
    def __init__(self, http: HttpTransport) -> None:
        self.http = http

    def plan(self, definitions: DefinitionsLike) -> Plan:
        body = {"definitions": _definitions(definitions)}
        return Plan.model_validate(self.http.request("POST", f"{P}/plan", json=body))

    def apply(self, definitions: DefinitionsLike, *, force: bool = False) -> Plan:
        body = {"definitions": _definitions(definitions), "force": force}
        return Plan.model_validate(self.http.request("POST", f"{P}/apply", json=body))

    def _items(self, path: str) -> list[Registered]:
        return [Registered.model_validate(r) for r in self.http.request("GET", path)["items"]]

    def list_entities(self) -> list[Registered]:
        return self._items(f"{P}/entities")

    def list_feature_views(self) -> list[Registered]:
        return self._items(f"{P}/views")

    def list_feature_services(self) -> list[Registered]:
        return self._items(f"{P}/services")

    def list_on_demand_views(self) -> list[Registered]:
        return self._items(f"{P}/on-demand-views")

    def get_entity(self, name: str) -> Entity:
        return Entity.model_validate(self.http.request("GET", f"{P}/entities/{_q(name)}"))

    def get_feature_view(self, name: str) -> FeatureView:
        return FeatureView.model_validate(self.http.request("GET", f"{P}/views/{_q(name)}"))

    def get_feature_service(self, name: str) -> FeatureService:
        out = self.http.request("GET", f"{P}/services/{_q(name)}")
        return FeatureService.model_validate(out)

    def get_feature_statistics(self, view: str) -> FeatureStatistics:
        out = self.http.request("GET", f"{P}/views/{_q(view)}/statistics")
        return FeatureStatistics.model_validate(out)

    def get_on_demand_view(self, name: str) -> OnDemandFeatureView:
        out = self.http.request("GET", f"{P}/on-demand-views/{_q(name)}")
        return OnDemandFeatureView.model_validate(out)

    def search_features(
        self,
        query: str = "",
        *,
        entity: str | None = None,
        tag: str | None = None,
        owner: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {"query": query, "entity": entity, "tag": tag, "owner": owner}
        items: list[dict[str, Any]] = self.http.request("GET", f"{P}/search", params=params)[
            "items"
        ]
        return items

    def _retrieval(
        self, entities: EntitySource, features: Sequence[str] | str, **options: Any
    ) -> dict[str, Any]:
        return {
            "entities": _entities(entities),
            "features": features if isinstance(features, str) else list(features),
            **options,
        }

    def get_historical_features(
        self,
        entities: EntitySource,
        features: Sequence[str] | str,
        *,
        timestamp_column: str = "event_timestamp",
        assume_utc: bool = False,
        full_feature_names: bool = False,
    ) -> pa.Table:
        import pyarrow as pa

        body = self._retrieval(
            entities,
            features,
            timestamp_column=timestamp_column,
            assume_utc=assume_utc,
            full_feature_names=full_feature_names,
        )
        with self.http.stream("POST", f"{P}/historical", json=body) as response:
            data = response.read()
        return pa.ipc.open_stream(data).read_all()

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
        from strata.data.models import IngestResult

        body = self._retrieval(
            entities,
            features,
            name=name,
            timestamp_column=timestamp_column,
            assume_utc=assume_utc,
            full_feature_names=full_feature_names,
            description=description,
        )
        return IngestResult.model_validate(
            self.http.request("POST", f"{P}/training-sets", json=body)
        )

    def _materialize(
        self, body: dict[str, Any], progress: MaterializeProgress | None
    ) -> list[MaterializeResult]:
        out = self.http.request("POST", f"{P}/materialize", json=body)
        done = [MaterializeResult.model_validate(r) for r in out["items"]]
        if progress is not None:
            for r in done:
                progress(r.view, r.rows)
        return done

    def materialize(
        self,
        start: datetime | None,
        end: datetime,
        views: Sequence[str] | None = None,
        *,
        progress: MaterializeProgress | None = None,
    ) -> list[MaterializeResult]:
        body = {
            "start": _jsonable(start),
            "end": _jsonable(end),
            "views": list(views) if views else None,
        }
        return self._materialize(body, progress)

    def materialize_incremental(
        self,
        end: datetime,
        views: Sequence[str] | None = None,
        *,
        progress: MaterializeProgress | None = None,
    ) -> list[MaterializeResult]:
        body = {"end": _jsonable(end), "views": list(views) if views else None, "incremental": True}
        return self._materialize(body, progress)

    def push(self, view: str, rows: Sequence[dict[str, Any]]) -> int:
        body = {"rows": [{k: _jsonable(v) for k, v in r.items()} for r in rows]}
        return int(self.http.request("POST", f"{P}/views/{_q(view)}/push", json=body)["written"])

    def get_online_features(
        self, features: Sequence[str] | str, entity_rows: Sequence[dict[str, Any]]
    ) -> OnlineResponse:
        body = {
            "features": features if isinstance(features, str) else list(features),
            "entity_rows": list(entity_rows),
        }
        return OnlineResponse.model_validate(self.http.request("POST", f"{P}/online", json=body))
