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

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from strata.core.errors import StrataError

Endpoint = Callable[[Request], Awaitable[Response]]
Check = Callable[[Request], Awaitable[Any]]
ErrorHandler = Callable[[Request, StrataError], Awaitable[Response]]
#: A route's lean path: (request, its body) → the response, or None to serve it as usual.
Hot = Callable[[Request, bytes], Response | None]


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
        if entry.hot is not None:
            # Tried first; None leaves the request to the permission check and handler below
            # (the body is kept on the request, so they read it again).
            response = entry.hot(request, await request.body())
            if response is not None:
                await response(scope, receive, send)
                return
        try:
            for check in entry.checks:
                await check(request)
            response = await entry.endpoint(request)
        except StrataError as exc:
            response = await self._on_error(request, exc)
        await response(scope, receive, send)
