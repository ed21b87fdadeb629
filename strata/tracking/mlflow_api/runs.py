"""MLflow run routes: lifecycle, logging (metric, param, tag, batch, inputs, outputs), search.

``log-batch`` is the hot path: the JSON is decoded by orjson and turned into Metric/Param/
RunTag tuples in one loop, with no per-field model objects. MLflow's batch limits apply
(1000 metrics, 100 params, 100 tags, 1000 items in all), and a batch that fails writes
nothing. Metrics that name a ``model_id`` (MLflow 3) are also recorded on that LoggedModel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from strata.core.errors import Conflict, InvalidInput, StrataError
from strata.core.principal import Permission, current
from strata.tracking import batch_write
from strata.tracking.batch_write import Batch
from strata.tracking.mlflow_api import words
from strata.tracking.mlflow_api._common import (
    Body,
    add_route,
    bad_value,
    json_response,
    key_values,
    max_results,
    missing,
    obj_list,
    opt_int,
    opt_str,
    read_body,
    req_str,
    run_sync,
    str_list,
    to_float,
    to_int,
    tracking,
    view_type,
)
from strata.tracking.mlflow_api._convert import (
    CONTEXT_TAG,
    PARENT_TAG,
    RUN_NAME_TAG,
    USER_TAG,
    run_info_json,
    run_json,
)
from strata.tracking.mlflow_api.hot import lean_write
from strata.tracking.mlflow_api.search_json import collector_paused, search_page_json
from strata.tracking.mlflow_api.search_words import run_search_words
from strata.tracking.models import (
    MAX_BATCH_METRICS,
    MAX_BATCH_PARAMS,
    MAX_BATCH_TAGS,
    MAX_BATCH_TOTAL,
    MAX_TAG_VALUE_LENGTH,
    DatasetInput,
    Metric,
    ModelDirection,
    ModelMetric,
    Param,
    RunTag,
    ViewType,
)
from strata.tracking.service import TrackingService

router = APIRouter()
MODEL_HISTORY_TAG = "mlflow.log-model.history"
_RUN_STATUSES = {"1": "RUNNING", "2": "SCHEDULED", "3": "FINISHED", "4": "FAILED", "5": "KILLED"}

#: A run metric that names a LoggedModel, and the point to record on that model
Linked = tuple[Metric, ModelMetric]


def _at(field: str, i: int, name: str) -> str:
    return f"{field}[{i}].{name}" if field else name


def _params(body: Body) -> list[Param]:
    """A batch's params, checked and cut as MLflow's server checks and cuts them."""
    pairs = key_values(body, "params")
    return [Param(*words.param(k, v, f"params[{i}]")) for i, (k, v) in enumerate(pairs)]


def _tags(body: Body) -> list[RunTag]:
    pairs = key_values(body, "tags")
    return [RunTag(*words.tag(k, v, f"tags[{i}]")) for i, (k, v) in enumerate(pairs)]


def parse_metrics(items: object, field: str) -> tuple[list[Metric], list[Linked]]:
    """MLflow ``Metric`` objects as Metric tuples, plus those that name a model.

    ``field`` names the list in error messages (``metrics[3].value``); ``""`` for the single
    metric of ``log-metric``.
    """
    if items is None:
        return [], []
    if not isinstance(items, list):
        raise bad_value(field, "a list of metrics", items)
    out: list[Metric] = []
    linked: list[Linked] = []
    for i, m in enumerate(items):
        if type(m) is not dict:
            raise bad_value(f"{field}[{i}]", "a metric object", m)
        key = m.get("key")
        if type(key) is not str or not key:
            where = _at(field, i, "key")
            raise missing(where) if key is None else bad_value(where, "a non-empty string", key)
        value = m.get("value")
        if type(value) is not float:
            if value is None:
                raise missing(_at(field, i, "value"))
            value = to_float(value, _at(field, i, "value"))
        ts = m.get("timestamp")
        if type(ts) is not int:
            if ts is None:
                raise missing(_at(field, i, "timestamp"))
            ts = to_int(ts, _at(field, i, "timestamp"))
        step = m.get("step", 0)
        if type(step) is not int:
            step = 0 if step is None else to_int(step, _at(field, i, "step"))
        words.metric_key(key, f"{field}[{i}]" if field else "")
        metric = Metric(key, value, ts, step)
        out.append(metric)
        model_id = m.get("model_id")
        if model_id:
            point = ModelMetric(
                model_id=str(model_id),
                key=key,
                value=value,
                timestamp=ts,
                step=step,
                dataset_name=m.get("dataset_name") or None,
                dataset_digest=m.get("dataset_digest") or None,
            )
            linked.append((metric, point))
    return out, linked


def _check_batch(metrics: int, params: int, tags: int) -> None:
    for what, n, limit in (
        ("metrics", metrics, MAX_BATCH_METRICS),
        ("params", params, MAX_BATCH_PARAMS),
        ("tags", tags, MAX_BATCH_TAGS),
        ("metrics, params, and tags", metrics + params + tags, MAX_BATCH_TOTAL),
    ):
        if n > limit:
            raise InvalidInput(
                f"A batch logging request can contain at most {limit} {what}. Got {n} "
                f"{what}. Please split up {what} across multiple requests and try again.",
                details={"field": what.split(",")[0]},
            )


def _check_lists(body: Body) -> None:
    """:func:`_check_batch` on the lists as sent, before any item is parsed: an over-limit
    batch of a million metrics is refused in one step, not after a million parses."""
    _check_batch(*(_length(body.get(field)) for field in ("metrics", "params", "tags")))


def _length(value: object) -> int:
    return len(value) if isinstance(value, list) else 0


def _new_points(svc: TrackingService, run_id: str, linked: list[Linked]) -> set[int]:
    """Ids of the linked metric objects already in the run's history: MLflow 3 re-logs a
    step's run metrics with the model id when it logs a model, which must not double them."""
    seen: set[int] = set()
    for key in {m.key for m, _ in linked}:
        have = {(p.step, p.timestamp, repr(p.value)) for p in svc.get_metric_history(run_id, key)}
        seen.update(
            id(m)
            for m, _ in linked
            if m.key == key and (m.step, m.timestamp, repr(m.value)) in have
        )
    return seen


