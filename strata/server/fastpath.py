"""A lean dispatcher for the hot MLflow routes (issue 17: the client is the ceiling).

FastAPI's routing walks every route's regex, then builds and solves a dependency graph for
each request: about a millisecond per call, which the mlflow client's own cost per
``log_metric`` is of the same order as. The MLflow handlers need none of it — they read the
raw request and their only dependency is the permission check — so this middleware maps
``(method, path)`` straight to them with a dict lookup.

It changes nothing else: the same permission dependency runs first (same 401/403, same
audit of refusals), the same handler answers, errors of the check go through the app's own
``StrataError`` handler, and the route object is put in the scope so metrics, access logs and
audit records name the route template as before. Only routes whose endpoint is marked
``lean`` (``mlflow_api._common.add_route`` marks them), whose path has no parameters and
whose dependencies take nothing but the request are dispatched here; every other request goes
on to FastAPI untouched.

A route may also carry a ``hot`` path (the MLflow logging calls on SQLite:
``tracking/mlflow_api/hot.py``), tried before the permission check and handler: it answers
the plain success on the event loop in one transaction, or returns None and the request goes
on to them as above.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.core.errors import StrataError
from strata.server.guard import BrowserGuard
from strata.server.middleware import (
    Metrics,
    errlog,
    internal_error,
    internal_error_answer,
    internal_error_logged,
    observe,
    request_id_of,
)
from strata.server.textguard import check_text, replay_body
from strata.tracking.mlflow_api.hot import Hot

Endpoint = Callable[[Request], Awaitable[Response]]
Check = Callable[[Request], Awaitable[Any]]
ErrorHandler = Callable[[Request, StrataError], Awaitable[Response]]


#: Set in the scope once the hot path declined a request (FastPath does not try it again).
_HOT_TRIED = "strata.hot_tried"
#: Set in the scope (to the request id) when ``HotEntry.answer_now`` raised: serve() answers
#: the 500 the stack would have, without running the hot path again.
_HOT_RAISED = "strata.hot_raised"
JSON = "application/json"


def declared_length(value: bytes, limit: int) -> int | None:
    """A ``Content-Length`` value as a number no larger than ``limit``; None when it is not
    plain digits (absent: chunked), is larger, or is longer than any such limit can be
    (``int()`` refuses more than 4,300 digits: llhttp takes thousands of leading zeros)."""
    if not value.isdigit() or len(value) > 12:
        return None
    length = int(value)
    return length if length <= limit else None


def hot_headers(content: bytes, request_id: str) -> list[tuple[bytes, bytes]]:
    """A hot answer's headers, as Starlette's ``Response(media_type=JSON)`` and the stack's
    request id give them (the protocol's answer in run.py writes the same)."""
    return [
        (b"content-length", b"%d" % len(content)),
        (b"content-type", JSON.encode()),
        (b"x-request-id", request_id.encode("latin-1")),
    ]


class _Entry:
    __slots__ = ("checks", "endpoint", "hot", "route")

    def __init__(
        self, route: Any, endpoint: Endpoint, checks: list[Check], hot: Hot | None = None
    ) -> None:
        self.route = route
        self.endpoint = endpoint
        self.checks = checks
        self.hot = hot


class _Template:
    """What the scope's ``route`` must offer the access log, metrics and audit: its path."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


def _request_only(fn: Callable[..., Any] | None) -> bool:
    if fn is None:
        return False
    params = list(inspect.signature(fn).parameters.values())
    return len(params) == 1 and params[0].name == "request"


def lean_table(api: FastAPI) -> dict[tuple[str, str], _Entry]:
    """``(method, path) → entry`` for the app's lean routes (as included, prefixes and all)."""
    table: dict[tuple[str, str], _Entry] = {}
    for ctx in iter_route_contexts(api.routes):
        route, path = ctx.original_route, ctx.path or ""
        if not isinstance(route, APIRoute) or "{" in path or ctx.dependant is None:
            continue
        endpoint = route.endpoint
        if not getattr(endpoint, "lean", False) or not _request_only(endpoint):
            continue
        checks = [dep.call for dep in ctx.dependant.dependencies]
        if not all(_request_only(c) for c in checks):
            continue
        for method in ctx.methods or ():
            hot = getattr(endpoint, "hot", None) if method == "POST" else None
            table[(method, path)] = _Entry(_Template(path), endpoint, checks, hot)
    return table


class FastPath:
    """ASGI middleware: serve lean routes directly, pass everything else on."""

    def __init__(self, app: ASGIApp, *, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._table: dict[tuple[str, str], _Entry] | None = None
        self._on_error: ErrorHandler | None = None

    def _lookup(self, method: str, path: str) -> _Entry | None:
        if self._table is None:  # built on the first request, when every route is included
            self._table = lean_table(self.api)
            self._on_error = self.api.exception_handlers.get(StrataError)  # type: ignore[assignment]
        return self._table.get((method, path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self._lookup(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if entry is None or self._on_error is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = entry.route
        request = Request(scope, receive)
        if entry.hot is not None and not scope.get(_HOT_TRIED):
            # Tried first (unless HotEntry tried it already); None leaves the request to the
            # permission check and handler below (the body is kept on the request).
            answer = entry.hot(scope, await request.body())
            if answer is not None:
                content, after = answer
                background = BackgroundTask(after) if after is not None else None
                response = Response(content, media_type=JSON, background=background)
                await response(scope, receive, send)
                return
        try:
            for check in entry.checks:
                await check(request)
            response = await entry.endpoint(request)
        except StrataError as exc:
            response = await self._on_error(request, exc)
        await response(scope, receive, send)


class HotEntry:
    """The hot routes' plain success ahead of the whole middleware stack.

    For a POST to a route with a ``hot`` path, this does what the stack does for such a
    request, with the stack's own functions: the request id (``middleware.request_id_of``),
    the browser guard's checks (``BrowserGuard.refusal``), a declared body within the size
    limit, the text guard's check of the body (``textguard.check_text``), then the route's
    hot path, the response with ``X-Request-ID``, and the metrics and access log line
    (``middleware.observe``). Whenever one of them would refuse the request, or the hot path
    declines it, the request goes to the full stack with its body replayed, which answers it
    as it answers any other.
    """

    def __init__(
        self, api: FastAPI, *, metrics: Metrics, max_bytes: int, guard: BrowserGuard
    ) -> None:
        self.api = api
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.guard = guard
        self._table: dict[str, _Entry] | None = None
        #: The housekeeping a hot answer left running in a worker thread (its WAL
        #: checkpoint holds the write lock for a moment), while it runs.
        self._housekeeping: asyncio.Future[None] | None = None

    def _lookup(self, path: str) -> _Entry | None:
        if self._table is None:  # built on the first request, when every route is included
            self._table = {
                p: e for (m, p), e in lean_table(self.api).items() if m == "POST" and e.hot
            }
        return self._table.get(path)

    def takes(self, path: str) -> bool:
        """Whether a POST to ``path`` has a hot path (the protocol's first look, run.py)."""
        return self._lookup(path) is not None

    def _admissible(self, scope: Scope, headers: dict[bytes, bytes]) -> int | None:
        """The declared body length when the stack's checks before the body would pass (a
        declared length within the size limit, the browser guard), else None."""
        declared = declared_length(headers.get(b"content-length", b""), self.max_bytes)
        if declared is None or self.guard.refusal(scope) is not None:
            return None  # chunked, too large, malformed, or refused: the stack's to judge
        return declared

    def _begin(self, scope: Scope, headers: dict[bytes, bytes], entry: _Entry) -> str:
        """The request's id, and the scope as the stack leaves it for the handler."""
        request_id = request_id_of(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        scope["app"] = self.api
        scope["route"] = entry.route
        return request_id

    def answer_now(
        self, scope: Scope, body: bytes
    ) -> tuple[bytes, str, float, Callable[[], None] | None] | None:
        """The hot answer of a request whose whole body is here, for the protocol (run.py)
        before any ASGI cycle exists: (content, request id, start, what to run after it
        with :meth:`housekeep`), the metrics and access log to follow with :meth:`finish`.
        None: the stack serves it, as from :meth:`serve`. A hot path raising propagates:
        the protocol hands the request to the stack, which words the error."""
        entry = self._lookup(scope["path"])
        headers = dict(scope["headers"])
        if entry is None or entry.hot is None or self._admissible(scope, headers) != len(body):
            return None
        if check_text(scope, body) is not None:
            return None
        start = time.perf_counter()
        request_id = self._begin(scope, headers, entry)
        answer = entry.hot(scope, body)
        if answer is None:
            if self._housekeeping is None:  # else serve() waits for it and tries again
                scope[_HOT_TRIED] = True
            return None
        content, after = answer
        return content, request_id, start, after

    def failed_now(self, scope: Scope) -> None:
        """:meth:`answer_now` raised (call it from the ``except`` block): the error logged as
        the stack logs one, and the request marked for :meth:`serve`'s 500. The hot path
        is not run again (it may have written before it raised)."""
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or request_id_of(dict(scope["headers"]))
        state["request_id"] = request_id
        internal_error_logged(scope, request_id)
        scope[_HOT_RAISED] = request_id

    def finish(self, scope: Scope, request_id: str, start: float) -> None:
        """The metrics and access log line of an answer of :meth:`answer_now`, once sent."""
        observe(self.metrics, scope, 200, time.perf_counter() - start, request_id)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """None once the request is answered, else the ``receive`` to hand the full stack."""
        raised = scope.get(_HOT_RAISED)
        if raised is not None:
            start = time.perf_counter()
            await internal_error_answer(_with_id(send, raised), raised)
            observe(self.metrics, scope, 500, time.perf_counter() - start, raised)
            return None
        if scope["method"] != "POST" or scope.get(_HOT_TRIED):
            return receive
        entry = self._lookup(scope["path"])
        if entry is None or entry.hot is None:
            return receive
        headers = dict(scope["headers"])
        declared = self._admissible(scope, headers)
        if declared is None:
            return receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # disconnected: let the stack see it
                return replay_body([message], receive)
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > declared or not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replay = replay_body([{"type": "http.request", "body": body, "more_body": False}], receive)
        if size != declared or check_text(scope, body) is not None:
            return replay
        start = time.perf_counter()
        request_id = self._begin(scope, headers, entry)
        status = 500
        started = False
        try:
            answer = entry.hot(scope, body)
            if answer is None and self._housekeeping is not None:
                # This worker's own checkpoint holds the write lock (the hot path never waits
                # for one): wait for it here, off the event loop's back, and try once more,
                # rather than send the call down the regular route at several times the CPU
                # (1 call in 100 was, each one arriving during a checkpoint).
                await asyncio.wait([self._housekeeping])
                answer = entry.hot(scope, body)
            if answer is None:
                scope[_HOT_TRIED] = True
                return replay
            content, after = answer
            started = True
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": hot_headers(content, request_id),
                }
            )
            status = 200
            await send({"type": "http.response.body", "body": content})
            if after is not None:  # as a BackgroundTask: after the response, in a thread
                await self.housekeep(after)
        except Exception:
            if not started:
                await internal_error(_with_id(send, request_id), scope, request_id)
            else:
                internal_error_logged(scope, request_id)
        observe(self.metrics, scope, status, time.perf_counter() - start, request_id)
        return None

    async def housekeep(self, after: Callable[[], None]) -> None:
        """Run ``after`` in a worker thread, known as the running housekeeping meanwhile. Its
        failure is logged (the answer it follows has gone out)."""
        running = asyncio.ensure_future(run_in_threadpool(after))
        self._housekeeping = running
        try:
            await running
        except Exception:
            errlog.exception("Housekeeping after a hot call failed")
        finally:
            if self._housekeeping is running:
                self._housekeeping = None


def _with_id(send: Send, request_id: str) -> Send:
    """``send``, adding the request id to the response's headers (as the stack does)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message.get("headers", []),
                (b"x-request-id", request_id.encode("latin-1")),
            ]
        await send(message)

    return sending
