"""``runs/search`` written straight from the rows (``search_json``) against the route it
replaced: the Run models of ``search_runs`` rendered run by run with ``run_json`` (kept below
verbatim as :func:`old_search_runs`). A wide matrix of searches -- every filter entity and
operator, orderings with ties and missing values, pages, views, deleted runs and experiments,
NaN/±inf, dataset inputs, model links, system tags, errors -- must give the same status and
the same bytes, on SQLite and PostgreSQL (``embedded`` runs on both).
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from conftest import LiveServer
from starlette.requests import Request
from starlette.responses import Response

from strata.client import Client
from strata.tracking.mlflow_api import runs as runs_api
from strata.tracking.mlflow_api._common import (
    json_response,
    max_results,
    mlflow_errors,
    opt_str,
    read_body,
    run_sync,
    str_list,
    tracking,
    view_type,
)
from strata.tracking.mlflow_api._convert import run_json
from strata.tracking.mlflow_api.search_json import search_page
from strata.tracking.mlflow_api.search_words import run_search_words
from strata.tracking.models import (
    DatasetInput,
    Metric,
    ModelDirection,
    Param,
    RunTag,
    ViewType,
)
from strata.tracking.service import TrackingService


async def old_search_runs(request: Request) -> Response:
    """The route as it was: Run models, then ``run_json`` for each."""
    body = await read_body(request)
    experiment_ids = str_list(body, "experiment_ids")
    limit = max_results(body, 1000, 50_000, schema_limit=True)
    svc = tracking(request)

    def work() -> dict[str, Any]:
        page = svc.search_runs(
            experiment_ids,
            opt_str(body, "filter") or None,
            view=ViewType(view_type(body, "run_view_type")),
            max_results=limit,
            order_by=str_list(body, "order_by") or None,
            page_token=opt_str(body, "page_token") or None,
        )
        models = svc.list_run_models([r.info.run_id for r in page.items])
        out: dict[str, Any] = {}
        if page.items:
            out["runs"] = [run_json(r, models.get(r.info.run_id)) for r in page.items]
        if page.next_page_token:
            out["next_page_token"] = page.next_page_token
        return out

    return json_response(await run_sync(work))


def call(client: Client, handler: Any, body: Any) -> tuple[int, bytes]:
    """``handler``'s answer to a POST of ``body`` (bytes sent as they are)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    app = SimpleNamespace(state=SimpleNamespace(client=client))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def go() -> Response:
        scope = {"type": "http", "method": "POST", "headers": [], "query_string": b"", "app": app}
        return await mlflow_errors(handler)(Request(scope, receive))

    response = asyncio.run(go())
    return response.status_code, bytes(response.body)


