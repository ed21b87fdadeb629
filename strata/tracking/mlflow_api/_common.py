"""Shared plumbing of the MLflow-compatible routes: registration, request fields, errors.

Requests are decoded straight from JSON (orjson) or the query string into plain Python
values, validated field by field (a 400 names the field), and handed to the services in a
worker thread; responses are proto-JSON shaped dicts encoded by orjson. Errors use MLflow's
``{"error_code", "message"}`` body and the HTTP status the ``mlflow`` client expects for the
code, so its exceptions map the same way as against an MLflow server.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, ParamSpec, TypeVar

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from strata.core.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    StrataError,
    Unauthenticated,
    Unavailable,
)
from strata.core.principal import Permission
from strata.governance.routing import READ, WRITE, run_blocking, service
from strata.tracking.mlflow_api.hot import Hot
from strata.tracking.service import TrackingService

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
PREFIXES = (API, AJAX)
DEPENDENCIES = {Permission.READ: READ, Permission.WRITE: WRITE}

P = ParamSpec("P")
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
Body = dict[str, Any]

_EMPTY = b"{}"


# -- services ------------------------------------------------------------------------------
def tracking(request: Request) -> TrackingService:
    svc: TrackingService = service(request, "tracking", TrackingService)
    return svc


#: Blocking service calls run off the event loop the way every router runs them.
run_sync = run_blocking


# -- responses -----------------------------------------------------------------------------
def json_response(payload: Any = None, status: int = 200) -> Response:
    body = _EMPTY if payload is None else orjson.dumps(payload)
    return Response(body, status_code=status, media_type="application/json")


def num(value: float) -> float | str:
    """A double as proto JSON writes it: NaN and ±inf as the strings MLflow's server sends."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def mlflow_status(exc: StrataError) -> tuple[int, str]:
    """(HTTP status, MLflow error code) for a Strata error.

    MLflow's server answers a request that contradicts the current state (a changed param, a
    run in a deleted experiment) with 400 INVALID_PARAMETER_VALUE, so Strata's 409 Conflict
    is that here; RESOURCE_ALREADY_EXISTS is 400 as in MLflow.
    """
    if isinstance(exc, NotFound):
        return 404, "RESOURCE_DOES_NOT_EXIST"
    if isinstance(exc, AlreadyExists):
        return 400, "RESOURCE_ALREADY_EXISTS"
    if isinstance(exc, PayloadTooLarge):
        return 413, "INVALID_PARAMETER_VALUE"
    if isinstance(exc, InvalidInput):
        return 400, "INVALID_PARAMETER_VALUE"
    if isinstance(exc, Conflict):
        if exc.error_code == "DIGEST_MISMATCH":  # stored bytes no longer match their digest
            return 500, "DATA_LOSS"
        return 400, "INVALID_PARAMETER_VALUE"
    if isinstance(exc, PermissionDenied):
        return 403, "PERMISSION_DENIED"
    if isinstance(exc, Unauthenticated):
        return 401, "UNAUTHENTICATED"
    if isinstance(exc, Unavailable):
        return 503, "TEMPORARILY_UNAVAILABLE"
    return 500, "INTERNAL_ERROR"


#: MLflow 3's error classification, sent beside ``error_code`` (mlflow.error_classification:
#: the client-side tables its server uses): code → (sqlstate, error_class).
_CLASSIFICATION = {
    "INVALID_PARAMETER_VALUE": ("KAM00", "INVALID_PARAMETER_VALUE"),
    "RESOURCE_DOES_NOT_EXIST": ("KAM00", "RESOURCE_NOT_FOUND"),
    "RESOURCE_ALREADY_EXISTS": ("KAM00", "RESOURCE_ALREADY_EXISTS"),
    "PERMISSION_DENIED": ("KAM00", "PERMISSION_DENIED"),
    "INTERNAL_ERROR": ("XXM00", "CLIENT_INTERNAL_ERROR"),
    "TEMPORARILY_UNAVAILABLE": ("XXM00", "CLIENT_INTERNAL_ERROR"),
}

