"""MLflow's ``/graphql`` endpoint: the queries the MLflow web UI sends, on graphql-core.

The schema is MLflow's (3.x: ``mlflow/server/graphql``), field for field and with the names its
graphene schema publishes (camelCase): ``mlflowGetRun``, ``mlflowSearchRuns`` (a query and a
mutation, as in MLflow), ``mlflowGetMetricHistoryBulkInterval``, ``mlflowListArtifacts``,
``mlflowSearchDatasets``, ``mlflowGetExperiment``, ``mlflowSearchModelVersions``, and a run's
``experiment`` and ``modelVersions``. Each root field answers what the MLflow REST route of the
same name answers — it *is* that route's handler, called with the GraphQL input as its body —
so validation, MLflow's error sentences and the data are the REST ones; an error becomes the
message in ``errors`` and the field ``null``, as MLflow's server answers.

The endpoint needs the read permission (every operation reads), like the REST routes.
A query of more than :data:`MAX_QUERY_BYTES` is refused (413) before it is parsed, and the
parser stops at :data:`MAX_TOKENS`. Then a query is checked as MLflow checks it: at most 10
levels deep, 1,000 selections (the fields of fragments count too, used or not), 10 root
fields and 10 aliases per level (the last two configurable with MLflow's variables
``MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS`` / ``..._MAX_ALIASES``). Parsing, checking,
validation and execution run in a worker thread (:func:`run_sync`), never on the event loop,
at most :data:`CONCURRENCY` queries at once (the others wait without holding a thread).

A page of runs asks the registry for its model versions once (``run_id IN (...)``), and each
experiment is read once per request, however many runs name it.

The registry layer, above tracking, plugs in the model-version search
(:data:`MODEL_VERSION_SEARCH`); without it ``modelVersions`` is empty.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from strata.core.errors import InvalidInput, PayloadTooLarge
from strata.core.principal import Permission
from strata.tracking.mlflow_api import experiments, metrics, runs
from strata.tracking.mlflow_api._common import (
    DEPENDENCIES,
    json_response,
    mlflow_errors,
    read_body,
    run_sync,
)
from strata.tracking.mlflow_api.graphql_schema import (
    MAX_QUERY_BYTES,
    MAX_TOKENS,
    check_query,
    schema,
)
from strata.tracking.mlflow_api.schemas import STRING, body_schema

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo, GraphQLSchema

log = logging.getLogger(__name__)
router = APIRouter()
Handler = Callable[[Request], Awaitable[Response]]

#: ``search_model_versions`` of the MLflow registry routes (set by ``strata.registry``).
MODEL_VERSION_SEARCH: list[Handler] = []

#: Queries run at once (each in a worker thread); more wait their turn.
CONCURRENCY = 4
#: Run ids per model-version search (one ``run_id IN (...)`` filter).
VERSION_BATCH = 1000

#: Root field → the MLflow REST handler that answers it.
ROOTS: dict[str, Handler] = {
    "mlflowGetExperiment": experiments.get_experiment,
    "mlflowGetMetricHistoryBulkInterval": metrics.get_metric_history_bulk_interval,
    "mlflowGetRun": runs.get_run,
    "mlflowListArtifacts": metrics.list_run_artifacts,
    "mlflowSearchRuns": runs.search_runs,
    "mlflowSearchDatasets": experiments.search_datasets,
}

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {snake(k): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


class Context:
    """One /graphql request: the HTTP request the sub-calls borrow, and what a page of runs
    shares: each experiment read once, each page's model versions searched once."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.experiments: dict[str, asyncio.Task[Any]] = {}
        self.pages: list[list[str]] = []  # the run ids of each page a root field answered
        self.page_of: dict[str, int] = {}  # run id -> its page
        #: run id -> the search answering its model versions (shared by the page)
        self.versions: dict[str, asyncio.Task[dict[str, list[Any]]]] = {}

    async def call(self, handler: Handler, body: dict[str, Any]) -> Any:
        """``handler``'s JSON answer to ``body``; its MLflow error message raised otherwise."""
        from graphql import GraphQLError

        raw = orjson.dumps(body)
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        scope = {**self.request.scope, "method": "POST", "query_string": b""}
        response = await mlflow_errors(handler)(Request(scope, receive))
        payload = orjson.loads(bytes(response.body)) if response.body else {}
        if response.status_code != 200:
            raise GraphQLError(str(payload.get("message", payload)))
        return payload

    def once(
        self,
        memo: dict[Any, asyncio.Task[Any]],
        key: Any,
        make: Callable[[], Coroutine[Any, Any, Any]],
    ) -> asyncio.Task[Any]:
        """The one task computing ``key`` (the resolvers of a page run concurrently: without
        it, every run of a page would miss the cache at once)."""
        task = memo.get(key)
        if task is None:
            task = memo[key] = asyncio.ensure_future(make())
        return task

    def add_page(self, runs: list[Any]) -> None:
        ids = [r["info"]["run_id"] for r in runs if isinstance(r, dict) and _run_id(r)]
        self.pages.append(ids)
        for run_id in ids:
            self.page_of[run_id] = len(self.pages) - 1

    def versions_of(self, run_id: str) -> asyncio.Task[dict[str, list[Any]]]:
        """The search answering ``run_id``'s model versions: the first run of a page to ask
        starts one for every run of the page not yet covered (aliases answering the same runs
        share it)."""
        task = self.versions.get(run_id)
        if task is None:
            page = self.pages[self.page_of[run_id]]
            ids = [i for i in dict.fromkeys(page) if i not in self.versions]
            task = asyncio.ensure_future(self._search_versions(ids))
            for i in ids:
                self.versions[i] = task
        return task

    async def _search_versions(self, ids: list[str]) -> dict[str, list[Any]]:
        """The model versions of runs ``ids``, by run id: one search per
        :data:`VERSION_BATCH` runs (and per page of its answer)."""
        out: dict[str, list[Any]] = {}
        for start in range(0, len(ids), VERSION_BATCH):
            quoted = ", ".join(f"'{i}'" for i in ids[start : start + VERSION_BATCH])
            body: dict[str, Any] = {"filter": f"run_id IN ({quoted})", "max_results": 1000}
            while True:
                got = await self.call(MODEL_VERSION_SEARCH[0], body)
                for version in got.get("model_versions", []):
                    out.setdefault(version.get("run_id"), []).append(version)
                if not got.get("next_page_token"):
                    break
                body = {**body, "page_token": got["next_page_token"]}
        return out


_RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,256}$")


def _run_id(run: dict[str, Any]) -> str | None:
    """The run's id, if it is one that can be quoted in a filter (Strata's are hex)."""
    run_id = (run.get("info") or {}).get("run_id")
    return run_id if isinstance(run_id, str) and _RUN_ID.match(run_id) else None


def _value(source: Any, info: GraphQLResolveInfo) -> Any:
    """The default resolver: a dict's snake_case key; a metric's value that is not a finite
    number (MLflow's JSON strings "NaN", "Infinity") is null, as in MLflow's schema."""
    if not isinstance(source, dict):
        return None
    key = snake(info.field_name)
    if key not in source:
        return _unset(info)
    value = source[key]
    metric = info.field_name == "value" and info.parent_type.name.endswith(("Metric", "RunId"))
    if metric and (not isinstance(value, int | float) or not math.isfinite(value)):
        return None
    return value


_ZERO: dict[str, Any] = {"String": "", "LongString": 0, "Int": 0, "Float": 0.0, "Boolean": False}


def _unset(info: GraphQLResolveInfo) -> Any:
    """What MLflow's schema answers for a field its response leaves unset: graphene reads the
    proto message, whose unset fields hold their defaults (empty lists and strings, zeros,
    empty messages); ``apiError`` is no proto field and stays null."""
    from graphql import GraphQLList, GraphQLObjectType, GraphQLScalarType, get_nullable_type

    kind = get_nullable_type(info.return_type)  # type: ignore[arg-type]
    if isinstance(kind, GraphQLList):
        return []
    if isinstance(kind, GraphQLScalarType):
        return _ZERO.get(kind.name)
    if isinstance(kind, GraphQLObjectType) and kind.name != "ApiError":
        return {}
    return None


async def _root(handler: Handler, info: GraphQLResolveInfo, args: dict[str, Any]) -> Any:
    context: Context = info.context
    body = _snake_keys(args.get("input") or {})
    got = await context.call(handler, {k: v for k, v in body.items() if v is not None})
    if isinstance(got.get("runs"), list):
        context.add_page(got["runs"])
    elif isinstance(got.get("run"), dict):
        context.add_page([got["run"]])
    return got


async def _experiment(source: dict[str, Any], info: GraphQLResolveInfo) -> Any:
    context: Context = info.context
    exp_id = (source.get("info") or {}).get("experiment_id")
    if exp_id is None:
        return None

    async def read() -> Any:
        got = await context.call(experiments.get_experiment, {"experiment_id": exp_id})
        return got.get("experiment")

    return await context.once(context.experiments, exp_id, read)


async def _model_versions(source: dict[str, Any], info: GraphQLResolveInfo) -> Any:
    context: Context = info.context
    run_id = _run_id(source)
    if run_id is None or not MODEL_VERSION_SEARCH:
        return []
    if run_id not in context.page_of:  # not from a root's answer (not with this schema)
        context.add_page([source])
    found = await context.versions_of(run_id)
    return found.get(run_id, [])


