"""MLflow 3 LoggedModel routes (``/api/2.0/mlflow/logged-models...``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from strata.core.errors import InvalidInput, NotFound
from strata.core.paths import safe_relpath
from strata.core.principal import Permission
from strata.tracking.mlflow_api._common import (
    add_route,
    json_response,
    key_values,
    missing,
    obj_list,
    opt_int,
    opt_str,
    read_body,
    req_str,
    run_sync,
    str_list,
    tracking,
)
from strata.tracking.mlflow_api._convert import logged_model_json
from strata.tracking.mlflow_api.artifacts import file_entries, stream_file
from strata.tracking.models import DatasetRef, LoggedModelStatus, ModelOrder

router = APIRouter()
_STATUSES = {
    "1": LoggedModelStatus.PENDING,
    "2": LoggedModelStatus.READY,
    "3": LoggedModelStatus.UPLOAD_FAILED,
}


def _status(value: object) -> LoggedModelStatus:
    text = str(value).upper().removeprefix("LOGGED_MODEL_")
    status = _STATUSES.get(text)
    if status is None:
        try:
            status = LoggedModelStatus(text)
        except ValueError:
            raise InvalidInput(
                f"Invalid value {value!r} for parameter 'status': expected one of "
                "LOGGED_MODEL_PENDING, LOGGED_MODEL_READY, LOGGED_MODEL_UPLOAD_FAILED",
                details={"field": "status"},
            ) from None
    return status


def _model_id(request: Request) -> str:
    model_id: str = request.path_params["model_id"]
    return model_id


async def create_logged_model(request: Request) -> Response:
    body = await read_body(request)
    model = await run_sync(
        tracking(request).create_logged_model,
        req_str(body, "experiment_id"),
        name=opt_str(body, "name") or None,
        source_run_id=opt_str(body, "source_run_id") or None,
        model_type=opt_str(body, "model_type") or None,
        params=dict(key_values(body, "params")),
        tags=dict(key_values(body, "tags")),
    )
    return json_response({"model": logged_model_json(model)})


async def get_logged_model(request: Request) -> Response:
    body = await read_body(request)
    allow_deleted = str(body.get("allow_deleted", "false")).lower() == "true"
    model = await run_sync(
        tracking(request).get_logged_model, _model_id(request), allow_deleted=allow_deleted
    )
    return json_response({"model": logged_model_json(model)})


async def finalize_logged_model(request: Request) -> Response:
    body = await read_body(request)
    if body.get("status") is None:
        raise missing("status")
    model = await run_sync(
        tracking(request).finalize_logged_model, _model_id(request), _status(body["status"])
    )
    return json_response({"model": logged_model_json(model)})


async def delete_logged_model(request: Request) -> Response:
    await run_sync(tracking(request).delete_logged_model, _model_id(request))
    return json_response()


async def set_logged_model_tags(request: Request) -> Response:
    body = await read_body(request)
    tags = dict(key_values(body, "tags"))
    await run_sync(tracking(request).set_logged_model_tags, _model_id(request), tags)
    return json_response()


async def delete_logged_model_tag(request: Request) -> Response:
    key: str = request.path_params["tag_key"]
    await run_sync(tracking(request).delete_logged_model_tag, _model_id(request), key)
    return json_response()


async def log_logged_model_params(request: Request) -> Response:
    body = await read_body(request)
    params = dict(key_values(body, "params"))
    await run_sync(tracking(request).log_model_params, _model_id(request), params)
    return json_response()


async def search_logged_models(request: Request) -> Response:
    body = await read_body(request)
    experiment_ids = str_list(body, "experiment_ids")
    if not experiment_ids:
        raise missing("experiment_ids")
    order: list[ModelOrder] = []
    for i, item in enumerate(obj_list(body, "order_by")):
        field = item.get("field_name")
        if not isinstance(field, str) or not field:
            raise missing(f"order_by[{i}].field_name")
        order.append(
            ModelOrder(
                field,
                item.get("ascending", True) is not False,
                opt_str(item, "dataset_name") or None,
                opt_str(item, "dataset_digest") or None,
            )
        )
    datasets = []
    for i, item in enumerate(obj_list(body, "datasets")):
        name = opt_str(item, "dataset_name")
        if not name:
            raise missing(f"datasets[{i}].dataset_name")
        datasets.append(DatasetRef(name, opt_str(item, "dataset_digest") or None))
    page = await run_sync(
        tracking(request).search_logged_models,
        experiment_ids,
        filter=opt_str(body, "filter") or None,
        order_by=order,
        max_results=opt_int(body, "max_results") or 100,
        page_token=opt_str(body, "page_token") or None,
        datasets=datasets,
    )
    out: dict[str, Any] = {"models": [logged_model_json(m) for m in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return json_response(out)


async def list_logged_model_artifacts(request: Request) -> Response:
    body = await read_body(request)
    sub = (opt_str(body, "artifact_directory_path") or "").strip("/")
    sub = safe_relpath(sub) if sub else ""
    svc, model_id = tracking(request), _model_id(request)

    def work() -> tuple[str, list[dict[str, Any]]]:
        uri = svc.get_logged_model(model_id).artifact_location
        try:
            files = svc.list_model_artifacts(model_id, sub)
        except (NotFound, InvalidInput):  # a missing directory or a file lists as empty
            files = []
        return uri, file_entries(files)

    uri, entries = await run_sync(work)
    out: dict[str, Any] = {"root_uri": uri}
    if entries:
        out["files"] = entries
    return json_response(out)


async def get_logged_model_artifact(request: Request) -> Response:
    body = await read_body(request)
    raw = opt_str(body, "artifact_file_path")
    if not raw:
        raise missing("artifact_file_path")
    opened = await run_sync(
        tracking(request).open_model_artifact, _model_id(request), safe_relpath(raw)
    )
    return stream_file(opened)


R, W = Permission.READ, Permission.WRITE
M = "/logged-models/{model_id}"
add_route(router, "/logged-models", create_logged_model, ["POST"], W)
add_route(router, "/logged-models/search", search_logged_models, ["POST"], R)
add_route(router, M, get_logged_model, ["GET"], R)
add_route(router, M, finalize_logged_model, ["PATCH"], W)
add_route(router, M, delete_logged_model, ["DELETE"], W)
add_route(router, M + "/tags", set_logged_model_tags, ["PATCH"], W)
add_route(router, M + "/tags/{tag_key:path}", delete_logged_model_tag, ["DELETE"], W)
add_route(router, M + "/params", log_logged_model_params, ["POST"], W)
add_route(router, M + "/artifacts/directories", list_logged_model_artifacts, ["GET"], R)
add_route(router, M + "/artifacts/files", get_logged_model_artifact, ["GET"], R)