#: MLflow's own sentences for the errors tools search for (its server's wording, 3.x), by the
#: identifying detail a Strata error carries. Strata's REST keeps its own messages.
_NOT_FOUND_WORDS = {
    "run_id": "Run with id={} not found",
    "experiment_id": "No Experiment with id={} exists",
    "experiment_name": "Could not find experiment with name '{}'",
}


def mlflow_message(exc: StrataError, code: str) -> str:
    """The message as MLflow's server words it, where the error is one it words itself."""
    if exc.peer_words is not None:
        return exc.peer_words
    details = exc.details if isinstance(exc.details, dict) else {}
    if code == "RESOURCE_DOES_NOT_EXIST" and len(details) == 1:
        ((field, value),) = details.items()
        words = _NOT_FOUND_WORDS.get(field)
        if words is not None:
            return words.format(value)
    if isinstance(exc, Conflict) and {"run_id", "lifecycle_stage"} <= details.keys():
        return (
            f"The run {details['run_id']} must be in the 'active' state. Current state is "
            f"{details['lifecycle_stage']}."
        )
    return exc.message


def error_response(exc: StrataError) -> Response:
    status, code = mlflow_status(exc)
    body = {"error_code": code, "message": mlflow_message(exc, code)}
    classified = _CLASSIFICATION.get(code)
    if classified is not None:
        body["sqlstate"], body["error_class"] = classified
    return json_response(body, status)


def mlflow_errors(fn: Handler) -> Handler:
    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except StrataError as exc:
            return error_response(exc)

    return wrapper


def add_route(
    router: APIRouter,
    path: str,
    fn: Handler,
    methods: list[str],
    permission: Permission,
    *,
    prefixes: tuple[str, ...] = PREFIXES,
    body: dict[str, Any] | None = None,
    hot: Hot | None = None,
) -> None:
    """Register ``fn`` at ``path`` under each prefix (only the /api one in the OpenAPI doc).

    ``body`` is the JSON schema of the request body for the OpenAPI document; without it the
    tracking routes' own table (``schemas.BODIES``) is looked up. ``hot`` is the route's
    lean SQLite path (``hot.lean_write``), tried first by server/fastpath.py."""
    wrapped = mlflow_errors(fn)
    # Served by server/fastpath.py without FastAPI's routing and dependency machinery (same
    # permission check, same handler) where the path has no parameters.
    wrapped.lean = True  # type: ignore[attr-defined]
    wrapped.hot = hot  # type: ignore[attr-defined]
    # The handlers read the raw request, so FastAPI cannot see their path parameters:
    # document them, or the OpenAPI document names parameters it never defines.
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)(?::\w+)?}", path)
    ]
    for prefix in prefixes:
        for method in methods:  # one route per method: OpenAPI operation ids stay unique
            router.add_api_route(
                prefix + path,
                wrapped,
                methods=[method],
                dependencies=DEPENDENCIES[permission],
                include_in_schema=prefix.startswith("/api/"),
                name=f"mlflow_{fn.__name__}_{prefix.split('/')[1]}_{method.lower()}",
                tags=["mlflow"],
                openapi_extra=_openapi(method, path, params, body),
            )


def _openapi(
    method: str, path: str, params: list[dict[str, Any]], schema: dict[str, Any] | None
) -> dict[str, Any] | None:
    from strata.tracking.mlflow_api.schemas import as_request_body, request_body

    extra: dict[str, Any] = {"parameters": params} if params else {}
    body = request_body(method, path) if schema is None else as_request_body(schema)
    if body is not None and method in ("POST", "PATCH", "PUT"):
        extra["requestBody"] = body
    return extra or None


# -- requests ------------------------------------------------------------------------------
async def read_body(request: Request) -> Body:
    """Query parameters for GET/DELETE (repeated names become lists), else the JSON object."""
    if request.method in ("GET", "DELETE"):
        out: Body = {}
        for key, value in request.query_params.multi_items():
            have = out.get(key)
            if have is None:
                out[key] = value
            elif isinstance(have, list):
                have.append(value)
            else:
                out[key] = [have, value]
        return out
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(
            f"request body must be a JSON object, got {type(data).__name__}",
            details={"field": "body"},
        )
    return data


_API_DOCS = " See the API docs for more information about request parameters."