def resolve(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Every field: the roots call their REST handler, a run adds its experiment and model
    versions, the rest is read from the JSON the handlers answered."""
    parent, name = info.parent_type.name, info.field_name
    if parent in ("Query", "Mutation"):
        if name in ("test", "testMutation"):
            return {"output": args.get("inputString")}
        if name == "mlflowSearchModelVersions":
            if not MODEL_VERSION_SEARCH:
                return {"model_versions": []}
            return _root(MODEL_VERSION_SEARCH[0], info, args)
        return _root(ROOTS[name], info, args)
    if parent == "MlflowRunExtension" and name == "experiment":
        return _experiment(source, info)
    if parent == "MlflowRunExtension" and name == "modelVersions":
        return _model_versions(source, info)
    return _value(source, info)


async def graphql_endpoint(request: Request) -> Response:
    """``GET|POST /graphql``: ``{"query", "variables", "operationName"}`` → ``{"data",
    "errors"}`` (the errors as messages, as MLflow's server sends them)."""
    built = schema()  # Unavailable, naming the package, if graphql-core is missing
    body = await read_body(request)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput(
            "Missing value for required parameter 'query'. See the API docs for more "
            "information about request parameters.",
            details={"field": "query"},
        )
    size = len(query.encode())
    if size > MAX_QUERY_BYTES:
        raise PayloadTooLarge(
            f"The GraphQL query is {size:,} bytes; at most {MAX_QUERY_BYTES:,} are accepted",
            details={"field": "query", "limit": MAX_QUERY_BYTES},
        )
    variables = body.get("variables")
    if isinstance(variables, str):  # GET: the variables arrive as a JSON string
        try:
            variables = orjson.loads(variables) if variables else None
        except orjson.JSONDecodeError:
            raise InvalidInput(
                "'variables' is not valid JSON", details={"field": "variables"}
            ) from None
    if variables is not None and not isinstance(variables, dict):
        raise InvalidInput("'variables' must be a JSON object", details={"field": "variables"})
    operation = body.get("operationName")
    name = operation if isinstance(operation, str) else None
    async with _slots(request):  # waiting here holds no worker thread
        answer = await run_sync(_answer, built, query, variables, name, request)
    return json_response(answer)


def _slots(request: Request) -> anyio.Semaphore:
    """The server's :data:`CONCURRENCY` slots for running queries (made on first use, on the
    server's loop), so queries cannot take every worker thread the other routes need."""
    slots: anyio.Semaphore | None = getattr(request.app.state, "graphql_slots", None)
    if slots is None:
        slots = request.app.state.graphql_slots = anyio.Semaphore(CONCURRENCY)
    return slots


def _answer(
    built: GraphQLSchema,
    query: str,
    variables: dict[str, Any] | None,
    operation: str | None,
    request: Request,
) -> dict[str, Any]:
    """Parse, check, validate and execute ``query`` (in a worker thread: the resolvers' async
    REST calls run on a loop of this thread's own)."""
    from graphql import ExecutionResult, GraphQLError, execute, parse, validate

    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as exc:
        return {"data": None, "errors": [exc.message]}
    refusal = check_query(document)
    if refusal is not None:
        return {"data": None, "errors": [refusal]}
    errors = validate(built, document)
    if errors:
        return {"data": None, "errors": [e.message for e in errors]}
    result = execute(
        built,
        document,
        variable_values=variables,
        operation_name=operation,
        context_value=Context(request),
        field_resolver=resolve,
    )
    if not isinstance(result, ExecutionResult):
        result = asyncio.run(_awaited(result))
    messages = [_message(e, request) for e in result.errors] if result.errors else None
    return {"data": result.data, "errors": messages}


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result


def _message(error: Any, request: Request) -> str:
    """An error's message for the client: graphql-core's and the REST handlers' as they are;
    anything unexpected logged with the request id and answered without internals."""
    from graphql import GraphQLError

    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return str(error.message)
    request_id = getattr(request.state, "request_id", None) or "-"
    log.error(
        "Unexpected error resolving %s on /graphql",
        ".".join(str(p) for p in error.path or ()),
        exc_info=original,
        extra={"request_id": request_id},
    )
    return f"Internal server error (request id {request_id}); the server log has the details"


_BODY = body_schema(["query"], query=STRING, operationName=STRING, variables={"type": "object"})
for _method in ("GET", "POST"):
    router.add_api_route(
        "/graphql",
        mlflow_errors(graphql_endpoint),
        methods=[_method],
        dependencies=DEPENDENCIES[Permission.READ],
        include_in_schema=False,
        name=f"mlflow_graphql_{_method.lower()}",
    )
