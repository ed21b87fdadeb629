"""MLflow experiment routes: create, get, get-by-name, search, update, delete, restore, tags."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from strata.core.errors import InvalidInput, NotFound
from strata.core.principal import Permission
from strata.tracking.mlflow_api._common import (
    AJAX,
    add_route,
    json_response,
    key_values,
    max_results,
    opt_str,
    read_body,
    req_str,
    run_sync,
    str_list,
    tracking,
    view_type,
)
from strata.tracking.mlflow_api._convert import NOTE_TAG, experiment_json
from strata.tracking.models import MAX_DATASET_SEARCH_EXPERIMENTS, ViewType

router = APIRouter()


async def create_experiment(request: Request) -> Response:
    body = await read_body(request)
    name = req_str(body, "name")
    tags = dict(key_values(body, "tags"))
    exp = await run_sync(
        tracking(request).create_experiment,
        name,
        artifact_location=resolve_if_local(opt_str(body, "artifact_location") or None),
        tags=tags or None,
        description=tags.get(NOTE_TAG),
    )
    return json_response({"experiment_id": exp.experiment_id})


def resolve_if_local(location: str | None) -> str | None:
    """A relative local artifact location made absolute against the server's working
    directory, as MLflow's server resolves it (``mlflow.utils.uri.resolve_uri_if_local``):
    ``rel/dir`` becomes ``/cwd/rel/dir`` and ``file:rel/dir`` becomes ``file:///cwd/rel/dir``.
    Other schemes are kept. Strata serves only ``mlflow-artifacts:`` locations itself, so
    such a path is where the client writes, never the server."""
    if location is None:
        return None
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in ("", "file") or len(parts.scheme) == 1:  # 1 letter: a drive
        return location
    path = parts.path if parts.scheme else location
    if not path or path.startswith("/"):
        return location
    absolute = (Path.cwd() / path).as_posix()
    if not parts.scheme:
        return absolute
    return urllib.parse.urlunsplit(("file", "", absolute, parts.query, parts.fragment))


async def get_experiment(request: Request) -> Response:
    body = await read_body(request)
    exp = await run_sync(tracking(request).get_experiment, req_str(body, "experiment_id"))
    return json_response({"experiment": experiment_json(exp)})


async def get_experiment_by_name(request: Request) -> Response:
    body = await read_body(request)
    name = req_str(body, "experiment_name")
    try:
        exp = await run_sync(tracking(request).get_experiment_by_name, name)
    except NotFound as exc:  # worded as MLflow words it (_common.mlflow_message)
        raise NotFound(exc.message, details={"experiment_name": name}) from None
    return json_response({"experiment": experiment_json(exp)})


async def search_experiments(request: Request) -> Response:
    body = await read_body(request)
    page = await run_sync(
        tracking(request).search_experiments,
        filter=opt_str(body, "filter") or None,
        order_by=str_list(body, "order_by") or None,
        view=ViewType(view_type(body, "view_type")),
        max_results=max_results(body, 1000, 50_000, schema_limit=False),
        page_token=opt_str(body, "page_token") or None,
    )
    out: dict[str, object] = {"experiments": [experiment_json(e) for e in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return json_response(out)


async def update_experiment(request: Request) -> Response:
    body = await read_body(request)
    experiment_id = req_str(body, "experiment_id")
    await run_sync(
        tracking(request).update_experiment, experiment_id, name=req_str(body, "new_name")
    )
    return json_response()


async def delete_experiment(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(tracking(request).delete_experiment, req_str(body, "experiment_id"))
    return json_response()


async def restore_experiment(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(tracking(request).restore_experiment, req_str(body, "experiment_id"))
    return json_response()


async def set_experiment_tag(request: Request) -> Response:
    body = await read_body(request)
    experiment_id = req_str(body, "experiment_id")
    key = req_str(body, "key")
    value = opt_str(body, "value") or ""
    await run_sync(tracking(request).set_experiment_tag, experiment_id, key, value)
    return json_response()


async def delete_experiment_tag(request: Request) -> Response:
    body = await read_body(request)
    experiment_id = req_str(body, "experiment_id")
    key = req_str(body, "key")
    await run_sync(tracking(request).delete_experiment_tag, experiment_id, key)
    return json_response()


async def search_datasets(request: Request) -> Response:
    """The MLflow UI's dataset summaries of experiments (``/ajax-api`` only, as in MLflow)."""
    body = await read_body(request)
    ids = str_list(body, "experiment_ids")
    if not ids:
        raise InvalidInput(
            "SearchDatasets request must specify at least one experiment_id.",
            details={"field": "experiment_ids"},
        )
    if len(ids) > MAX_DATASET_SEARCH_EXPERIMENTS:
        raise InvalidInput(
            f"SearchDatasets request cannot specify more than {MAX_DATASET_SEARCH_EXPERIMENTS} "
            f"experiment_ids. Received {len(ids)} experiment_ids.",
            details={"field": "experiment_ids"},
        )
    found = await run_sync(tracking(request).search_datasets, ids)
    summaries = []
    for d in found:
        item = {"experiment_id": d.experiment_id, "name": d.name, "digest": d.digest}
        if d.context:
            item["context"] = d.context
        summaries.append(item)
    return json_response({"dataset_summaries": summaries} if summaries else {})


R, W = Permission.READ, Permission.WRITE
add_route(router, "/experiments/search-datasets", search_datasets, ["POST"], R, prefixes=(AJAX,))
add_route(router, "/experiments/create", create_experiment, ["POST"], W)
add_route(router, "/experiments/get", get_experiment, ["GET"], R)
add_route(router, "/experiments/get-by-name", get_experiment_by_name, ["GET"], R)
add_route(router, "/experiments/search", search_experiments, ["GET", "POST"], R)
add_route(router, "/experiments/update", update_experiment, ["POST"], W)
add_route(router, "/experiments/delete", delete_experiment, ["POST"], W)
add_route(router, "/experiments/restore", restore_experiment, ["POST"], W)
add_route(router, "/experiments/set-experiment-tag", set_experiment_tag, ["POST"], W)
add_route(router, "/experiments/delete-experiment-tag", delete_experiment_tag, ["POST"], W)