def _log(
    svc: TrackingService,
    run_id: str,
    metrics: list[Metric],
    params: Sequence[Param] = (),
    tags: Sequence[RunTag] = (),
    linked: list[Linked] | None = None,
) -> None:
    """One batch into the run (atomic), then its model-linked points onto their models.

    Unknown models are refused before anything is written; the model points are a second
    transaction after the run's batch succeeded.
    """
    if linked:
        for model_id in {p.model_id for _, p in linked}:
            svc.get_logged_model(model_id)
        known = _new_points(svc, run_id, linked)
        metrics = [m for m in metrics if id(m) not in known]
    if metrics or params or tags:
        svc.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    if linked:
        svc.log_model_metrics([p.model_copy(update={"run_id": run_id}) for _, p in linked])


async def log_batch(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    _check_lists(body)
    metrics, linked = parse_metrics(body.get("metrics"), "metrics")
    params, tags = _params(body), _as_caller(_tags(body))
    try:
        await run_sync(_log, tracking(request), run_id, metrics, params, tags, linked)
    except Conflict as exc:
        raise _param_changed(exc, batch=True) from None
    return json_response()


async def log_metric(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    metrics, linked = parse_metrics([body], "")
    await run_sync(_log, tracking(request), run_id, metrics, linked=linked)
    return json_response()


async def log_param(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    param = Param(*words.param(req_str(body, "key"), opt_str(body, "value") or ""))
    try:
        await run_sync(tracking(request).log_batch, run_id, params=[param])
    except Conflict as exc:
        raise _param_changed(exc, batch=False) from None
    return json_response()


def _param_changed(exc: Conflict, *, batch: bool) -> StrataError:
    """A changed param as MLflow's server reports it: 400 INVALID_PARAMETER_VALUE, its words."""
    changed = exc.details.get("changed")
    run_id = exc.details.get("run_id")
    if not isinstance(changed, list) or not changed:
        return exc
    if batch:
        listed = [{k: c[k] for k in ("key", "old_value", "new_value")} for c in changed]
        words = (
            f"Changing param values is not allowed. Params were already logged='{listed}' "
            f"for run ID='{run_id}'."
        )
    else:
        c = changed[0]
        words = (
            f"Changing param values is not allowed. Param with key='{c['key']}' was already "
            f"logged with value='{c['old_value']}' for run ID='{run_id}'. Attempted logging new "
            f"value '{c['new_value']}'."
        )
    return InvalidInput(words, details={**exc.details, "field": "params"})


async def set_tag(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    tag = RunTag(*words.tag(req_str(body, "key"), opt_str(body, "value") or ""))
    await run_sync(tracking(request).log_batch, run_id, tags=_as_caller([tag]))
    return json_response()


async def delete_tag(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    await run_sync(tracking(request).delete_tag, run_id, req_str(body, "key"))
    return json_response()


def _dataset(item: Body, i: int) -> DatasetInput:
    ds = item.get("dataset")
    if not isinstance(ds, dict):
        raise missing(f"datasets[{i}].dataset")
    fields: dict[str, str | None] = {}
    for name in ("name", "digest", "source_type", "source", "schema", "profile"):
        value = ds.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(
                f"Invalid value for parameter 'datasets[{i}].dataset.{name}': expected a string",
                details={"field": f"datasets[{i}].dataset.{name}"},
            )
        fields[name] = value
    for name in ("name", "digest"):
        if not fields[name]:
            raise missing(f"datasets[{i}].dataset.{name}")
    tags = dict(key_values(item, "tags"))
    return DatasetInput(
        name=fields["name"] or "",
        digest=fields["digest"] or "",
        source_type=fields["source_type"] or "",
        source=fields["source"] or "",
        schema=fields["schema"],
        profile=fields["profile"],
        context=tags.pop(CONTEXT_TAG, None),
        tags=tags,
    )


def _model_ids(body: Body, field: str) -> list[tuple[str, int]]:
    out = []
    for i, item in enumerate(obj_list(body, field)):
        model_id = item.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise missing(f"{field}[{i}].model_id")
        step = item.get("step")
        out.append((model_id, 0 if step is None else to_int(step, f"{field}[{i}].step")))
    return out


async def log_inputs(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id")
    datasets = [_dataset(d, i) for i, d in enumerate(obj_list(body, "datasets"))]
    models = _model_ids(body, "models")
    svc = tracking(request)

    def work() -> None:
        if models:
            for model_id, _ in models:
                svc.get_logged_model(model_id)
        if datasets or not models:
            svc.log_inputs(run_id, datasets)
        if models:
            svc.log_run_models(run_id, ModelDirection.INPUT, models)

    await run_sync(work)
    return json_response()


async def log_outputs(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id")
    models = _model_ids(body, "models")
    if not models:
        raise missing("models")
    await run_sync(tracking(request).log_run_models, run_id, ModelDirection.OUTPUT, models)
    return json_response()


async def log_model(request: Request) -> Response:
    """MLflow 2's model record: appended to the run's ``mlflow.log-model.history`` tag."""
    body = await read_body(request)
    run_id = req_str(body, "run_id")
    raw = req_str(body, "model_json")
    try:
        model = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput(
            "Malformed model info: 'model_json' is not valid JSON", details={"field": "model_json"}
        ) from None
    need = {"artifact_path", "flavors", "utc_time_created", "run_id"}
    if not isinstance(model, dict) or need - set(model):
        raise InvalidInput(
            f"Model json is missing mandatory fields: {sorted(need - set(model or {}))}",
            details={"field": "model_json"},
        )
    svc = tracking(request)

    def work() -> None:
        try:
            history = json.loads(svc.get_run(run_id).tags.get(MODEL_HISTORY_TAG, "[]"))
        except ValueError:
            history = []
        history = [*(history if isinstance(history, list) else []), model]
        text = json.dumps(history)
        while len(text) > MAX_TAG_VALUE_LENGTH and len(history) > 1:
            history.pop(0)  # keep the newest records that fit the tag
            text = json.dumps(history)
        svc.log_batch(run_id, tags=[RunTag(MODEL_HISTORY_TAG, text)])

    await run_sync(work)
    return json_response()


def _status(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).upper()
    return _RUN_STATUSES.get(text, text)


async def create_run(request: Request) -> Response:
    body = await read_body(request)
    tags = dict(key_values(body, "tags"))
    user = run_user(opt_str(body, "user_id") or tags.get(USER_TAG))
    if USER_TAG in tags and current().principal.token_id is not None:
        # The tag the MLflow UI shows as the run's user says who owns it, not who the
        # client claimed to be (an editor's claim is ignored, see run_user).
        tags[USER_TAG] = user
    run = await run_sync(
        tracking(request).create_run,
        opt_str(body, "experiment_id") or "0",
        run_name=opt_str(body, "run_name") or tags.get(RUN_NAME_TAG) or None,
        start_time=opt_int(body, "start_time"),
        tags=tags,
        parent_run_id=tags.get(PARENT_TAG) or None,
        user=user,
    )
    return json_response({"run": run_json(run)})


def run_user(claimed: str | None) -> str:
    """Who a new run belongs to.

    An authenticated caller owns its runs; only an admin may name another user (importing
    history). With authentication off nobody is known, so the client's word stands, and a
    run with none gets MLflow's ``unknown`` -- never the server's OS user.
    """
    principal = current().principal
    if principal.token_id is not None:
        return claimed if claimed and principal.can(Permission.ADMIN) else principal.name
    return claimed or "unknown"


def _as_caller(tags: list[RunTag]) -> list[RunTag]:
    """``tags`` with an ``mlflow.user`` tag (the user the MLflow UI shows) set to the
    authenticated caller, unless the caller is an admin (importing history) or nobody is
    authenticated (the client's word stands, as on MLflow's server)."""
    principal = current().principal
    if principal.token_id is None or principal.can(Permission.ADMIN):
        return tags
    return [RunTag(t.key, principal.name) if t.key == USER_TAG else t for t in tags]


async def update_run(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    info = await run_sync(
        tracking(request).update_run,
        run_id,
        status=_status(body.get("status")),
        end_time=opt_int(body, "end_time"),
        run_name=opt_str(body, "run_name") or None,
    )
    return json_response({"run_info": run_info_json(info)})


async def delete_run(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(tracking(request).delete_run, req_str(body, "run_id"))
    return json_response()


async def restore_run(request: Request) -> Response:
    body = await read_body(request)
    await run_sync(tracking(request).restore_run, req_str(body, "run_id"))
    return json_response()


async def get_run(request: Request) -> Response:
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    svc = tracking(request)

    def work() -> dict[str, Any]:
        run = svc.get_run(run_id)
        return run_json(run, svc.list_run_models([run_id]).get(run_id))

    return json_response({"run": await run_sync(work)})


async def search_runs(request: Request) -> Response:
    """Written straight from the stored rows (``search_json``): no Run models per run."""
    body = await read_body(request)
    experiment_ids = str_list(body, "experiment_ids")
    limit = max_results(body, 1000, 50_000, schema_limit=True)
    svc = tracking(request)

    filter_string = opt_str(body, "filter") or None
    order_by = str_list(body, "order_by") or None
    page_token = opt_str(body, "page_token") or None

    def work() -> bytes:
        try:
            with collector_paused():
                records = svc.search_run_records(
                    experiment_ids,
                    filter_string,
                    view=ViewType(view_type(body, "run_view_type")),
                    max_results=limit,
                    order_by=order_by,
                    page_token=page_token,
                    params_json=True,
                )
                answer = search_page_json(records)
                del records  # freed while paused: the collector resumes with nothing new
        except InvalidInput as exc:  # refused: in MLflow's words where it refuses it too
            if exc.details.get("field") in ("filter", "order_by", "page_token"):
                exc.peer_words = run_search_words(filter_string, order_by, page_token)
            raise
        return answer

    return Response(await run_sync(work), media_type="application/json")


# -- the lean SQLite path (hot.py) of the four logging calls: the same parsing, then the
# batch the handler would write; None (a model-linked metric) leaves it to the handler.
def _hot_metric(body: Body) -> tuple[str, Batch] | None:
    run_id = req_str(body, "run_id", "run_uuid")
    metrics, linked = parse_metrics([body], "")
    return None if linked else (run_id, batch_write.prepare(metrics))


def _hot_batch(body: Body) -> tuple[str, Batch] | None:
    run_id = req_str(body, "run_id", "run_uuid")
    _check_lists(body)
    metrics, linked = parse_metrics(body.get("metrics"), "metrics")
    params, tags = _params(body), _tags(body)
    if linked or any(t.key == USER_TAG for t in tags):  # the regular route sets it (_as_caller)
        return None
    return run_id, batch_write.prepare(metrics, params, tags)


def _hot_param(body: Body) -> tuple[str, Batch]:
    run_id = req_str(body, "run_id", "run_uuid")
    param = Param(*words.param(req_str(body, "key"), opt_str(body, "value") or ""))
    return run_id, batch_write.prepare(params=[param])


def _hot_tag(body: Body) -> tuple[str, Batch] | None:
    run_id = req_str(body, "run_id", "run_uuid")
    tag = RunTag(*words.tag(req_str(body, "key"), opt_str(body, "value") or ""))
    if tag.key == USER_TAG:  # the regular route sets it (_as_caller)
        return None
    return run_id, batch_write.prepare(tags=[tag])


R, W = Permission.READ, Permission.WRITE
# Routes are matched one by one in this order: the calls a training loop makes come first.
add_route(router, "/runs/log-metric", log_metric, ["POST"], W, hot=lean_write(_hot_metric))
add_route(router, "/runs/log-batch", log_batch, ["POST"], W, hot=lean_write(_hot_batch))
add_route(router, "/runs/log-parameter", log_param, ["POST"], W, hot=lean_write(_hot_param))
add_route(router, "/runs/set-tag", set_tag, ["POST"], W, hot=lean_write(_hot_tag))
add_route(router, "/runs/create", create_run, ["POST"], W)
add_route(router, "/runs/update", update_run, ["POST"], W)
add_route(router, "/runs/get", get_run, ["GET"], R)
add_route(router, "/runs/search", search_runs, ["POST"], R)
add_route(router, "/runs/delete", delete_run, ["POST"], W)
add_route(router, "/runs/restore", restore_run, ["POST"], W)
add_route(router, "/runs/delete-tag", delete_tag, ["POST"], W)
add_route(router, "/runs/log-inputs", log_inputs, ["POST"], W)
add_route(router, "/runs/outputs", log_outputs, ["POST"], W)
add_route(router, "/runs/log-model", log_model, ["POST"], W)
