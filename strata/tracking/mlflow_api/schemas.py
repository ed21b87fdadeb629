"""The request bodies of the MLflow routes, for the OpenAPI document.

The handlers read the raw JSON (MLflow clients send loosely typed bodies: numbers as
strings, extra fields), so FastAPI cannot infer the bodies; :func:`_common.add_route` adds
these to each POST operation. They follow MLflow's REST reference and let fuzzers and
generated clients build requests that reach the handlers.
"""

from __future__ import annotations

from typing import Any

_S: dict[str, Any] = {"type": "string"}
_I: dict[str, Any] = {"type": "integer"}
_N: dict[str, Any] = {"type": "number"}
_KV: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "properties": {"key": _S, "value": _S}, "required": ["key"]},
}
_METRIC: dict[str, Any] = {
    "type": "object",
    "properties": {"key": _S, "value": _N, "timestamp": _I, "step": _I},
    "required": ["key", "value", "timestamp"],
}
_SEARCH: dict[str, Any] = {
    "filter": _S,
    "max_results": _I,
    "page_token": _S,
    "order_by": {"type": "array", "items": _S},
}


def _obj(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


RUN = {"run_id": _S}
EXP = {"experiment_id": _S}

#: "METHOD /route" (without the /api/2.0/mlflow prefix) → JSON schema of its body.
BODIES: dict[str, dict[str, Any]] = {
    "POST /experiments/create": _obj(["name"], name=_S, artifact_location=_S, tags=_KV),
    "POST /experiments/search": _obj([], **_SEARCH, view_type=_S),
    "POST /experiments/update": _obj(["experiment_id", "new_name"], **EXP, new_name=_S),
    "POST /experiments/delete": _obj(["experiment_id"], **EXP),
    "POST /experiments/restore": _obj(["experiment_id"], **EXP),
    "POST /experiments/set-experiment-tag": _obj(["experiment_id", "key"], **EXP, key=_S, value=_S),
    "POST /experiments/delete-experiment-tag": _obj(["experiment_id", "key"], **EXP, key=_S),
    "POST /logged-models": _obj(
        ["experiment_id"], **EXP, name=_S, source_run_id=_S, model_type=_S, params=_KV, tags=_KV
    ),
    "POST /logged-models/search": _obj(
        [],
        experiment_ids={"type": "array", "items": _S},
        filter=_S,
        max_results=_I,
        page_token=_S,
    ),
    "POST /logged-models/{model_id}/params": _obj(["params"], params=_KV),
    "POST /runs/log-metric": _obj(
        ["run_id", "key", "value", "timestamp"], **RUN, key=_S, value=_N, timestamp=_I, step=_I
    ),
    "POST /runs/log-batch": _obj(
        ["run_id"], **RUN, metrics={"type": "array", "items": _METRIC}, params=_KV, tags=_KV
    ),
    "POST /runs/log-parameter": _obj(["run_id", "key", "value"], **RUN, key=_S, value=_S),
    "POST /runs/set-tag": _obj(["run_id", "key", "value"], **RUN, key=_S, value=_S),
    "POST /runs/create": _obj([], **EXP, run_name=_S, start_time=_I, user_id=_S, tags=_KV),
    "POST /runs/update": _obj(["run_id"], **RUN, status=_S, end_time=_I, run_name=_S),
    "POST /runs/search": _obj(
        [], experiment_ids={"type": "array", "items": _S}, **_SEARCH, run_view_type=_S
    ),
    "POST /runs/delete": _obj(["run_id"], **RUN),
    "POST /runs/restore": _obj(["run_id"], **RUN),
    "POST /runs/delete-tag": _obj(["run_id", "key"], **RUN, key=_S),
    "POST /runs/log-inputs": _obj(["run_id"], **RUN, datasets={"type": "array", "items": _obj([])}),
    "POST /runs/outputs": _obj(["run_id"], **RUN, models={"type": "array", "items": _obj([])}),
    "POST /runs/log-model": _obj(["run_id", "model_json"], **RUN, model_json=_S),
    "PATCH /logged-models/{model_id}": _obj(["status"], status=_S),
    "PATCH /logged-models/{model_id}/tags": _obj(["tags"], tags=_KV),
}


def request_body(method: str, path: str) -> dict[str, Any] | None:
    """The OpenAPI ``requestBody`` of the route, or None."""
    schema = BODIES.get(f"{method} {path}")
    return None if schema is None else as_request_body(schema)


def as_request_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def body_schema(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    """A JSON object schema: for other layers' MLflow routes (``add_route(..., body=)``)."""
    return _obj(required, **props)


STRING, INTEGER, KEY_VALUES = _S, _I, _KV
