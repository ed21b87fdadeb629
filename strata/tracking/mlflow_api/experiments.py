"""MLflow experiment routes: create, get, get-by-name, search, update, delete, restore, tags."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from strata.core.errors import AlreadyExists, InvalidInput, NotFound
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
from strata.tracking.mlflow_api.search_words import experiment_search_words, worded
from strata.tracking.models import MAX_DATASET_SEARCH_EXPERIMENTS, ViewType

router = APIRouter()


async def create_experiment(request: Request) -> Response:
    body = await read_body(request)
    name = req_str(body, "name")
    tags = dict(key_values(body, "tags"))
    location = opt_str(body, "artifact_location") or None
    if location is not None:
        check_location(location)
    try:
        exp = await run_sync(
            tracking(request).create_experiment,
            name,
            artifact_location=resolve_if_local(location),
            tags=tags or None,
            description=tags.get(NOTE_TAG),
        )
    except AlreadyExists as exc:  # MLflow's words (it adds its database's error after them)
        raise AlreadyExists(
            f"Experiment(name={name}) already exists.", details=exc.details
        ) from None
    return json_response({"experiment_id": exp.experiment_id})


#: Schemes whose URIs name a host to connect to (MLflow's
#: ``store.artifact.host_policy.HOST_ADDRESSED_ARTIFACT_SCHEMES``); ``mlflow-artifacts:``
#: without a host means this server.
HOST_ADDRESSED = frozenset(
    {"ftp", "sftp", "hdfs", "viewfs", "http", "https", "mlflow-artifacts", "r2", "b2", "abfss"}
)
ALLOWED_HOST_SCHEMES_ENV = "MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES"
MAX_LOCATION_LENGTH = 2048
"""MLflow's ``MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH`` default."""


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, details={"field": "artifact_location"})


def check_location(location: str) -> None:
    """Refuse an experiment's ``artifact_location`` where MLflow's server refuses it, in its
    words (``server.handlers._validate_storage_location_uri``): a fragment or params, a
    query that climbs (``..``, however often percent-encoded), a scheme naming another host
    (unless ``MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES`` allows it), a ``runs:`` URI,
    more than 2,048 characters, a ``file:`` URI naming a remote host."""
    parsed = urllib.parse.urlparse(location)
    if parsed.fragment or parsed.params:
        raise _bad("'artifact_location' URL can't include fragments or params.")
    query = parsed.query
    for _ in range(10):  # MLflow decodes until the query stops changing
        decoded = urllib.parse.urlunparse(urllib.parse.urlparse(urllib.parse.unquote(query)))
        if decoded == query:
            break
        query = decoded
    if ".." in query:
        raise _bad("Invalid query string")
    scheme = parsed.scheme
    allowed = {s.strip().lower() for s in os.environ.get(ALLOWED_HOST_SCHEMES_ENV, "").split(",")}
    this_server = scheme == "mlflow-artifacts" and not parsed.netloc
    if scheme in HOST_ADDRESSED and scheme not in allowed and not this_server:
        raise _bad(
            f"'artifact_location' cannot use the '{scheme}' scheme: the '{scheme}' scheme "
            "addresses a host other than the tracking server's configured artifact "
            "storage, so the server would connect to the host named in the URI. Set the "
            f"{ALLOWED_HOST_SCHEMES_ENV} environment variable on the server to allow it."
        )
    if location.startswith("runs:"):
        raise _bad(f"Artifact location cannot be a runs:/ URI. Given: '{location}'")
    if len(location) > MAX_LOCATION_LENGTH:
        raise _bad(
            "Invalid artifact path length. The length of the artifact path cannot be greater "
            f"than {MAX_LOCATION_LENGTH} characters. To configure this limit, please set the "
            "MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH environment variable."
        )
    host = parsed.hostname
    if (
        scheme == "file"
        and host
        and not (host == "." or host.startswith(("localhost", "127.0.0.1")))
    ):
        raise _bad(
            f"{location} is not a valid remote uri. For remote access on windows, please "
            "consider using a different scheme such as SMB (e.g. smb://<hostname>/<path>)."
        )


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
    # Percent-escapes decoded, as MLflow's url2pathname decodes them.
    path = urllib.parse.unquote(parts.path if parts.scheme else location)
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
    filter_string = opt_str(body, "filter") or None
    order_by = str_list(body, "order_by") or None
    page_token = opt_str(body, "page_token") or None
    page = await worded(
        lambda: experiment_search_words(filter_string, order_by, page_token),
        ("filter", "order_by", "page_token"),
        tracking(request).search_experiments,
        filter=filter_string,
        order_by=order_by,
        view=ViewType(view_type(body, "view_type")),
        max_results=max_results(body, 1000, 50_000, schema_limit=False),
        page_token=page_token,
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
