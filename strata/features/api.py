"""The feature-store REST API (``/api/v1/features``).

Definitions are planned and applied as one repository (a JSON object, or YAML text: never a
path the server would open). Historical retrieval answers an Arrow IPC stream
(``application/vnd.apache.arrow.stream``); entity rows come as a dataset reference or as JSON
rows (timestamps as ISO 8601 strings with an offset). Online lookups and pushes are JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from strata.core.errors import InvalidInput
from strata.features.service import FeaturesService
from strata.governance.routing import (
    READ,
    WRITE,
    body_schema,
    json_response,
    lean,
    read_body,
    run_blocking,
    service,
)

router = APIRouter(prefix="/api/v1/features", tags=["features"])
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _svc(request: Request) -> FeaturesService:
    svc: FeaturesService = service(request, "features", FeaturesService)
    return svc


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefinitionsBody(_Body):
    #: The repository: ``{"entities": [...], "feature_views": [...], "feature_services":
    #: [...]}``, or the same as YAML text.
    definitions: dict[str, Any] | str
    force: bool = False


class Retrieval(_Body):
    #: A dataset reference holding the entity rows, or the rows themselves.
    entities: str | list[dict[str, Any]]
    #: Feature references (``view:feature``) or a feature service's name.
    features: list[str] | str
    timestamp_column: str = "event_timestamp"
    assume_utc: bool = False
    full_feature_names: bool = False


class TrainingSet(Retrieval):
    name: str
    description: str = ""


class Materialize(_Body):
    start: datetime | None = None
    end: datetime
    views: list[str] | None = None
    #: From where each view's last materialization ended (``start`` must be omitted).
    incremental: bool = False


class Push(_Body):
    rows: list[dict[str, Any]] = Field(max_length=100_000)


class OnlineLookup(_Body):
    features: list[str] | str
    entity_rows: list[dict[str, Any]] = Field(max_length=10_000)


def _definitions(body: DefinitionsBody) -> dict[str, Any]:
    """The repository as a mapping. YAML text is parsed here, and anything that is not a
    mapping is refused: a string reaching the service would be read as a file path on the
    server (``"/etc/app/secrets.yaml"`` is valid YAML for a plain string)."""
    value: Any = body.definitions
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InvalidInput(
                f"definitions are not valid YAML: {exc}", details={"field": "definitions"}
            ) from None
    if not isinstance(value, dict):
        raise InvalidInput(
            "definitions must be a mapping with entities, feature_views and feature_services "
            f"(JSON or YAML text), not {type(value).__name__}",
            details={"field": "definitions"},
        )
    return value


@router.post("/plan", dependencies=READ)
async def plan(request: Request, body: DefinitionsBody) -> Response:
    """What apply would change (nothing is written)."""
    result = await run_blocking(_svc(request).plan, _definitions(body))
    return json_response(result)


@router.post("/apply", dependencies=WRITE)
async def apply(request: Request, body: DefinitionsBody) -> Response:
    result = await run_blocking(_svc(request).apply, _definitions(body), force=body.force)
    return json_response(result)


@router.get("/entities", dependencies=READ)
def list_entities(request: Request) -> Response:
    return json_response({"items": _svc(request).list_entities()})


@router.get("/entities/{name}", dependencies=READ)
def get_entity(request: Request, name: str) -> Response:
    return json_response(_svc(request).get_entity(name))


@router.get("/views", dependencies=READ)
def list_views(request: Request) -> Response:
    return json_response({"items": _svc(request).list_feature_views()})


@router.get("/views/{name}", dependencies=READ)
def get_view(request: Request, name: str) -> Response:
    return json_response(_svc(request).get_feature_view(name))


@router.get("/views/{name}/statistics", dependencies=READ)
async def view_statistics(request: Request, name: str) -> Response:
    # The first call may profile the source version (DuckDB): off the event loop.
    return json_response(await run_blocking(_svc(request).get_feature_statistics, name))


@router.get("/services", dependencies=READ)
def list_services(request: Request) -> Response:
    return json_response({"items": _svc(request).list_feature_services()})


@router.get("/services/{name}", dependencies=READ)
def get_service(request: Request, name: str) -> Response:
    return json_response(_svc(request).get_feature_service(name))


@router.get("/on-demand-views", dependencies=READ)
def list_on_demand_views(request: Request) -> Response:
    return json_response({"items": _svc(request).list_on_demand_views()})


@router.get("/on-demand-views/{name}", dependencies=READ)
def get_on_demand_view(request: Request, name: str) -> Response:
    return json_response(_svc(request).get_on_demand_view(name))


@router.get("/search", dependencies=READ)
def search(
    request: Request,
    query: str = "",
    entity: str | None = None,
    tag: str | None = None,
    owner: str | None = None,
) -> Response:
    found = _svc(request).search_features(query, entity=entity, tag=tag, owner=owner)
    return json_response({"items": found}, plain=True)


@router.post("/historical", dependencies=READ, response_class=Response)
async def historical(request: Request, body: Retrieval) -> Response:
    """Entity rows with features joined point in time, as an Arrow IPC stream."""
    import pyarrow as pa

    table = await run_blocking(
        _svc(request).get_historical_features,
        body.entities,
        body.features,
        timestamp_column=body.timestamp_column,
        assume_utc=body.assume_utc,
        full_feature_names=body.full_feature_names,
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM)


@router.post("/training-sets", dependencies=WRITE)
async def training_set(request: Request, body: TrainingSet) -> Response:
    result = await run_blocking(
        _svc(request).create_training_set,
        body.entities,
        body.features,
        body.name,
        timestamp_column=body.timestamp_column,
        assume_utc=body.assume_utc,
        full_feature_names=body.full_feature_names,
        description=body.description,
    )
    return json_response(result, status_code=201)


@router.post("/materialize", dependencies=WRITE)
async def materialize(request: Request, body: Materialize) -> Response:
    svc = _svc(request)
    if body.incremental:
        if body.start is not None:
            raise InvalidInput(
                "An incremental materialization starts where the last one ended: omit start",
                details={"field": "start"},
            )
        done = await run_blocking(svc.materialize_incremental, body.end, body.views)
    else:
        done = await run_blocking(svc.materialize, body.start, body.end, body.views)
    return json_response({"items": done})


@router.post("/views/{name}/push", dependencies=WRITE)
async def push(request: Request, name: str, body: Push) -> Response:
    count = await run_blocking(_svc(request).push, name, body.rows)
    return json_response({"written": count}, plain=True)


@router.post("/online", dependencies=READ, openapi_extra=body_schema(OnlineLookup))
@lean  # the hot read path: FastAPI's routing and dependency solving cost more than a lookup
async def online(request: Request) -> Response:
    """Latest values per entity row, with event times and statuses."""
    body = await read_body(request, OnlineLookup)
    result = await run_blocking(_svc(request).get_online_features, body.features, body.entity_rows)
    return json_response(result)