def populate(t: TrackingService) -> dict[str, Any]:
    """Runs covering what a search answer can hold; returns the ids the searches name."""
    exp = t.create_experiment("parity", tags={"team": "ml"}).experiment_id
    other = t.create_experiment("parity-other").experiment_id
    gone = t.create_experiment("parity-deleted").experiment_id
    parent = t.create_run(exp, run_name="parent", start_time=1_000).info.run_id
    ids = []
    specials = [math.nan, math.inf, -math.inf, -0.0, 1e-300, 1e300]
    for i in range(24):
        tags = {"team": ["a", "b", 'ü "q" \\ \n\t\x01'][i % 3]}
        if i % 5 == 0:
            tags["mlflow.runName"] = f"stored-name-{i}"  # run name wins, kept in place
        if i % 7 == 0:
            tags["mlflow.parentRunId"] = parent  # stored parent tag: not repeated
        run = t.create_run(
            exp if i % 4 else other,
            run_name=f"r{i:02d}",
            start_time=2_000 + (i // 3),  # ties in start time: broken by run id
            tags=tags,
            parent_run_id=parent if i % 3 == 0 else None,
        ).info.run_id
        ids.append(run)
        metrics = [Metric("acc", (i % 6) / 5, 5_000 + i, i % 4)]  # ties in acc
        if i % 2:
            metrics.append(Metric("loss", specials[(i // 2) % len(specials)], 6_000, 1))
        if i % 3 == 1:
            metrics.append(Metric("big", float(2**60 + i), 7_000, 2**40))
        params = [Param("lr", ["0.01", "0.1", "0.001"][i % 3]), Param("i", str(i))]
        if i % 4 != 3:
            params.append(Param("model", ["lgbm", "xgb", "LGBM-x", "rf"][i % 4]))
        if i % 5 == 2:  # what a JSON writer must escape (SQLite writes the params' JSON)
            params.append(Param("a note", 'q"uo\\te\n\ttab\x01\x1f é漢😀 </x>'))
        t.log_batch(run, metrics=metrics, params=params, tags=[RunTag("k", f"v{i % 2}")])
        if i % 2 == 0:
            t.end_run(run, "FINISHED" if i % 4 else "FAILED")
    t.log_inputs(
        ids[1],
        [
            DatasetInput(
                name="train-ds",
                digest="d1",
                source_type="local",
                source="/x",
                context="train",
                tags={"z": "1", "a": "2"},
            ),
            DatasetInput(name="eval-ds", digest="d2", schema='{"cols": []}', profile='{"n": 3}'),
        ],
    )
    t.log_inputs(
        ids[2],
        [
            DatasetInput(
                name="train-ds",
                digest="d1",
                context="eval",
                tags={"mlflow.data.context": "explicit"},
            )
        ],
    )
    model_a = t.create_logged_model(exp, name="model-a").model_id
    model_b = t.create_logged_model(exp, name="model-b").model_id
    t.log_run_models(ids[1], ModelDirection.OUTPUT, [(model_b, 3), (model_a, 7)])
    t.log_run_models(ids[1], ModelDirection.INPUT, [(model_a, 0)])
    t.log_run_models(ids[5], ModelDirection.INPUT, [(model_b, 0)])
    t.delete_run(ids[9])
    t.delete_run(ids[10])
    doomed = t.create_run(gone, run_name="in-deleted-exp").info.run_id
    t.log_batch(doomed, params=[Param("lr", "0.01")])
    t.delete_experiment(gone)
    t.delete_tag(ids[3], "k")
    return {"exp": exp, "other": other, "gone": gone, "parent": parent, "ids": ids}


FILTERS = [
    None,
    "",
    "metrics.acc > 0.5",
    "metrics.acc >= 0.4 and params.lr = '0.01'",
    "metrics.acc <= 0.2",
    "metrics.acc != 0.4",
    "metrics.loss > 0",
    "metrics.loss < 0",
    "metrics.loss = 0",
    "params.lr != '0.1'",
    "params.model LIKE 'lg%'",
    "params.model ILIKE 'LG%'",
    "params.model NOT LIKE 'lg%'",
    "params.model NOT ILIKE '%X%'",
    "params.model IN ('xgb', 'rf')",
    "params.model NOT IN ('xgb')",
    "params.model IS NULL",
    "params.model IS NOT NULL",
    "tags.team = 'a'",
    "tags.`team` LIKE '%q%'",
    "tags.k = 'v1'",
    "tags.k IS NULL",
    "tags.mlflow.runName = 'r03'",
    "tags.\"mlflow.runName\" LIKE 'r1%'",
    "tags.mlflow.parentRunId = '{parent}'",
    "attributes.status = 'FINISHED'",
    "attributes.status IN ('FAILED', 'RUNNING')",
    "attributes.run_name LIKE 'r1%'",
    "run_name = 'r04'",
    "attributes.start_time > 2003",
    "attributes.end_time IS NULL",
    "attributes.run_id IN ('{r0}', '{r1}')",
    "attributes.parent_run_id = '{parent}'",
    "attributes.lifecycle_stage = 'deleted'",
    "datasets.name = 'train-ds'",
    "datasets.context = 'train'",
    "datasets.digest IN ('d2')",
    "params.lr = '0.01' and tags.team = 'b' and metrics.acc > 0",
]
ORDERS = [
    None,
    ["metrics.acc DESC"],
    ["metrics.acc ASC", "params.lr DESC"],
    ["metrics.loss"],
    ["metrics.loss DESC"],
    ["params.model"],
    ["tags.team DESC", "attributes.run_name"],
    ["attributes.start_time ASC"],
    ["attributes.end_time DESC"],
    ["run_name"],
]
VIEWS = [None, "ACTIVE_ONLY", "DELETED_ONLY", "ALL", 3]
ERRORS = [
    {"experiment_ids": ["{exp}"], "filter": "metrics.acc >>> 1"},
    {"experiment_ids": ["{exp}"], "filter": "metrics.acc > 1 or params.lr = '1'"},
    {"experiment_ids": ["{exp}"], "filter": "metrics.acc LIKE 'x'"},
    {"experiment_ids": ["{exp}"], "filter": "params.lr > '1'"},
    {"experiment_ids": ["{exp}"], "filter": "attributes.nope = 'x'"},
    {"experiment_ids": ["{exp}"], "order_by": ["datasets.name"]},
    {"experiment_ids": ["{exp}"], "order_by": ["metrics.acc sideways"]},
    {"experiment_ids": ["no-such-experiment"]},
    {"experiment_ids": ["{exp}"], "max_results": 0},
    {"experiment_ids": ["{exp}"], "max_results": 50_001},
    {"experiment_ids": ["{exp}"], "max_results": "ten"},
    {"experiment_ids": ["{exp}"], "page_token": "not-a-token"},
    {"experiment_ids": ["{exp}"], "run_view_type": "SOME"},
    {"experiment_ids": "{exp}", "filter": 3},
    {"experiment_ids": [1, 2]},
    {},
]


def _fill(value: Any, names: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(r0=names["ids"][0], r1=names["ids"][1], **names)
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def bodies(names: dict[str, Any]) -> list[dict[str, Any]]:
    """The matrix: every filter with every order, then views, experiments and page sizes."""
    out: list[dict[str, Any]] = []
    exps = [names["exp"], names["other"]]
    for f in FILTERS:
        for order in ORDERS:
            out.append({"experiment_ids": exps, "filter": f, "order_by": order})
    for view in VIEWS:
        for ids in ([names["exp"]], [names["gone"]], [*exps, names["gone"]], ["parity"]):
            out.append({"experiment_ids": ids, "run_view_type": view, "filter": "", "x": 1})
    out.append({"experiment_ids": names["exp"], "order_by": "metrics.acc DESC"})  # one string
    return [_fill(b, names) for b in out]


def pages(client: Client, handler: Any, body: dict[str, Any], size: int) -> list[bytes]:
    """Every page of ``body`` at ``size`` runs a page, following the tokens."""
    out = []
    token = None
    while True:
        status, raw = call(client, handler, {**body, "max_results": size, "page_token": token})
        assert status == 200, raw
        out.append(raw)
        token = orjson.loads(raw).get("next_page_token")
        if not token:
            return out


@pytest.fixture
def searched(embedded: Client) -> tuple[Client, dict[str, Any]]:
    return embedded, populate(embedded.tracking)


def test_every_search_answers_as_the_route_it_replaced(
    searched: tuple[Client, dict[str, Any]],
) -> None:
    client, names = searched
    nonempty = 0
    for body in bodies(names):
        old, new = call(client, old_search_runs, body), call(client, runs_api.search_runs, body)
        assert new == old, body
        assert old[0] == 200, (body, old)
        nonempty += b'"runs"' in new[1]
    assert nonempty > 300  # the matrix is not a list of empty answers
    everything = _fill({"experiment_ids": ["{exp}", "{other}"], "run_view_type": "ALL"}, names)
    answer = orjson.loads(call(client, runs_api.search_runs, everything)[1])
    # What the answers carried: each kind of value the builder treats specially.
    text = orjson.dumps(answer).decode()
    for seen in (
        '"NaN"',
        '"Infinity"',
        '"-Infinity"',
        "model_outputs",
        "model_inputs",
        "dataset_inputs",
        "mlflow.data.context",
        '"schema"',
        "mlflow.parentRunId",
        "end_time",
    ):
        assert seen in text, seen
    assert len(answer["runs"]) == 25


def test_pages_and_page_sizes_answer_the_same(searched: tuple[Client, dict[str, Any]]) -> None:
    client, names = searched
    for order in (None, ["metrics.acc DESC"], ["params.model"], ["metrics.loss"]):
        body = {
            "experiment_ids": [names["exp"], names["other"]],
            "order_by": order,
            "run_view_type": "ALL",
        }
        for size in (1, 4, 7, 25, 26):
            old = pages(client, old_search_runs, body, size)
            assert pages(client, runs_api.search_runs, body, size) == old
            assert len(old) == -(-25 // size)


def test_errors_answer_the_same(searched: tuple[Client, dict[str, Any]]) -> None:
    client, names = searched
    for body in [*(_fill(b, names) for b in ERRORS), b"[]", b"{not json", b""]:
        old, new = call(client, old_search_runs, body), call(client, runs_api.search_runs, body)
        if isinstance(body, dict) and old[0] == 400 and new != old:
            # a refused filter, order or page token is in MLflow's words where MLflow's
            # server refuses it too (search_words); the rest of the answer is the same
            worded = orjson.loads(new[1])
            order = body.get("order_by")
            assert worded["message"] == run_search_words(
                body.get("filter"),
                [order] if isinstance(order, str) else order,
                body.get("page_token"),
            ), body
            assert {**worded, "message": ""} == {**orjson.loads(old[1]), "message": ""}
            continue
        assert new == old, body
        if body not in ({}, b""):  # an empty body searches no experiment: an empty answer
            assert old[0] in (400, 404), (body, old)


def test_the_interface_default_gives_the_same_records(
    searched: tuple[Client, dict[str, Any]],
) -> None:
    """A service without a leaner read (the remote client) builds the records from its Run
    models: the same page."""
    client, names = searched
    t = client.tracking
    for body in bodies(names)[::7]:
        kwargs = {
            "filter": body["filter"] or None,
            "order_by": body.get("order_by"),
            "view": ViewType(body.get("run_view_type") or "ACTIVE_ONLY")
            if not isinstance(body.get("run_view_type"), int)
            else ViewType.ALL,
        }
        lean = t.search_run_records(body["experiment_ids"], **kwargs)
        default = TrackingService.search_run_records(t, body["experiment_ids"], **kwargs)
        assert search_page(default) == search_page(lean), body


def test_the_route_answers_through_the_server_with_its_permission(
    live_server: LiveServer,
) -> None:
    """Over HTTP: a viewer may search, a caller without a token may not; the same body."""
    import httpx

    names = populate(live_server.embedded.tracking)
    body = {"experiment_ids": [names["exp"]], "order_by": ["metrics.acc DESC"]}
    viewer = live_server.token_for("viewer")
    url = f"{live_server.url}/api/2.0/mlflow/runs/search"
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {viewer}"})
    assert ok.status_code == 200
    assert ok.content == call(live_server.embedded, old_search_runs, body)[1]
    ajax = httpx.post(
        url.replace("/api/", "/ajax-api/"), json=body, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert ajax.content == ok.content
    refused = httpx.post(url, json=body)
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "UNAUTHENTICATED"
