"""What a viewer can make ``/graphql`` do: oversized and over-wide queries are refused before
they cost anything, a page of runs costs one model-version search, and an unexpected error is
logged, not shown."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import LiveServer
from registry_helpers import log_run
from starlette.requests import Request
from starlette.responses import Response

from strata.tracking.mlflow_api import experiments, graphql_api

SQLITE_ONLY = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)


def _post(server: LiveServer, token: str, query: str, **kw: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/graphql",
        json={"query": query, **kw},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


@SQLITE_ONLY
def test_big_queries_are_refused_before_parsing(live_server: LiveServer) -> None:
    viewer = live_server.token_for("viewer")
    huge = "{ test { " + "output " * 400_000 + "} }"  # 2.8 MB
    r = _post(live_server, viewer, huge)
    assert r.status_code == 413, r.text
    assert r.json()["message"] == (
        f"The GraphQL query is {len(huge):,} bytes; at most 65,536 are accepted"
    )
    # Under the size limit: too many tokens stop the parser, too many fields (in an unused
    # fragment too, which validation would otherwise compare pairwise) stop the check.
    tokens = _post(live_server, viewer, "{ test(inputString: [" + "1," * 20_000 + "]) }")
    assert tokens.json() == {
        "data": None,
        "errors": ["Syntax Error: Document contains more than 10000 tokens. Parsing aborted."],
    }
    fields = "output " * 8_000
    wide = "{ test { " + fields + "} }"
    unused = '{ test(inputString: "x") { output } } fragment F on Test { ' + fields + "}"
    for query in (wide, unused):
        assert len(query) < 64 * 1024
        answer = _post(live_server, viewer, query).json()
        assert answer == {
            "data": None,
            "errors": ["Query exceeds maximum total selections of 1000"],
        }


@SQLITE_ONLY
def test_queries_run_off_the_event_loop(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking (and parsing, validating) runs where no event loop runs, and the resolvers on
    a loop of the worker thread's own, closed with the request: never on the server's loop."""
    checked_on_a_loop: list[bool] = []
    loops: list[asyncio.AbstractEventLoop | None] = []
    real_check, real_resolve = graphql_api.check_query, graphql_api.resolve

    def check(document: Any) -> str | None:
        checked_on_a_loop.append(asyncio._get_running_loop() is not None)
        return real_check(document)

    def resolve(source: Any, info: Any, **args: Any) -> Any:
        loops.append(asyncio._get_running_loop())
        return real_resolve(source, info, **args)

    monkeypatch.setattr(graphql_api, "check_query", check)
    monkeypatch.setattr(graphql_api, "resolve", resolve)
    viewer = live_server.token_for("viewer")
    query = '{ mlflowGetExperiment(input: {experimentId: "0"}) { experiment { name } } }'
    for _ in range(2):
        r = _post(live_server, viewer, query)
        assert r.json()["errors"] is None, r.text
        assert r.json()["data"]["mlflowGetExperiment"]["experiment"]["name"] == "Default"
    assert checked_on_a_loop == [False, False]
    assert any(loops), "the nested fields resolve on a loop"
    assert all(loop is None or loop.is_closed() for loop in loops)
    assert httpx.get(f"{live_server.url}/healthz", timeout=30).status_code == 200


def _counting(handler: Callable[[Request], Any], calls: list[str]) -> Callable[..., Any]:
    async def counted(request: Request) -> Response:
        calls.append(request.url.path)
        response: Response = await handler(request)
        return response

    return counted


@SQLITE_ONLY
def test_a_page_of_runs_costs_one_model_version_search(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = live_server.embedded
    with_models = [log_run(svc, c=c) for c in (0.5, 1.0)]  # experiment "reg"
    exp = svc.tracking.get_experiment_by_name("reg").experiment_id
    run_ids = with_models + [svc.tracking.create_run(exp).info.run_id for _ in range(20)]
    for run_id in with_models:
        svc.registry.register("gql-page-model", run_id)
    searches: list[str] = []
    reads: list[str] = []
    assert graphql_api.MODEL_VERSION_SEARCH, "the registry plugged in its search"
    real_search = graphql_api.MODEL_VERSION_SEARCH[0]
    monkeypatch.setattr(graphql_api, "MODEL_VERSION_SEARCH", [_counting(real_search, searches)])
    monkeypatch.setattr(experiments, "get_experiment", _counting(experiments.get_experiment, reads))
    page = (
        f'mlflowSearchRuns(input: {{experimentIds: ["{exp}"], maxResults: 1000}}) '
        "{ runs { info { runId } experiment { name } modelVersions { name version runId } } }"
    )
    query = "{ " + " ".join(f"p{i}: {page}" for i in range(3)) + " }"
    r = _post(live_server, live_server.token_for("viewer"), query)
    assert r.status_code == 200 and r.json()["errors"] is None, r.text
    data = r.json()["data"]
    for i in range(3):
        runs = data[f"p{i}"]["runs"]
        assert sorted(run["info"]["runId"] for run in runs) == sorted(run_ids)
        for run in runs:
            assert run["experiment"]["name"] == "reg"
            want = [run["info"]["runId"]] if run["info"]["runId"] in with_models else []
            assert [v["runId"] for v in run["modelVersions"]] == want
    # One search per page of runs; the three aliases answer the same runs, so one in all
    # (it was one per run: 66).
    assert len(searches) == 1, searches
    assert len(reads) == 1, "one experiment read per request"


@SQLITE_ONLY
def test_bad_integers_and_unexpected_errors(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    viewer = live_server.token_for("viewer")
    big = (
        '{ mlflowSearchModelVersions(input: {maxResults: "99999999999999999999999"}) '
        "{ nextPageToken } }"
    )
    (message,) = _post(live_server, viewer, big).json()["errors"]
    assert message == (
        "Expected value of type 'LongString', found \"99999999999999999999999\"; "
        "expected a whole number within 64 bits"
    )

    async def broken(request: Request) -> Response:
        raise RuntimeError("internal detail: /srv/secret/path")

    monkeypatch.setitem(graphql_api.ROOTS, "mlflowGetExperiment", broken)
    query = '{ mlflowGetExperiment(input: {experimentId: "0"}) { experiment { name } } }'
    with caplog.at_level(logging.ERROR, logger=graphql_api.__name__):
        r = _post(live_server, viewer, query, operationName=None)
    (message,) = r.json()["errors"]
    request_id = r.headers["x-request-id"]
    assert message == (
        f"Internal server error (request id {request_id}); the server log has the details"
    )
    (record,) = [rec for rec in caplog.records if rec.name == graphql_api.__name__]
    assert record.request_id == request_id  # type: ignore[attr-defined]
    assert "secret" in str(record.exc_info)


@SQLITE_ONLY
def test_at_most_a_few_queries_run_at_once(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many concurrent queries wait their turn instead of taking every worker thread."""
    running = 0
    most = 0
    lock = threading.Lock()
    real_check = graphql_api.check_query

    def slow_check(document: Any) -> str | None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.3)  # a query that takes a while to check
        with lock:
            running -= 1
        return real_check(document)

    monkeypatch.setattr(graphql_api, "check_query", slow_check)
    viewer = live_server.token_for("viewer")
    answers: list[int] = []

    def ask() -> None:
        answers.append(
            _post(live_server, viewer, '{ test(inputString: "x") { output } }').status_code
        )

    threads = [threading.Thread(target=ask) for _ in range(3 * graphql_api.CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [200] * len(threads)
    assert 1 < most <= graphql_api.CONCURRENCY, most