def bad_value(field: str, expected: str, got: object) -> InvalidInput:
    """A value of the wrong type, in MLflow's words (``expected`` goes in the details)."""
    shown = orjson.dumps(got, option=orjson.OPT_SORT_KEYS, default=str).decode()
    if len(shown) > 200:
        shown = shown[:197] + "..."
    return InvalidInput(
        f"Invalid value {shown} for parameter '{field}' supplied:  Hint: Value was of type "
        f"'{type(got).__name__}'.{_API_DOCS}",
        details={"field": field, "expected": expected},
    )


def missing(field: str) -> InvalidInput:
    return InvalidInput(
        f"Missing value for required parameter '{field}'.{_API_DOCS}", details={"field": field}
    )


def max_results(body: Body, default: int, limit: int, *, schema_limit: bool) -> int:
    """``max_results`` checked as MLflow checks it: positive, and at most ``limit``.

    Where MLflow's request schema holds the limit (``schema_limit``: runs/search), a value
    over it gets the schema's type-hint sentence; elsewhere its store's own sentence.
    """
    value = opt_int(body, "max_results")
    if value is None:
        return default
    words = f"Invalid value {value} for parameter 'max_results' supplied. It must be "
    if value <= 0:
        raise InvalidInput(words + "a positive integer", details={"field": "max_results"})
    if value > limit:
        if schema_limit:
            raise bad_value("max_results", f"at most {limit}", value)
        raise InvalidInput(words + f"at most {limit}", details={"field": "max_results"})
    return value


def opt_str(body: Body, field: str) -> str | None:
    value = body.get(field)
    if value is None or isinstance(value, str):
        return value
    raise bad_value(field, "a string", value)


def req_str(body: Body, field: str, *aliases: str) -> str:
    """A required, non-empty string (``aliases`` are older names, e.g. ``run_uuid``)."""
    value = opt_str(body, field)
    for alias in aliases:
        value = value or opt_str(body, alias)
    if not value:
        raise missing(field)
    return value


_INT64 = (-(2**63), 2**63 - 1)


def to_int(value: object, field: str) -> int:
    """An integer as MLflow's proto fields take it (int64: a bigger number is refused here,
    not left to overflow the database)."""
    out: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    elif isinstance(value, str):
        with suppress(ValueError):
            out = int(value)
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    if out is None or not _INT64[0] <= out <= _INT64[1]:
        raise bad_value(field, "a 64-bit integer", value)
    return out


def opt_int(body: Body, field: str) -> int | None:
    value = body.get(field)
    return None if value is None else to_int(value, field)


def to_float(value: object, field: str) -> float:
    """Numbers, or the proto JSON strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with suppress(ValueError):
            return float(value)
    raise bad_value(field, "a number (or 'NaN', 'Infinity', '-Infinity')", value)


def str_list(body: Body, field: str) -> list[str]:
    value = body.get(field)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise bad_value(field, "a list of strings", value)


def obj_list(body: Body, field: str) -> list[Body]:
    value = body.get(field)
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise bad_value(field, "a list of objects", value)


def key_values(body: Body, field: str) -> list[tuple[str, str]]:
    """``[{"key": k, "value": v}, ...]`` as pairs; a missing value is ``""`` as in proto."""
    out = []
    for i, item in enumerate(obj_list(body, field)):
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise (
                missing(f"{field}[{i}].key")
                if key is None
                else bad_value(f"{field}[{i}].key", "a non-empty string", key)
            )
        value = item.get("value", "")
        if not isinstance(value, str):
            raise bad_value(f"{field}[{i}].value", "a string", value)
        out.append((key, value))
    return out


_VIEW_TYPES = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}


def view_type(body: Body, field: str) -> str:
    """A ViewType name from the enum name or number; ACTIVE_ONLY when absent."""
    value = body.get(field)
    if value is None:
        return "ACTIVE_ONLY"
    text = str(value).upper()
    text = _VIEW_TYPES.get(text, text)
    if text not in _VIEW_TYPES.values():
        raise bad_value(field, "one of ACTIVE_ONLY, DELETED_ONLY, ALL", value)
    return text
