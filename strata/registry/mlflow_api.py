"""MLflow's model-registry REST API on ``strata server`` (``/api/2.0/mlflow/registered-models``
and ``/model-versions``, also under ``/ajax-api``), over the registry interface.

With it the official ``mlflow`` client's ``register_model``, ``MlflowClient`` registry calls and
``mlflow.pyfunc.load_model("models:/name@alias")`` work against Strata: a version's download
URI is its run's (or LoggedModel's) ``mlflow-artifacts:/`` location, served by the tracking
layer's artifact proxy. Stages are Strata aliases (``Production`` is the protected
``production``: a direct transition is refused with 403, as a direct alias move is).
Versions travel as strings and times as epoch milliseconds, as MLflow writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from strata.core.clock import to_ms
from strata.core.errors import InvalidInput, NotFound
from strata.core.page import Page
from strata.core.principal import Permission
from strata.governance.routing import service
from strata.registry.models import ModelVersion, RegisteredModel, VersionStatus
from strata.registry.service import RegistryService
from strata.tracking.mlflow_api import graphql_api
from strata.tracking.mlflow_api._common import (
    Body,
    add_route,
    json_response,
    key_values,
    missing,
    opt_int,
    opt_str,
    req_str,
    run_sync,
    str_list,
    tracking,
)
from strata.tracking.mlflow_api._common import read_body as read_fields
from strata.tracking.mlflow_api.schemas import KEY_VALUES, STRING, body_schema
from strata.tracking.mlflow_api.search_words import page_words, worded

router = APIRouter()
R, W = Permission.READ, Permission.WRITE
_STATUS = {
    VersionStatus.READY: "READY",
    VersionStatus.PENDING: "PENDING_REGISTRATION",
    VersionStatus.FAILED: "FAILED_REGISTRATION",
}
_STAGE_OF = {"production": "Production", "staging": "Staging"}
STAGES = ("None", "Staging", "Production", "Archived")


def registry(request: Request) -> RegistryService:
    svc: RegistryService = service(request, "registry", RegistryService)
    return svc


def stage_of(aliases: list[str]) -> str:
    for alias in ("production", "staging"):
        if alias in aliases:
            return _STAGE_OF[alias]
    return "None"


def version_json(mv: ModelVersion) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": mv.name,
        "version": str(mv.version),
        "creation_timestamp": to_ms(mv.created_at),
        "last_updated_timestamp": to_ms(mv.updated_at),
        "user_id": mv.created_by,
        "current_stage": stage_of(mv.aliases),
        "description": mv.description,
        "source": mv.source,
        "status": _STATUS[mv.status],
        "tags": [{"key": k, "value": v} for k, v in mv.tags.items()],
        "aliases": mv.aliases,
    }
    if mv.run_id:
        out["run_id"] = mv.run_id
    if mv.status_message:
        out["status_message"] = mv.status_message
    if mv.model_id:
        out["model_id"] = mv.model_id
    return out


def model_json(model: RegisteredModel, latest: list[ModelVersion] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": model.name,
        "creation_timestamp": to_ms(model.created_at),
        "last_updated_timestamp": to_ms(model.updated_at),
        "user_id": model.owner,
        "description": model.description,
        "tags": [{"key": k, "value": v} for k, v in model.tags.items()],
        "aliases": [{"alias": a, "version": str(v)} for a, v in model.aliases.items()],
    }
    if latest:
        out["latest_versions"] = [version_json(v) for v in latest]
    return out


def _version(body: Body) -> str:
    value = body.get("version")
    if value is None or value == "":
        raise missing("version")
    return str(value)


async def read_body(request: Request) -> Body:
    """The request's fields: the query string, and for DELETE also the JSON body (the
    ``mlflow`` client sends DELETE parameters as JSON)."""
    body = await read_fields(request)
    if request.method == "DELETE":
        raw = await request.body()
        if raw.strip():
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"request body is not valid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise InvalidInput("request body must be a JSON object", details={"field": "body"})
            body = {**body, **data}
    return body


def _order(body: Body) -> list[str] | None:
    items = str_list(body, "order_by")
    return items or None


def _latest(svc: RegistryService, model: RegisteredModel, stages: list[str]) -> list[ModelVersion]:
    """The newest version per requested stage (every stage when none is named)."""
    wanted = {s.lower() for s in stages} if stages else {s.lower() for s in STAGES}
    unknown = wanted - {s.lower() for s in STAGES}
    if unknown:
        raise InvalidInput(
            f"Invalid stage {sorted(unknown)[0]!r}: expected one of {', '.join(STAGES)}",
            details={"field": "stages"},
        )
    found: dict[str, ModelVersion] = {}
    for alias, number in model.aliases.items():
        stage = _STAGE_OF.get(alias)
        if stage and stage.lower() in wanted:
            found[stage] = svc.get_version(model.name, number)
    if "none" in wanted and model.latest_version:
        page = svc.search_versions(f"name = '{model.name}'", max_results=200)
        unstaged = [v for v in page.items if stage_of(v.aliases) == "None"]
        if unstaged:
            found["None"] = max(unstaged, key=lambda v: v.version)
    return sorted(found.values(), key=lambda v: v.version)


# -- registered models --------------------------------------------------------------------
async def create_registered_model(request: Request) -> Response:
    body = await read_body(request)
    model = await run_sync(
        registry(request).create_model,
        req_str(body, "name"),
        description=opt_str(body, "description") or "",
        tags=dict(key_values(body, "tags")),
    )
    return json_response({"registered_model": model_json(model)})


async def get_registered_model(request: Request) -> Response:
    body = await read_body(request)
    svc = registry(request)

    def work() -> dict[str, Any]:
        model = svc.get_model(req_str(body, "name"))
        return model_json(model, _latest(svc, model, []))

    return json_response({"registered_model": await run_sync(work)})


async def update_registered_model(request: Request) -> Response:
    body = await read_body(request)
    model = await run_sync(
        registry(request).update_model,
        req_str(body, "name"),
        description=opt_str(body, "description"),
    )
    return json_response({"registered_model": model_json(model)})


async def rename_registered_model(request: Request) -> Response:
    body = await read_body(request)
    model = await run_sync(
        registry(request).rename_model, req_str(body, "name"), req_str(body, "new_name")
    )
    return json_response({"registered_model": model_json(model)})


async def delete_registered_model(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(registry(request).delete_model, req_str(body, "name"))
    return json_response()


async def _search(
    request: Request, search: Callable[..., Page[Any]], key: str, render: Callable[[Any], Body]
) -> Response:
    """A registered-model or model-version search: MLflow's fields in, its page out."""
    body = await read_body(request)
    page_token = opt_str(body, "page_token") or None
    page = await worded(
        lambda: page_words(page_token),
        ("page_token",),
        search,
        filter=opt_str(body, "filter") or None,
        order_by=_order(body),
        max_results=opt_int(body, "max_results") or 100,
        page_token=page_token,
    )
    out: dict[str, Any] = {key: [render(item) for item in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return json_response(out)


async def search_registered_models(request: Request) -> Response:
    return await _search(request, registry(request).search_models, "registered_models", model_json)


async def get_latest_versions(request: Request) -> Response:
    body = await read_body(request)
    svc = registry(request)

    def work() -> list[ModelVersion]:
        return _latest(svc, svc.get_model(req_str(body, "name")), str_list(body, "stages"))

    return json_response({"model_versions": [version_json(v) for v in await run_sync(work)]})


async def set_registered_model_tag(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(
        registry(request).set_model_tag,
        req_str(body, "name"),
        req_str(body, "key"),
        opt_str(body, "value") or "",
    )
    return json_response()


async def delete_registered_model_tag(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(registry(request).delete_model_tag, req_str(body, "name"), req_str(body, "key"))
    return json_response()


async def set_alias(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(
        registry(request).set_alias,
        req_str(body, "name"),
        req_str(body, "alias"),
        _version(body),
        reason="set through the MLflow API",
    )
    return json_response()


async def delete_alias(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(
        registry(request).delete_alias,
        req_str(body, "name"),
        req_str(body, "alias"),
        reason="deleted through the MLflow API",
    )
    return json_response()


async def get_by_alias(request: Request) -> Response:
    body = await read_body(request)
    mv = await run_sync(
        registry(request).get_version_by_alias, req_str(body, "name"), req_str(body, "alias")
    )
    return json_response({"model_version": version_json(mv)})


# -- model versions -------------------------------------------------------------------------
async def create_model_version(request: Request) -> Response:
    body = await read_body(request)
    mv = await run_sync(
        registry(request).create_version,
        req_str(body, "name"),
        req_str(body, "source"),
        run_id=opt_str(body, "run_id") or None,
        description=opt_str(body, "description") or "",
        tags=dict(key_values(body, "tags")),
        model_id=opt_str(body, "model_id") or None,
    )
    return json_response({"model_version": version_json(mv)})


async def get_model_version(request: Request) -> Response:
    body = await read_body(request)
    mv = await run_sync(registry(request).get_version, req_str(body, "name"), _version(body))
    return json_response({"model_version": version_json(mv)})


async def update_model_version(request: Request) -> Response:
    body = await read_body(request)
    mv = await run_sync(
        registry(request).update_version,
        req_str(body, "name"),
        _version(body),
        description=opt_str(body, "description"),
    )
    return json_response({"model_version": version_json(mv)})


async def delete_model_version(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(registry(request).delete_version, req_str(body, "name"), _version(body))
    return json_response()


async def search_model_versions(request: Request) -> Response:
    return await _search(request, registry(request).search_versions, "model_versions", version_json)


async def transition_stage(request: Request) -> Response:
    body = await read_body(request)
    archive = str(body.get("archive_existing_versions", "false")).lower() == "true"
    mv = await run_sync(
        registry(request).transition_stage,
        req_str(body, "name"),
        _version(body),
        req_str(body, "stage"),
        archive_existing=archive,
    )
    return json_response({"model_version": version_json(mv)})


async def set_model_version_tag(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(
        registry(request).set_version_tag,
        req_str(body, "name"),
        _version(body),
        req_str(body, "key"),
        opt_str(body, "value") or "",
    )
    return json_response()


async def delete_model_version_tag(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(
        registry(request).delete_version_tag,
        req_str(body, "name"),
        _version(body),
        req_str(body, "key"),
    )
    return json_response()


async def get_download_uri(request: Request) -> Response:
    """The ``mlflow-artifacts:/`` location of the version's files (the artifact proxy serves
    it): its LoggedModel's artifact location, or its run's artifact URI + path."""
    body = await read_body(request)
    svc, trk = registry(request), tracking(request)

    def work() -> str:
        mv = svc.get_version(req_str(body, "name"), _version(body))
        if mv.model_id:
            return trk.get_logged_model(mv.model_id).artifact_location
        if mv.run_id and mv.artifact_path:
            root = trk.get_run(mv.run_id).info.artifact_uri.rstrip("/")
            return f"{root}/{mv.artifact_path}"
        raise NotFound(f"Version {mv.version} of {mv.name!r} has no stored files")

    return json_response({"artifact_uri": await run_sync(work)})


RM, MV = "/registered-models", "/model-versions"
# The request bodies for the OpenAPI document (MLflow's model_registry.proto).
_NAME = {"name": STRING}
_VERSION = {**_NAME, "version": STRING}
_STAGES = {"type": "array", "items": STRING}
add_route(
    router,
    f"{RM}/create",
    create_registered_model,
    ["POST"],
    W,
    body=body_schema(["name"], **_NAME, tags=KEY_VALUES, description=STRING),
)
add_route(router, f"{RM}/get", get_registered_model, ["GET"], R)
add_route(
    router,
    f"{RM}/update",
    update_registered_model,
    ["PATCH"],
    W,
    body=body_schema(["name"], **_NAME, description=STRING),
)
add_route(
    router,
    f"{RM}/rename",
    rename_registered_model,
    ["POST"],
    W,
    body=body_schema(["name", "new_name"], **_NAME, new_name=STRING),
)
add_route(router, f"{RM}/delete", delete_registered_model, ["DELETE"], W)
add_route(router, f"{RM}/search", search_registered_models, ["GET"], R)
add_route(
    router,
    f"{RM}/get-latest-versions",
    get_latest_versions,
    ["GET", "POST"],
    R,
    body=body_schema(["name"], **_NAME, stages=_STAGES),
)
add_route(
    router,
    f"{RM}/set-tag",
    set_registered_model_tag,
    ["POST"],
    W,
    body=body_schema(["name", "key"], **_NAME, key=STRING, value=STRING),
)
add_route(router, f"{RM}/delete-tag", delete_registered_model_tag, ["DELETE"], W)
add_route(
    router,
    f"{RM}/alias",
    set_alias,
    ["POST"],
    W,
    body=body_schema(["name", "alias", "version"], **_VERSION, alias=STRING),
)
add_route(router, f"{RM}/alias", delete_alias, ["DELETE"], W)
add_route(router, f"{RM}/alias", get_by_alias, ["GET"], R)
add_route(
    router,
    f"{MV}/create",
    create_model_version,
    ["POST"],
    W,
    body=body_schema(
        ["name", "source"],
        **_NAME,
        source=STRING,
        run_id=STRING,
        tags=KEY_VALUES,
        run_link=STRING,
        description=STRING,
        model_id=STRING,
    ),
)
add_route(router, f"{MV}/get", get_model_version, ["GET"], R)
add_route(
    router,
    f"{MV}/update",
    update_model_version,
    ["PATCH"],
    W,
    body=body_schema(["name", "version"], **_VERSION, description=STRING),
)
add_route(router, f"{MV}/delete", delete_model_version, ["DELETE"], W)
add_route(router, f"{MV}/search", search_model_versions, ["GET"], R)
add_route(
    router,
    f"{MV}/transition-stage",
    transition_stage,
    ["POST"],
    W,
    body=body_schema(
        ["name", "version", "stage"],
        **_VERSION,
        stage=STRING,
        archive_existing_versions={"type": "boolean"},
    ),
)
add_route(
    router,
    f"{MV}/set-tag",
    set_model_version_tag,
    ["POST"],
    W,
    body=body_schema(["name", "version", "key"], **_VERSION, key=STRING, value=STRING),
)
add_route(router, f"{MV}/delete-tag", delete_model_version_tag, ["DELETE"], W)
add_route(router, f"{MV}/get-download-uri", get_download_uri, ["GET"], R)

# A run's ``modelVersions`` and ``mlflowSearchModelVersions`` on MLflow's /graphql.
if search_model_versions not in graphql_api.MODEL_VERSION_SEARCH:
    graphql_api.MODEL_VERSION_SEARCH.append(search_model_versions)
